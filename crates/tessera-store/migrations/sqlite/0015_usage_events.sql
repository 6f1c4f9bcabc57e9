-- Tessera schema 15 (SQLite): usage events. Keep in step with migrations/postgres/0015_usage_events.sql.
-- What a license administrator reviews besides the leases: each feature a `request` or `borrow` was
-- refused (kind 'denial', with its code and message) and each grant that took seats beyond the count
-- (kind 'overdraft', count = the seats beyond it). A seat engine writes them in the transaction of
-- the decision; they are kept per instance, like the leases, for `usage_event_retention_days`
-- (server.toml), then pruned. A cluster's lease log never carries them: they are not seats.
--   at:          unix seconds, when it was decided
--   device:      the host id (`KIND=VALUE`); device_type: physical, virtual, container or unknown
--   user_name, alias: as the client sent them (NULL: not sent)
--   version:     a denial: the lowest version asked for; an overdraft: the version granted
--   count:       a denial: the seats asked for; an overdraft: the seats beyond the count
--   code, message: a denial's code and message (an overdraft: 'overdraft' and what was granted)
CREATE TABLE usage_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    device      TEXT NOT NULL,
    device_type TEXT NOT NULL,
    user_name   TEXT,
    alias       TEXT,
    feature     TEXT NOT NULL,
    version     TEXT,
    count       INTEGER NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL
) STRICT;

CREATE INDEX usage_events_by_time ON usage_events (instance, kind, at);
