-- TimescaleDB path: retention by receipt time (see the plain file). The policies of 0002
-- dropped chunks by `ts`, the device's clock; they go, and TimescaleDB's job scheduler runs
-- giamsat_apply_retention() daily instead.
SELECT remove_retention_policy('fixes', if_exists => true);
SELECT remove_retention_policy('heartbeats', if_exists => true);
SELECT remove_retention_policy('device_events', if_exists => true);
SELECT add_job('giamsat_apply_retention', INTERVAL '1 day');
