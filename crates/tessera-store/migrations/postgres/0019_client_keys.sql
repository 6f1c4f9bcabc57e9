-- Tessera schema 19 (PostgreSQL): a license server's client keys (the public keys that may sign
-- capability requests) and the producer keys it trusts for license bundles and certificates.
-- Keep in step with migrations/sqlite/0019_client_keys.sql. (18 is taken by work written at the
-- same time; the numbers need not be contiguous.) Times are unix seconds.
-- public_der: the key as SubjectPublicKeyInfo DER, base64 (standard alphabet); id: the key's
-- fingerprint (hex of the first 16 bytes of the SHA-256 of that DER).
CREATE TABLE client_keys (
    instance   TEXT NOT NULL,
    id         TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    public_der TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    added_by   TEXT NOT NULL,
    PRIMARY KEY (instance, id)
);

-- kid: the producer key's id (its RFC 7638 thumbprint); public_pem: SPKI PEM.
CREATE TABLE trusted_producer_keys (
    instance   TEXT NOT NULL,
    kid        TEXT NOT NULL,
    public_pem TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    added_by   TEXT NOT NULL,
    PRIMARY KEY (instance, kid)
);
