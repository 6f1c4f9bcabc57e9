-- Tessera schema 16 (SQLite): the license administrator's seat policy documents. Keep in step with
-- migrations/postgres/0016_seat_policy.sql.
-- One row per instance and kind: 'reservations' (the reservation groups, the JSON document that is
-- imported and exported), and later the named-pool model and the named users. The body is what
-- the administrator gave (checked before it is stored); updated_at is unix seconds.
CREATE TABLE seat_policy (
    instance   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (instance, kind)
) STRICT;
