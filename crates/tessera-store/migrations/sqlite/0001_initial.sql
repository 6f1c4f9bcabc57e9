-- Tessera schema 1 (SQLite).
--
-- Keep in step with migrations/postgres/0001_initial.sql: same tables, same columns, same version
-- number. Never edit a migration once it has shipped (sqlx checks its checksum): add a new one.
-- Times are i64 unix seconds; tables are STRICT so a wrongly typed value is refused.

-- MetaStore: free-form settings and the restore-detection anchor (one row, id = 1).
CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE anchor (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;

INSERT INTO anchor (id, value) VALUES (1, 0);

-- KeyStore: producer public keys, by key id.
CREATE TABLE public_keys (
    kid        TEXT NOT NULL PRIMARY KEY,
    public_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
) STRICT;

-- LicenseStore: issued license documents and the host ids each is locked to, in order.
CREATE TABLE licenses (
    id         TEXT NOT NULL PRIMARY KEY,
    kid        TEXT NOT NULL,
    licensee   TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER,
    token      TEXT NOT NULL
) STRICT;

CREATE INDEX licenses_newest_first ON licenses (issued_at DESC, id DESC);

CREATE TABLE license_hostids (
    license_id TEXT NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    hostid     TEXT NOT NULL,
    PRIMARY KEY (license_id, position)
) STRICT;

CREATE INDEX license_hostids_by_hostid ON license_hostids (hostid);

-- ActivationKeyStore: only the SHA-256 of a key (64 lower-case hex characters), never the key.
CREATE TABLE activation_keys (
    hash       TEXT NOT NULL PRIMARY KEY CHECK (length(hash) = 64),
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
