-- Registry: who is supervised, by which unit, wearing which device, within which zones.
-- Times are timestamptz (UTC on the wire as epoch ms); distances in metres.

CREATE TABLE units (
    code          text PRIMARY KEY,                 -- admin code of the police unit, e.g. 'CAX-00001'
    name          text NOT NULL,
    parent        text REFERENCES units(code),      -- the province's PC10 for a commune unit; NULL at the top
    boundary      jsonb,                            -- GeoJSON Polygon / MultiPolygon of the area it covers
    ack_within_s  integer NOT NULL DEFAULT 300 CHECK (ack_within_s > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE supervisees (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    sentence_type   text NOT NULL CHECK (sentence_type IN ('an_treo', 'cai_tao_khong_giam_giu',
                        'tha_tu_truoc_thoi_han', 'hoan_tam_dinh_chi', 'quan_che', 'cam_cu_tru')),
    sentence_start  date NOT NULL,
    sentence_end    date NOT NULL CHECK (sentence_end >= sentence_start),
    unit            text NOT NULL REFERENCES units(code),   -- responsible commune police unit
    residence_unit  text REFERENCES units(code),            -- commune of residence (defaults to unit)
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX supervisees_unit ON supervisees (unit);

-- A zone is a GeoJSON Polygon/MultiPolygon (geometry) or a circle (center + radius_m).
CREATE TABLE zones (
    supervisee_id     text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    id                text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('inclusion', 'exclusion')),
    purpose           text NOT NULL DEFAULT 'other'
                          CHECK (purpose IN ('residence', 'ban', 'curfew', 'protection', 'other')),
    geometry          jsonb,
    center_lon        double precision,
    center_lat        double precision,
    radius_m          double precision CHECK (radius_m IS NULL OR radius_m > 0),
    schedule          jsonb,                         -- [{"days":[1..7],"start":"HH:MM","end":"HH:MM"}] or NULL
    margin_m          double precision,              -- per-zone overrides, NULL = policy/settings default
    confirm_fixes     integer,
    escalate_after_s  integer,
    version           bigint NOT NULL DEFAULT 1,     -- bumped on every change, for index rebuilds
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (supervisee_id, id),
    CHECK ((geometry IS NOT NULL) <> (radius_m IS NOT NULL))
);

CREATE TABLE permits (
    id             bigserial PRIMARY KEY,
    supervisee_id  text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    valid_from     timestamptz NOT NULL,
    valid_to       timestamptz NOT NULL CHECK (valid_to > valid_from),
    reason         text NOT NULL,
    category       text NOT NULL DEFAULT 'other'
                       CHECK (category IN ('medical', 'visit', 'work', 'family', 'other')),
    destination    jsonb,                            -- GeoJSON geometry; NULL when anywhere
    anywhere       boolean NOT NULL DEFAULT false,
    granted_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CHECK (anywhere OR destination IS NOT NULL)
);
CREATE INDEX permits_supervisee ON permits (supervisee_id, valid_from);
-- import idempotence: the same permit imported twice is one row
CREATE UNIQUE INDEX permits_natural ON permits (supervisee_id, valid_from, valid_to, reason);

CREATE TABLE devices (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    supervisee_id  text REFERENCES supervisees(id),
    registered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_supervisee ON devices (supervisee_id);

CREATE TABLE device_assignments (
    id             bigserial PRIMARY KEY,
    device_id      text NOT NULL REFERENCES devices(id),
    supervisee_id  text NOT NULL REFERENCES supervisees(id),
    assigned_at    timestamptz NOT NULL DEFAULT now(),
    unassigned_at  timestamptz,
    assigned_by    text
);
CREATE UNIQUE INDEX device_assignments_open ON device_assignments (device_id) WHERE unassigned_at IS NULL;

-- Bumped by any registry change the running pipeline must reload (zones, permits, devices).
CREATE TABLE registry_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL DEFAULT 1
);
INSERT INTO registry_version VALUES (true, 1);
