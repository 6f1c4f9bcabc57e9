-- Tessera schema 17 (SQLite): the license server's audit log (logins, failed logins, logouts,
-- password, user and token changes, refusals and every administrative change), times in UTC
-- (unix seconds). Keep in step with migrations/postgres/0017_audit.sql. (15 and 16 are taken by
-- work written at the same time.)
CREATE TABLE audit_log (
    id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    address TEXT
) STRICT;

CREATE INDEX audit_log_by_at ON audit_log (at);
