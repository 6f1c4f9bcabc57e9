-- Tessera schema 14 (SQLite): the license server's state. Keep in step with migrations/postgres/0014_server_state.sql.
-- A license server's own state, kept until now in `server.*` settings (text), moves to a typed
-- row per instance (the on-site license server is the instance 'on-site'; the back office's hosted
-- instances get a row each). A column that is NULL was never set.
--   hostid:         the server identity the storage belongs to
--   machine_ids:    the host ids of the machines the storage is bound to, one a line
--   license:        the installed license bundle (armoured); certificate: the server certificate
--                   installed with it (the two are always written together)
--   backoffice_url: the back office it was activated against online
--   scheduled_sync_claimed_at, scheduled_sync_done_at: unix seconds; when a cluster member last
--                   claimed the daily sync with the back office, and when one last reported it done
-- The admin token setting `server.admin_token_sha256` stays: it is only read to adopt an old
-- token into the users and tokens of the auth store.

CREATE TABLE server_state (
    instance                  TEXT NOT NULL PRIMARY KEY,
    hostid                    TEXT,
    machine_ids               TEXT,
    license                   TEXT,
    certificate               TEXT,
    backoffice_url            TEXT,
    scheduled_sync_claimed_at INTEGER,
    scheduled_sync_done_at    INTEGER
) STRICT;
-- the times were 20 zero-padded digits (the claim) or a decimal number (done); anything that is
-- not a whole number of seconds from 1970 to 9999 reads as never
INSERT INTO server_state (instance, hostid, machine_ids, license, certificate, backoffice_url,
                          scheduled_sync_claimed_at, scheduled_sync_done_at)
    SELECT 'on-site',
           (SELECT value FROM settings WHERE key = 'server.hostid'),
           (SELECT value FROM settings WHERE key = 'server.machine_ids'),
           (SELECT value FROM settings WHERE key = 'server.license'),
           (SELECT value FROM settings WHERE key = 'server.certificate'),
           (SELECT value FROM settings WHERE key = 'server.backoffice_url'),
           CASE WHEN c <> '' AND c NOT GLOB '*[^0-9]*' AND length(c) <= 12
                     AND CAST(c AS INTEGER) <= 253402300799 THEN CAST(c AS INTEGER) END,
           CASE WHEN d <> '' AND d NOT GLOB '*[^0-9]*' AND length(d) <= 12
                     AND CAST(d AS INTEGER) <= 253402300799 THEN CAST(d AS INTEGER) END
    FROM (
        SELECT ltrim(trim(COALESCE((SELECT value FROM settings WHERE key = 'server.scheduled_sync_claimed_at'), '')), '0') AS c,
               ltrim(trim(COALESCE((SELECT value FROM settings WHERE key = 'server.scheduled_sync_done_at'), '')), '0') AS d
    )
    WHERE EXISTS (SELECT 1 FROM settings WHERE key IN ('server.hostid', 'server.machine_ids',
        'server.license', 'server.certificate', 'server.backoffice_url',
        'server.scheduled_sync_claimed_at', 'server.scheduled_sync_done_at'));
DELETE FROM settings WHERE key IN ('server.hostid', 'server.machine_ids', 'server.license',
    'server.certificate', 'server.backoffice_url', 'server.scheduled_sync_claimed_at',
    'server.scheduled_sync_done_at');
