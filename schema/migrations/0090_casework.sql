-- Casework of the provincial plans (issue 13): roll-call, monthly assessment, case deadlines,
-- judgments and reconciliation. Dates are local dates (Asia/Ho_Chi_Minh unless a unit says
-- otherwise); instants are timestamptz.

-- The commune police station (trụ sở công an xã), where a check-in must be made: a circle
-- {"center": [lon, lat], "radius_m": r} or {"geometry": GeoJSON Polygon / MultiPolygon}.
ALTER TABLE units ADD COLUMN station jsonb;

-- The chief of a commune police unit (trưởng công an xã) signs the monthly assessment: a
-- capability of a commune officer, not a role of its own, so scope rules stay as they are.
ALTER TABLE officers ADD COLUMN chief boolean NOT NULL DEFAULT false;
ALTER TABLE officers ADD CONSTRAINT officers_chief_commune CHECK (NOT chief OR role = 'commune');

-- checkin_missed: a scheduled roll-call window closed without a check-in (contract §3).
ALTER TABLE alerts DROP CONSTRAINT alerts_type_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_type_check CHECK (type IN ('zone_exit', 'zone_enter',
    'curfew', 'permit_overrun', 'device_offline', 'gnss_lost', 'strap_tamper', 'case_tamper',
    'battery_low', 'battery_critical', 'gnss_jamming', 'monitoring_ended', 'checkin_missed'));

-- Ad-hoc roll-calls (điểm danh đột xuất) an officer calls; the monthly ones follow the policy.
CREATE TABLE rollcall_windows (
    id             bigserial PRIMARY KEY,
    supervisee_id  text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    opens_at       timestamptz NOT NULL,
    closes_at      timestamptz NOT NULL CHECK (closes_at > opens_at),
    called_by      text NOT NULL,
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollcall_windows_closes ON rollcall_windows (closes_at);

-- A check-in (kiểm diện): in person, recorded by an officer, or a device's `checkin` event.
-- `at_station`: the place was inside the unit's station zone (always true in person).
CREATE TABLE checkins (
    id             bigserial PRIMARY KEY,
    supervisee_id  text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    at             timestamptz NOT NULL,
    method         text NOT NULL CHECK (method IN ('in_person', 'device')),
    device_id      text,
    device_seq     bigint,
    lat            double precision,
    lon            double precision,
    at_station     boolean NOT NULL,
    recorded_by    text,
    note           text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((method = 'device') = (device_id IS NOT NULL))
);
CREATE INDEX checkins_supervisee ON checkins (supervisee_id, at);
-- a device event read twice (recovery after a crash) is one check-in
CREATE UNIQUE INDEX checkins_device_event ON checkins (device_id, at, device_seq)
    WHERE device_id IS NOT NULL;

-- Roll-call windows found missed: one row per window, written with its alert occurrence in one
-- transaction, so a window is reported once across restarts.
CREATE TABLE rollcall_misses (
    supervisee_id  text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    opens_at       timestamptz NOT NULL,
    closes_at      timestamptz NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('monthly', 'ad_hoc')),
    alert_id       bigint REFERENCES alerts(id),
    found_at       timestamptz NOT NULL,
    PRIMARY KEY (supervisee_id, opens_at)
);

-- Monthly assessment (đánh giá, xếp loại hằng tháng): proposed from the month's records,
-- confirmed or changed with a reason by the commune officer, signed per unit by the chief.
CREATE TABLE assessments (
    supervisee_id   text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    unit            text NOT NULL REFERENCES units(code),
    proposed        text NOT NULL CHECK (proposed IN ('tot', 'kha', 'trung_binh', 'kem')),
    basis           jsonb NOT NULL,
    classification  text NOT NULL CHECK (classification IN ('tot', 'kha', 'trung_binh', 'kem')),
    reason          text,
    confirmed_by    text NOT NULL,
    confirmed_at    timestamptz NOT NULL,
    PRIMARY KEY (supervisee_id, month),
    CHECK (classification = proposed OR reason IS NOT NULL)
);
CREATE INDEX assessments_unit ON assessments (unit, month);

CREATE TABLE assessment_signatures (
    unit       text NOT NULL REFERENCES units(code),
    month      date NOT NULL CHECK (extract(day FROM month) = 1),
    signed_by  text NOT NULL,
    signed_at  timestamptz NOT NULL,
    people     integer NOT NULL CHECK (people >= 0),
    PRIMARY KEY (unit, month)
);

-- A case file's dates (hồ sơ): received, officer assigned, supervision plan issued.
CREATE TABLE case_files (
    supervisee_id        text PRIMARY KEY REFERENCES supervisees(id) ON DELETE CASCADE,
    received_on          date NOT NULL,
    officer              text,
    officer_assigned_on  date CHECK (officer_assigned_on >= received_on),
    plan_issued_on       date CHECK (plan_issued_on >= received_on),
    updated_by           text NOT NULL,
    updated_at           timestamptz NOT NULL
);

-- The review meeting (họp kiểm điểm) held after a violation record.
CREATE TABLE review_meetings (
    violation_record_id  bigint PRIMARY KEY REFERENCES violation_records(id),
    held_on              date NOT NULL,
    recorded_by          text NOT NULL,
    note                 text
);

-- The judgment or decision being executed (bản án, quyết định thi hành án) and its changes.
CREATE TABLE judgments (
    supervisee_id  text PRIMARY KEY REFERENCES supervisees(id) ON DELETE CASCADE,
    number         text NOT NULL,
    issued_on      date NOT NULL,
    court          text NOT NULL,
    sentence_type  text NOT NULL CHECK (sentence_type IN ('an_treo', 'cai_tao_khong_giam_giu',
                       'tha_tu_truoc_thoi_han', 'hoan_tam_dinh_chi', 'quan_che', 'cam_cu_tru')),
    term_months    integer CHECK (term_months >= 0),
    start_on       date NOT NULL,
    end_on         date NOT NULL CHECK (end_on >= start_on),
    recorded_by    text NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX judgments_number ON judgments (number);

CREATE TABLE judgment_changes (
    id             bigserial PRIMARY KEY,
    supervisee_id  text NOT NULL REFERENCES judgments(supervisee_id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('end_reduced', 'residence_transferred',
                                                 'revoked')),
    effective_on   date NOT NULL,
    new_end_on     date,
    from_unit      text REFERENCES units(code),
    to_unit        text REFERENCES units(code),
    note           text,
    recorded_by    text NOT NULL,
    recorded_at    timestamptz NOT NULL,
    CHECK (kind <> 'end_reduced' OR new_end_on IS NOT NULL),
    CHECK (kind <> 'residence_transferred' OR to_unit IS NOT NULL)
);
CREATE INDEX judgment_changes_effective ON judgment_changes (effective_on);
