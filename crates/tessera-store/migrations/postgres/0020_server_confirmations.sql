-- What a license server last confirmed it serves: the license (its id) from an offline response it
-- applied, and when the back office received the confirmation (unix seconds). A server that never
-- goes online tells the back office this way which bundle it runs.
ALTER TABLE servers ADD COLUMN confirmed_license TEXT;
ALTER TABLE servers ADD COLUMN confirmed_at BIGINT;
