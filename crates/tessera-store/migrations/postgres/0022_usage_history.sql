-- Tessera schema 22 (PostgreSQL): usage history. Keep in step with migrations/sqlite/0022_usage_history.sql.
-- Seats used and the count of each feature over time, for the manager's usage history (and
-- `tessera server usage-history`). The license server samples every feature each minute
-- (resolution 'minute'), rolls minutes older than 2 days into hours ('hour') and hours older than
-- 90 days into days ('day'), keeping the most seats used in the period and the count. Kept per
-- instance, like the leases. One row per instance, feature, version, resolution and period: the
-- members of a cluster sampling the same minute write the same row (an upsert keeps the largest
-- use), so nothing is counted twice.
--   at:    unix seconds, the start of the period (a whole minute, hour or UTC day)
--   used:  the most seats in use seen in the period
--   count: the seats licensed (the sum of the feature's records of that version); NULL: uncounted
CREATE TABLE usage_history (
    instance   TEXT NOT NULL,
    feature    TEXT NOT NULL,
    version    TEXT NOT NULL,
    resolution TEXT NOT NULL,
    at         BIGINT NOT NULL,
    used       BIGINT NOT NULL,
    count      BIGINT,
    PRIMARY KEY (instance, feature, version, resolution, at)
);

CREATE INDEX usage_history_by_time ON usage_history (instance, resolution, at);
