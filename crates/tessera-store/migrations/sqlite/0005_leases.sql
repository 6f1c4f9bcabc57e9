-- Tessera schema 5 (SQLite): the license server's leases. Keep in step with migrations/postgres/0005_leases.sql.
CREATE TABLE leases (
    id         INTEGER NOT NULL PRIMARY KEY,
    device     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    record_key TEXT NOT NULL,
    count      INTEGER NOT NULL,
    overdraft  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    borrowed   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX leases_by_expiry ON leases (expires_at);

-- Metered units consumed per feature record.
CREATE TABLE metered_use (
    record_key TEXT NOT NULL PRIMARY KEY,
    units      INTEGER NOT NULL
) STRICT;
