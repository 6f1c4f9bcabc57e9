-- Tessera schema 18 (SQLite): what a client says about the device holding a lease, kept with the
-- lease for the administrator's views (devices, a feature's devices). Keep in step with
-- migrations/postgres/0018_lease_holder_details.sql.
-- alias: the device's human-readable name from the capability request (NULL: none given);
-- device_type: 'physical', 'virtual', 'container' or 'unknown', as the client said. Leases stored
-- before carry no alias and an unknown device type until their holder asks again. Neither is part
-- of the lease digest (display only). (19 is taken by work written at the same time.)
ALTER TABLE leases ADD COLUMN alias TEXT;
ALTER TABLE leases ADD COLUMN device_type TEXT NOT NULL DEFAULT 'unknown';
