-- Tessera schema 2 (SQLite): the back office. Keep in step with migrations/postgres/0002_backoffice.sql.
-- Nested domain values (a product's ordered feature list, an entitlement line's policy, a usage
-- report) are JSON text owned by tessera-backoffice; the store keeps them whole.

CREATE TABLE products (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE customers (
    id               TEXT NOT NULL PRIMARY KEY,
    name             TEXT NOT NULL,
    email            TEXT,
    grace_extra_days INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE entitlements (
    id          TEXT NOT NULL PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE entitlement_lines (
    id             TEXT NOT NULL PRIMARY KEY,
    entitlement_id TEXT NOT NULL REFERENCES entitlements (id),
    key_hash       TEXT NOT NULL UNIQUE CHECK (length(key_hash) = 64),
    key_hint       TEXT NOT NULL,
    product_id     TEXT NOT NULL REFERENCES products (id),
    policy_json    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    seq            INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX entitlement_lines_by_entitlement ON entitlement_lines (entitlement_id);

CREATE TABLE activations (
    id          TEXT NOT NULL PRIMARY KEY,
    line_id     TEXT NOT NULL REFERENCES entitlement_lines (id),
    target      TEXT NOT NULL,
    count       INTEGER NOT NULL CHECK (count > 0),
    created_at  INTEGER NOT NULL,
    released_at INTEGER
) STRICT;

CREATE INDEX activations_by_line ON activations (line_id, target);
CREATE INDEX activations_by_target ON activations (target);

CREATE TABLE users (
    name                 TEXT NOT NULL PRIMARY KEY,
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    hash         TEXT NOT NULL PRIMARY KEY,
    name         TEXT NOT NULL,
    user_name    TEXT NOT NULL REFERENCES users (name),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) STRICT;

CREATE TABLE trials (
    product_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    PRIMARY KEY (product_id, fingerprint)
) STRICT;

CREATE TABLE offline_responses (
    request_id  TEXT NOT NULL PRIMARY KEY,
    requester   TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE unlocks (
    line_id     TEXT NOT NULL REFERENCES entitlement_lines (id),
    pc_id       TEXT NOT NULL,
    code        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (line_id, pc_id)
) STRICT;

CREATE TABLE usage_reports (
    id          TEXT NOT NULL PRIMARY KEY,
    reporter    TEXT NOT NULL,
    customer_id TEXT,
    received_at INTEGER NOT NULL,
    over_use    INTEGER NOT NULL DEFAULT 0,
    report_json TEXT NOT NULL
) STRICT;

CREATE INDEX usage_reports_newest_first ON usage_reports (received_at DESC, id DESC);
