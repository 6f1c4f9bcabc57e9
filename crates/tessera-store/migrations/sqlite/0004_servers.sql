-- Tessera schema 4 (SQLite): which key each license server was certified for, and its customer.
-- Keep in step with migrations/postgres/0004_servers.sql.
CREATE TABLE servers (
    hostid      TEXT NOT NULL PRIMARY KEY,
    public_key  TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
