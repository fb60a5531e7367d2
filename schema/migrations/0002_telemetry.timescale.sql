-- TimescaleDB path for the telemetry tables: hypertables on the fix time, compressed after a
-- week (segment by device, so a track read touches one segment), kept for 10 years as evidence.
SELECT create_hypertable('fixes', by_range('ts', INTERVAL '1 day'), migrate_data => true);
SELECT create_hypertable('heartbeats', by_range('ts', INTERVAL '1 day'), migrate_data => true);
SELECT create_hypertable('device_events', by_range('ts', INTERVAL '7 days'), migrate_data => true);

ALTER TABLE fixes SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                       timescaledb.compress_orderby = 'ts, seq');
ALTER TABLE heartbeats SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                            timescaledb.compress_orderby = 'ts, seq');
ALTER TABLE device_events SET (timescaledb.compress,
                               timescaledb.compress_segmentby = 'device_id',
                               timescaledb.compress_orderby = 'ts, seq');

SELECT add_compression_policy('fixes', compress_after => INTERVAL '7 days');
SELECT add_compression_policy('heartbeats', compress_after => INTERVAL '7 days');
SELECT add_compression_policy('device_events', compress_after => INTERVAL '30 days');

SELECT add_retention_policy('fixes', drop_after => INTERVAL '10 years');
SELECT add_retention_policy('heartbeats', drop_after => INTERVAL '2 years');
SELECT add_retention_policy('device_events', drop_after => INTERVAL '10 years');
