-- Tessera schema 9 (SQLite): seat engine instances. Keep in step with migrations/postgres/0009_instances.sql.
-- One store may hold several seat engines (the back office hosts customers' license servers as
-- instances); the on-site license server is the instance 'on-site', and every row stored before
-- this migration belongs to it. Leases, the lease log and metered use are kept per instance, and
-- each engine's own state (the lease digest, the commit sequence and the lease counter, kept until
-- now in the setting `server.leases_digest` as `DIGEST@SEQ@NEXT`) moves to a typed table.

CREATE TABLE leases_by_instance (
    instance   TEXT NOT NULL,
    id         INTEGER NOT NULL,
    device     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    record_key TEXT NOT NULL,
    count      INTEGER NOT NULL,
    overdraft  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    borrowed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, id)
) STRICT, WITHOUT ROWID;
INSERT INTO leases_by_instance (instance, id, device, request_id, record_key, count, overdraft, expires_at, borrowed)
    SELECT 'on-site', id, device, request_id, record_key, count, overdraft, expires_at, borrowed FROM leases;
DROP TABLE leases;
ALTER TABLE leases_by_instance RENAME TO leases;

CREATE TABLE metered_use_by_instance (
    instance   TEXT NOT NULL,
    record_key TEXT NOT NULL,
    units      INTEGER NOT NULL,
    PRIMARY KEY (instance, record_key)
) STRICT, WITHOUT ROWID;
INSERT INTO metered_use_by_instance (instance, record_key, units)
    SELECT 'on-site', record_key, units FROM metered_use;
DROP TABLE metered_use;
ALTER TABLE metered_use_by_instance RENAME TO metered_use;

ALTER TABLE lease_log ADD COLUMN instance TEXT NOT NULL DEFAULT 'on-site';
CREATE INDEX lease_log_by_instance ON lease_log (instance, seq);

-- lease_digest: hex, '' when not checked at the next start; commit_seq: the sequence number of the
-- commit that wrote it; next_lease: the count the next lease id is made from (0: unknown).
CREATE TABLE engine_state (
    instance     TEXT NOT NULL PRIMARY KEY,
    lease_digest TEXT NOT NULL,
    commit_seq   INTEGER NOT NULL,
    next_lease   INTEGER NOT NULL
) STRICT;
-- `DIGEST`, `DIGEST@SEQ` or `DIGEST@SEQ@NEXT`; a part that is not a number reads as 0
INSERT INTO engine_state (instance, lease_digest, commit_seq, next_lease)
    SELECT 'on-site',
           substr(v, 1, instr(v, '@') - 1),
           CASE WHEN s <> '' AND s NOT GLOB '*[^0-9]*' AND length(s) < 19 THEN CAST(s AS INTEGER) ELSE 0 END,
           CASE WHEN n <> '' AND n NOT GLOB '*[^0-9]*' AND length(n) < 19 THEN CAST(n AS INTEGER) ELSE 0 END
    FROM (
        SELECT v,
               substr(r, 1, instr(r, '@') - 1) AS s,
               substr(substr(r, instr(r, '@') + 1), 1, instr(substr(r, instr(r, '@') + 1), '@') - 1) AS n
        FROM (
            SELECT v, substr(v, instr(v, '@') + 1) AS r
            FROM (SELECT value || '@@@' AS v FROM settings WHERE key = 'server.leases_digest')
        )
    );
DELETE FROM settings WHERE key = 'server.leases_digest';
