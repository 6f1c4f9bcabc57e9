-- Tessera schema 5 (PostgreSQL): the license server's leases. Keep in step with migrations/sqlite/0005_leases.sql.
CREATE TABLE leases (
    id         BIGINT NOT NULL PRIMARY KEY,
    device     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    record_key TEXT NOT NULL,
    count      BIGINT NOT NULL,
    overdraft  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    borrowed   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX leases_by_expiry ON leases (expires_at);

-- Metered units consumed per feature record.
CREATE TABLE metered_use (
    record_key TEXT NOT NULL PRIMARY KEY,
    units      BIGINT NOT NULL
);
