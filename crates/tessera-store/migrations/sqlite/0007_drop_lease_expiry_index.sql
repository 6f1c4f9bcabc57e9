-- Tessera schema 7 (SQLite): no index on lease expiry. Keep in step with migrations/postgres/0007_drop_lease_expiry_index.sql.
-- The license server keeps its leases in memory and finds expired ones there; no query reads the
-- leases by expiry, so the index only cost a B-tree update on every grant, renewal and return.
DROP INDEX IF EXISTS leases_by_expiry;
