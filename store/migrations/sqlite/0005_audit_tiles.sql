-- Tiles of each audit log's Merkle tree (SQLite; keep in lockstep with
-- migrations/postgres), so a proof reads O(log n) stored hashes instead of
-- every leaf hash of the log.
--
-- C2SP tlog-tiles geometry: tile `idx` of `level` holds 256 hashes, hash
-- `i` being the root of the subtree over leaves
-- [(256·idx + i)·256^level, (256·idx + i + 1)·256^level). Only full tiles
-- are stored; `root` is the root of the tile's 256 hashes, which is hash
-- `idx` of level `level + 1` (so the incomplete tile of a level is read as
-- the roots of the full tiles below it). Tiles are written in the
-- transaction that appends the entries completing them. A full tile never
-- changes, so like the entries they refuse UPDATE and DELETE.
--
-- `audit_heads.tiled`: the log's first `tiled` leaves have every full tile
-- stored. Appends keep it equal to `size`; logs from before this migration
-- start at 0 and are brought up to date in the background (and before any
-- proof that needs it).

CREATE TABLE audit_tiles (
    log    TEXT    NOT NULL,
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hashes BLOB    NOT NULL,   -- 256 × 32 bytes
    root   BLOB    NOT NULL,   -- 32 bytes
    PRIMARY KEY (log, level, idx)
);

ALTER TABLE audit_heads ADD COLUMN tiled INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER audit_tiles_no_update BEFORE UPDATE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit_tiles is append-only'); END;
CREATE TRIGGER audit_tiles_no_delete BEFORE DELETE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit_tiles is append-only'); END;
