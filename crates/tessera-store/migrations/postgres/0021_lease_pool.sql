-- The named pool a lease draws on, by name (NULL: the default pool, or no named pools), kept with
-- the lease so that a restart, or another member of a cluster, counts it in the pool it was granted
-- from whatever rule of access (an alias or an attribute the client sent) put its holder there.
-- Leases stored before are counted where the rules put their holder's hostid and user.
ALTER TABLE leases ADD COLUMN pool TEXT;
ALTER TABLE lease_log ADD COLUMN pool TEXT;
