-- Tessera schema 17 (PostgreSQL): the license server's audit log (logins, failed logins, logouts,
-- password, user and token changes, refusals and every administrative change), times in UTC
-- (unix seconds). Keep in step with migrations/sqlite/0017_audit.sql. (15 and 16 are taken by
-- work written at the same time.)
CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    address TEXT
);

CREATE INDEX audit_log_by_at ON audit_log (at);
