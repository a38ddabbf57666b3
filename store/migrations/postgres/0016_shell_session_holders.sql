-- Which process holds each live shell session, and when it last said so:
-- `holder` is a random id made at each start of a replica's process (node
-- ids default to "warden" on every replica, so a restarted replica cannot
-- tell its own rows by node), and `seen_at` is refreshed by that process
-- every few seconds while it holds sessions. Any replica ends live sessions
-- not refreshed for a minute (status `replica_lost`): after a kill -9 they
-- were live for ever (review 11, M4). Rows from before this migration have
-- neither and are judged by `started_at`.
-- (postgres; keep in lockstep with the other dialect.)
ALTER TABLE shell_sessions ADD COLUMN holder TEXT;
ALTER TABLE shell_sessions ADD COLUMN seen_at BIGINT;
CREATE INDEX shell_sessions_holder ON shell_sessions (holder);
