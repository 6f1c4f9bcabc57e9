-- Tessera schema 13 (SQLite): leases are kept by the count their id was made from. Keep in step with
-- migrations/postgres/0013_leases_by_count.sql.
-- Lease ids are a keyed permutation of a counter (scattered over 2^62), so keyed by id every new
-- lease landed on a different page of the table and a commit of many grants wrote one page per
-- grant. The engine now stores a lease under its count (LeaseIds::stored_key), which only grows,
-- so new rows append. Rows stored before carry their id, and no statement here knows the key of
-- the permutation to find its count: they move to -1 - id, which the engine reads back as that id
-- and keeps using as their key until they are returned.
UPDATE leases SET id = -1 - id WHERE id >= 0;
UPDATE lease_log SET lease_id = -1 - lease_id WHERE kind IN ('put', 'expiry', 'delete') AND lease_id >= 0;
