-- Tessera schema 1 (PostgreSQL).
--
-- Keep in step with migrations/sqlite/0001_initial.sql: same tables, same columns, same version
-- number. Never edit a migration once it has shipped (sqlx checks its checksum): add a new one.
-- Times are i64 unix seconds (BIGINT); every integer column is BIGINT so both backends decode to i64.

-- MetaStore: free-form settings and the restore-detection anchor (one row, id = 1).
CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE anchor (
    id    BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);

INSERT INTO anchor (id, value) VALUES (1, 0);

-- KeyStore: producer public keys, by key id.
CREATE TABLE public_keys (
    kid        TEXT NOT NULL PRIMARY KEY,
    public_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

-- LicenseStore: issued license documents and the host ids each is locked to, in order.
CREATE TABLE licenses (
    id         TEXT NOT NULL PRIMARY KEY,
    kid        TEXT NOT NULL,
    licensee   TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT,
    token      TEXT NOT NULL
);

CREATE INDEX licenses_newest_first ON licenses (issued_at DESC, id DESC);

CREATE TABLE license_hostids (
    license_id TEXT NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    position   BIGINT NOT NULL,
    hostid     TEXT NOT NULL,
    PRIMARY KEY (license_id, position)
);

CREATE INDEX license_hostids_by_hostid ON license_hostids (hostid);

-- ActivationKeyStore: only the SHA-256 of a key (64 lower-case hex characters), never the key.
CREATE TABLE activation_keys (
    hash       TEXT NOT NULL PRIMARY KEY CHECK (length(hash) = 64),
    label      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
