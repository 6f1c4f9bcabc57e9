-- Tessera schema 3 (SQLite): the outbox of mail and webhook calls. Keep in step with
-- migrations/postgres/0003_outbox.sql: same table, same columns, same version number.
--
-- A row is pending while sent_at and given_up_at are both NULL; it is due once next_attempt_at
-- (unix seconds) is not after now. Claiming a row moves next_attempt_at forward by a lease, so a
-- second worker does not take it while the first is sending.

CREATE TABLE outbox (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL CHECK (kind IN ('mail', 'webhook')),
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER,
    last_error      TEXT,
    given_up_at     INTEGER
) STRICT;

-- What the delivery worker claims: pending rows by due time.
CREATE INDEX outbox_due ON outbox (next_attempt_at, id)
    WHERE sent_at IS NULL AND given_up_at IS NULL;

-- The operator's view: newest first.
CREATE INDEX outbox_newest_first ON outbox (created_at DESC, id DESC);
