-- Tessera schema 9 (PostgreSQL): seat engine instances. Keep in step with migrations/sqlite/0009_instances.sql.
-- One store may hold several seat engines (the back office hosts customers' license servers as
-- instances); the on-site license server is the instance 'on-site', and every row stored before
-- this migration belongs to it. Leases, the lease log and metered use are kept per instance, and
-- each engine's own state (the lease digest, the commit sequence and the lease counter, kept until
-- now in the setting `server.leases_digest` as `DIGEST@SEQ@NEXT`) moves to a typed table.

ALTER TABLE leases ADD COLUMN instance TEXT NOT NULL DEFAULT 'on-site';
ALTER TABLE leases ALTER COLUMN instance DROP DEFAULT;
ALTER TABLE leases DROP CONSTRAINT leases_pkey;
ALTER TABLE leases ADD PRIMARY KEY (instance, id);

ALTER TABLE metered_use ADD COLUMN instance TEXT NOT NULL DEFAULT 'on-site';
ALTER TABLE metered_use ALTER COLUMN instance DROP DEFAULT;
ALTER TABLE metered_use DROP CONSTRAINT metered_use_pkey;
ALTER TABLE metered_use ADD PRIMARY KEY (instance, record_key);

ALTER TABLE lease_log ADD COLUMN instance TEXT NOT NULL DEFAULT 'on-site';
CREATE INDEX lease_log_by_instance ON lease_log (instance, seq);

-- lease_digest: hex, '' when not checked at the next start; commit_seq: the sequence number of the
-- commit that wrote it; next_lease: the count the next lease id is made from (0: unknown).
CREATE TABLE engine_state (
    instance     TEXT NOT NULL PRIMARY KEY,
    lease_digest TEXT NOT NULL,
    commit_seq   BIGINT NOT NULL,
    next_lease   BIGINT NOT NULL
);
-- `DIGEST`, `DIGEST@SEQ` or `DIGEST@SEQ@NEXT`; a part that is not a number reads as 0
INSERT INTO engine_state (instance, lease_digest, commit_seq, next_lease)
    SELECT 'on-site',
           split_part(value, '@', 1),
           CASE WHEN split_part(value, '@', 2) ~ '^[0-9]{1,18}$' THEN split_part(value, '@', 2)::BIGINT ELSE 0 END,
           CASE WHEN split_part(value, '@', 3) ~ '^[0-9]{1,18}$' THEN split_part(value, '@', 3)::BIGINT ELSE 0 END
    FROM settings WHERE key = 'server.leases_digest';
DELETE FROM settings WHERE key = 'server.leases_digest';
