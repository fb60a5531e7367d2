-- Alerts (contract §3): one row per (supervisee, zone, type) occurrence until resolved, an
-- append-only history of every change, and a transactional outbox of deliveries.

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    type            text NOT NULL CHECK (type IN ('zone_exit', 'zone_enter', 'curfew',
                        'permit_overrun', 'device_offline', 'gnss_lost', 'strap_tamper',
                        'case_tamper', 'battery_low', 'battery_critical', 'gnss_jamming')),
    severity        text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    status          text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'acknowledged', 'resolved')),
    active          boolean NOT NULL DEFAULT true,   -- the condition still holds
    escalated       boolean NOT NULL DEFAULT false,
    supervisee_id   text NOT NULL REFERENCES supervisees(id),
    device_id       text,
    unit            text NOT NULL REFERENCES units(code),   -- responsible commune unit
    zone_id         text,
    lat             double precision,                -- last fix, or NULL
    lon             double precision,
    opened_at       timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    condition_since timestamptz,                     -- when the condition started (escalation)
    escalate_after_s integer,                        -- zone alerts: rise to high after this long
    occurrences     integer NOT NULL DEFAULT 1,      -- repeated occurrences folded in
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    outcome         text CHECK (outcome IN ('violation', 'justified', 'false_alarm')),
    outcome_note    text,
    explanation     jsonb NOT NULL DEFAULT '{}'::jsonb,   -- zone, distance, acc, margin, count
    message_vi      text NOT NULL,
    message_en      text NOT NULL
);
-- "while an alert of a type is not resolved, a new occurrence for the same person, zone and
-- type updates it": at most one unresolved alert per key.
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (supervisee_id, type, coalesce(zone_id, ''))
    WHERE status <> 'resolved';
CREATE INDEX alerts_unit_status ON alerts (unit, status, opened_at DESC);
CREATE INDEX alerts_open_unacked ON alerts (opened_at) WHERE status = 'open' AND NOT escalated;
CREATE INDEX alerts_supervisee ON alerts (supervisee_id, opened_at DESC);

CREATE TABLE alert_history (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts(id),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,            -- 'system' or an officer's username
    action    text NOT NULL,            -- opened, updated, severity, escalated, inactive, active,
                                        -- acknowledged, resolved, note
    note      text,
    data      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_history_alert ON alert_history (alert_id, id);
-- append-only: history rows are never changed or removed (the function serves every
-- append-only table: the audit log too)
CREATE FUNCTION forbid_update_or_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER alert_history_no_update BEFORE UPDATE OR DELETE ON alert_history
    FOR EACH ROW EXECUTE FUNCTION forbid_update_or_delete();

-- Per-unit delivery endpoints (webhooks, signed with the unit's secret).
CREATE TABLE unit_webhooks (
    id        bigserial PRIMARY KEY,
    unit      text NOT NULL REFERENCES units(code) ON DELETE CASCADE,
    url       text NOT NULL,
    secret    text NOT NULL,
    enabled   boolean NOT NULL DEFAULT true,
    UNIQUE (unit, url)
);

-- Transactional outbox: written in the same transaction as the alert change, sent after.
CREATE TABLE deliveries (
    id             bigserial PRIMARY KEY,
    alert_id       bigint NOT NULL REFERENCES alerts(id),
    history_id     bigint NOT NULL REFERENCES alert_history(id),
    channel        text NOT NULL CHECK (channel IN ('mqtt', 'webhook', 'stream')),
    target         text NOT NULL,        -- topic, or webhook id
    idempotency_key text NOT NULL UNIQUE,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    delivered_at   timestamptz,
    last_error     text
);
CREATE INDEX deliveries_pending ON deliveries (channel, next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE delivery_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES deliveries(id),
    at           timestamptz NOT NULL,
    ok           boolean NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  real
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- Confirmed violations (an officer's record, biên bản), counted per supervisee (§3).
CREATE TABLE violation_records (
    id             bigserial PRIMARY KEY,
    supervisee_id  text NOT NULL REFERENCES supervisees(id),
    alert_id       bigint NOT NULL UNIQUE REFERENCES alerts(id),
    recorded_at    timestamptz NOT NULL,
    recorded_by    text NOT NULL,
    note           text
);
CREATE INDEX violation_records_supervisee ON violation_records (supervisee_id);

-- Wakes the API's live stream: NOTIFY alert_changes, '<alert id>:<history id>'.
CREATE FUNCTION notify_alert_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alert_changes', NEW.alert_id || ':' || NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER alert_history_notify AFTER INSERT ON alert_history
    FOR EACH ROW EXECUTE FUNCTION notify_alert_change();
