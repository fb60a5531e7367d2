-- What the decide stage and the alert rules keep beside 0020_alerts.sql.

-- Rule lookups go by "is an alert of this key active?" (contract §3: `active` follows the
-- condition, resolved alerts included, so a condition that outlives its resolution does not
-- open a second alert).
CREATE INDEX alerts_active ON alerts (supervisee_id, type) WHERE active;
-- severity-rise sweep: active zone alerts not yet raised
CREATE INDEX alerts_rising ON alerts (condition_since)
    WHERE active AND severity = 'medium' AND status <> 'resolved';

-- The newest heartbeat / device event (kind 'hb' / 'evt') of each device that the state rules
-- have applied, as (ts, seq): an older one is stored but changes no alert, and telemetry read
-- again by the startup recovery is not applied twice.
CREATE TABLE alert_source_marks (
    device_id  text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('hb', 'evt')),
    last_ts    timestamptz NOT NULL,
    last_seq   bigint NOT NULL,
    PRIMARY KEY (device_id, kind)
);

-- How far the decide stage has got: every stored message received before `received_at` has
-- been decided (it is the earliest receipt of the last decided batch; batches are stored in
-- receipt order). Startup recovery re-reads telemetry received since (less a slack) and the
-- persisted decision state / marks skip what was already decided.
CREATE TABLE decide_progress (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    received_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- Downlink commands (contract §1) and the devices' answers.
CREATE TABLE device_commands (
    id          text PRIMARY KEY,
    device_id   text NOT NULL,
    type        text NOT NULL CHECK (type IN ('locate', 'set_interval', 'notify_wearer')),
    payload     jsonb NOT NULL,
    sent_at     timestamptz NOT NULL,
    sent_by     text NOT NULL DEFAULT 'system',
    answered_at timestamptz,             -- when the service received the ack
    ack_ts      timestamptz,             -- the device's own ts of the ack
    ok          boolean
);
CREATE INDEX device_commands_device ON device_commands (device_id, sent_at DESC);
