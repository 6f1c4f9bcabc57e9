-- Tessera schema 6 (SQLite): the lease log. Keep in step with migrations/postgres/0006_lease_log.sql.
-- Only a PostgreSQL store is shared by several license server processes; SQLite keeps the table so
-- both schemas stay alike, and it stays empty.
CREATE TABLE lease_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    node       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    lease_id   INTEGER NOT NULL DEFAULT 0,
    device     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    record_key TEXT NOT NULL DEFAULT '',
    count      INTEGER NOT NULL DEFAULT 0,
    overdraft  INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0,
    borrowed   INTEGER NOT NULL DEFAULT 0,
    units      INTEGER NOT NULL DEFAULT 0
) STRICT;
