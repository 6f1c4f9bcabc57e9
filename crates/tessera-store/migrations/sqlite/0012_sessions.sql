-- Tessera schema 12 (SQLite): browser sessions of the users of either service (tessera-service's
-- auth). Only the SHA-256 of a session id is kept. Keep in step with
-- migrations/postgres/0012_sessions.sql. (Numbered 12 to leave 9-11 to the seat engine's
-- migrations being written at the same time.)
CREATE TABLE sessions (
    id_hash      TEXT NOT NULL PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_name);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen_at);
