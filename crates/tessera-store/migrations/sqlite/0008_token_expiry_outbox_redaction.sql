-- Tessera schema 8 (SQLite): API tokens may expire; a mail carrying a secret keeps a redacted copy
-- of its body that replaces the body once it is delivered. Keep in step with
-- migrations/postgres/0008_token_expiry_outbox_redaction.sql.
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);
ALTER TABLE outbox ADD COLUMN redacted_body TEXT;
