-- Tessera schema 6 (PostgreSQL): the lease log that keeps several license server processes over one
-- database in step. Keep in step with migrations/sqlite/0006_lease_log.sql.
-- Every change to `leases` or `metered_use` made by a cluster member is appended here in the same
-- transaction, under one advisory lock; the other members read what they have not seen before they
-- decide. Old entries are pruned; a member behind the pruned part reloads the leases whole.
CREATE TABLE lease_log (
    seq        BIGSERIAL PRIMARY KEY,
    node       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    lease_id   BIGINT NOT NULL DEFAULT 0,
    device     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    record_key TEXT NOT NULL DEFAULT '',
    count      BIGINT NOT NULL DEFAULT 0,
    overdraft  BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL DEFAULT 0,
    borrowed   BIGINT NOT NULL DEFAULT 0,
    units      BIGINT NOT NULL DEFAULT 0
);
