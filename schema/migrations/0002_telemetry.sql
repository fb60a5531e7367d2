-- Telemetry kept as evidence: every accepted fix, heartbeat and device event, and every
-- rejected message (dead letters) with its reason and raw payload.
--
-- Dedup (contract §1): a message is stored once per (device_id, kind, seq, ts); one table per
-- kind, so the unique key is (device_id, ts, seq). It leads with device_id, ts so the same
-- index serves track queries by device and time range.
-- Plain PostgreSQL path: BRIN on received_at for time scans; the .timescale.sql companion turns
-- these tables into hypertables instead.

CREATE TABLE fixes (
    device_id      text NOT NULL,
    ts             timestamptz NOT NULL,          -- time of the GNSS fix (device clock)
    seq            bigint NOT NULL,
    lat            double precision NOT NULL,
    lon            double precision NOT NULL,
    acc            real NOT NULL,                  -- horizontal accuracy, m
    spd            real,                           -- m/s
    hdg            real,                           -- degrees
    alt            real,                           -- m
    sats           smallint,
    src            text NOT NULL DEFAULT 'gnss',   -- gnss | wifi | cell
    received_at    timestamptz NOT NULL,           -- when the service took it from the broker
    supervisee_id  text                            -- assignment when received
);
CREATE UNIQUE INDEX fixes_key ON fixes (device_id, ts, seq);
CREATE INDEX fixes_received_brin ON fixes USING brin (received_at);

CREATE TABLE heartbeats (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    seq          bigint NOT NULL,
    batt         real NOT NULL,                    -- %
    chg          boolean,
    strap        text,
    "case"       text,
    rssi         real,                             -- dBm
    gnss         text,
    fw           text,
    received_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX heartbeats_key ON heartbeats (device_id, ts, seq);
CREATE INDEX heartbeats_received_brin ON heartbeats USING brin (received_at);

CREATE TABLE device_events (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    seq          bigint NOT NULL,
    type         text NOT NULL,
    detail       jsonb,
    received_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX device_events_key ON device_events (device_id, ts, seq);
CREATE INDEX device_events_received_brin ON device_events USING brin (received_at);

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    device_id    text,                             -- as named by the topic, registered or not
    reason       text NOT NULL,                    -- bounded set, see ingest/decode.py
    detail       text NOT NULL,                    -- what exactly was wrong, for the reader
    element      integer,                          -- index in a {"fixes": [...]} batch, else NULL
    payload      bytea NOT NULL
);
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- The latest known state of each device, for the next stages and the dashboard.
CREATE TABLE device_state (
    device_id        text PRIMARY KEY,
    last_seen_at     timestamptz,                  -- received_at of the latest message of any kind
    last_fix_ts      timestamptz,
    last_fix_lat     double precision,
    last_fix_lon     double precision,
    last_fix_acc     real,
    last_good_fix_ts timestamptz,                  -- latest fix with acc <= max_accuracy_m
    last_hb_ts       timestamptz,
    battery          real,
    charging         boolean,
    strap            text,
    "case"           text,
    gnss             text,
    rssi             real,
    fw               text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
