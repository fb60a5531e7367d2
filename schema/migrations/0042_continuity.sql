-- Monitoring never goes blind (issue 11): alerts raised from late fixes say when the condition
-- began by the fixes' own times, and the types that start and end monitoring.

-- Set when the fixes (or device messages) behind an alert were older than the late bound when
-- the service raised it (a restart, a backlog, a buffered batch): the condition began at
-- occurred_at, the service raised it at opened_at. NULL for alerts raised live.
ALTER TABLE alerts ADD COLUMN occurred_at timestamptz;

-- monitoring_ended: the sentence ended, the device should be removed (contract §3).
ALTER TABLE alerts DROP CONSTRAINT alerts_type_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_type_check CHECK (type IN ('zone_exit', 'zone_enter',
    'curfew', 'permit_overrun', 'device_offline', 'gnss_lost', 'strap_tamper', 'case_tamper',
    'battery_low', 'battery_critical', 'gnss_jamming', 'monitoring_ended'));
