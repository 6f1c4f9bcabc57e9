-- Tessera schema 2 (PostgreSQL): the back office. Keep in step with migrations/sqlite/0002_backoffice.sql.
-- Nested domain values (a product's ordered feature list, an entitlement line's policy, a usage
-- report) are JSON text owned by tessera-backoffice; the store keeps them whole.

CREATE TABLE products (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL,
    spec_json   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE customers (
    id               TEXT NOT NULL PRIMARY KEY,
    name             TEXT NOT NULL,
    email            TEXT,
    grace_extra_days BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL
);

CREATE TABLE entitlements (
    id          TEXT NOT NULL PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    created_at  BIGINT NOT NULL
);

CREATE TABLE entitlement_lines (
    id             TEXT NOT NULL PRIMARY KEY,
    entitlement_id TEXT NOT NULL REFERENCES entitlements (id),
    key_hash       TEXT NOT NULL UNIQUE CHECK (length(key_hash) = 64),
    key_hint       TEXT NOT NULL,
    product_id     TEXT NOT NULL REFERENCES products (id),
    policy_json    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    seq            BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX entitlement_lines_by_entitlement ON entitlement_lines (entitlement_id);

CREATE TABLE activations (
    id          TEXT NOT NULL PRIMARY KEY,
    line_id     TEXT NOT NULL REFERENCES entitlement_lines (id),
    target      TEXT NOT NULL,
    count       BIGINT NOT NULL CHECK (count > 0),
    created_at  BIGINT NOT NULL,
    released_at BIGINT
);

CREATE INDEX activations_by_line ON activations (line_id, target);
CREATE INDEX activations_by_target ON activations (target);

CREATE TABLE users (
    name                 TEXT NOT NULL PRIMARY KEY,
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    hash         TEXT NOT NULL PRIMARY KEY,
    name         TEXT NOT NULL,
    user_name    TEXT NOT NULL REFERENCES users (name),
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE trials (
    product_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    PRIMARY KEY (product_id, fingerprint)
);

CREATE TABLE offline_responses (
    request_id  TEXT NOT NULL PRIMARY KEY,
    requester   TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE unlocks (
    line_id     TEXT NOT NULL REFERENCES entitlement_lines (id),
    pc_id       TEXT NOT NULL,
    code        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (line_id, pc_id)
);

CREATE TABLE usage_reports (
    id          TEXT NOT NULL PRIMARY KEY,
    reporter    TEXT NOT NULL,
    customer_id TEXT,
    received_at BIGINT NOT NULL,
    over_use    BIGINT NOT NULL DEFAULT 0,
    report_json TEXT NOT NULL
);

CREATE INDEX usage_reports_newest_first ON usage_reports (received_at DESC, id DESC);
