//! Warden's cross-crate tests. Everything lives in the single integration
//! binary under `integration/`, which starts real servers (in-process on
//! 127.0.0.1:0, or the real `warden` binary as a subprocess) against real
//! SQLite files and a real PostgreSQL server.
