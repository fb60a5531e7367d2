-- Versioned zones and permits (issue 11 §3, "history is never rewritten").
--
-- A change to a zone or a permit is a new row in zone_versions / permit_versions, never an
-- UPDATE of the geometry, schedule, overrides or validity of an existing one: each version says
-- from when it is in force (effective_from), who made it (changed_by: an officer's username,
-- 'import', 'migration' or 'sql') and why (change_reason). Removing a zone is a version with
-- ended = true. The version in force at an instant t is the one with the latest
-- (effective_from, version) not after t; it stays in force until the next one (the *_spans views
-- give each version its effective_to, 'infinity' for the last). The registry package
-- (registry/zones.py, registry/permits.py) is the one writer and the one reader.
--
-- The old tables become views of the versions in force now, under their old names and columns
-- (plus version, effective_from: NULL for '-infinity', changed_by), so readers written before versioning keep
-- working. Rows written straight into those views (INSERT / UPDATE / DELETE, as tests and tools
-- did before) become versions through INSTEAD OF triggers: a first version so written is in
-- force since always ('-infinity', as the row was taken to be before), a later one from now().
--
-- Existing rows are migrated as they stand: each zone keeps its version number (its earlier
-- shapes were overwritten before versioning and are unknown) and each permit becomes version 1;
-- both are in force since '-infinity', which is what every reader assumed until now.

-- Zones -------------------------------------------------------------------------------------

CREATE TABLE zone_versions (
    supervisee_id     text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    zone_id           text NOT NULL,
    version           integer NOT NULL CHECK (version > 0),
    effective_from    timestamptz NOT NULL,
    ended             boolean NOT NULL DEFAULT false,  -- the zone no longer applies from then on
    kind              text CHECK (kind IN ('inclusion', 'exclusion')),
    purpose           text CHECK (purpose IN ('residence', 'ban', 'curfew', 'protection', 'other')),
    geometry          jsonb,
    center_lon        double precision,
    center_lat        double precision,
    radius_m          double precision CHECK (radius_m IS NULL OR radius_m > 0),
    schedule          jsonb,
    margin_m          double precision,
    confirm_fixes     integer,
    escalate_after_s  integer,
    changed_by        text NOT NULL,
    change_reason     text,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (supervisee_id, zone_id, version),
    CHECK (ended OR (kind IS NOT NULL AND purpose IS NOT NULL
                     AND (geometry IS NOT NULL) <> (radius_m IS NOT NULL)))
);
CREATE INDEX zone_versions_in_force ON zone_versions (supervisee_id, zone_id, effective_from);
-- versions scheduled ahead of when they were recorded (rare): registry.stamp counts those in force
CREATE INDEX zone_versions_scheduled ON zone_versions (effective_from)
    WHERE effective_from > recorded_at;

INSERT INTO zone_versions (supervisee_id, zone_id, version, effective_from, kind, purpose,
                           geometry, center_lon, center_lat, radius_m, schedule, margin_m,
                           confirm_fixes, escalate_after_s, changed_by, recorded_at)
SELECT supervisee_id, id, version, '-infinity', kind, purpose, geometry, center_lon, center_lat,
       radius_m, schedule, margin_m, confirm_fixes, escalate_after_s, 'migration', updated_at
  FROM zones;
DROP TABLE zones;

-- Versions are never edited (a supervisee's removal may still delete them, by cascade).
CREATE TRIGGER zone_versions_no_update BEFORE UPDATE ON zone_versions
    FOR EACH ROW EXECUTE FUNCTION forbid_update_or_delete();  -- from 0020

CREATE VIEW zone_spans AS
SELECT v.*, lead(v.effective_from, 1, 'infinity') OVER (
           PARTITION BY v.supervisee_id, v.zone_id ORDER BY v.effective_from, v.version
       ) AS effective_to
  FROM zone_versions v;

CREATE VIEW zones AS
SELECT supervisee_id, zone_id AS id, kind, purpose, geometry, center_lon, center_lat, radius_m,
       schedule, margin_m, confirm_fixes, escalate_after_s, version, recorded_at AS updated_at,
       CASE WHEN isfinite(effective_from) THEN effective_from END AS effective_from, changed_by
  FROM zone_spans
 WHERE effective_from <= now() AND effective_to > now() AND NOT ended;
ALTER VIEW zones ALTER COLUMN purpose SET DEFAULT 'other';

CREATE FUNCTION zones_as_versions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sid text := CASE WHEN TG_OP = 'DELETE' THEN OLD.supervisee_id ELSE NEW.supervisee_id END;
    zid text := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    next_version integer;
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.supervisee_id, NEW.id) IS DISTINCT FROM (OLD.supervisee_id, OLD.id) THEN
        RAISE EXCEPTION 'a zone keeps its supervisee and id: end it and create another';
    END IF;
    IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM zones z WHERE z.supervisee_id = sid AND z.id = zid) THEN
        RAISE unique_violation USING MESSAGE = format('zone %s of supervisee %s exists', zid, sid);
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('zone:' || sid || '/' || zid));
    SELECT coalesce(max(version), 0) + 1 INTO next_version
      FROM zone_versions WHERE supervisee_id = sid AND zone_id = zid;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO zone_versions (supervisee_id, zone_id, version, effective_from, ended, changed_by)
        VALUES (sid, zid, next_version, now(), true, 'sql');
        RETURN OLD;
    END IF;
    NEW.version := next_version;
    NEW.updated_at := now();
    NEW.effective_from := CASE WHEN TG_OP = 'INSERT' AND next_version = 1
                               THEN coalesce(NEW.effective_from, '-infinity') ELSE now() END;
    NEW.changed_by := coalesce(NEW.changed_by, 'sql');
    INSERT INTO zone_versions (supervisee_id, zone_id, version, effective_from, kind, purpose,
                               geometry, center_lon, center_lat, radius_m, schedule, margin_m,
                               confirm_fixes, escalate_after_s, changed_by)
    VALUES (sid, zid, next_version, NEW.effective_from, NEW.kind, coalesce(NEW.purpose, 'other'),
            NEW.geometry, NEW.center_lon, NEW.center_lat, NEW.radius_m, NEW.schedule,
            NEW.margin_m, NEW.confirm_fixes, NEW.escalate_after_s, NEW.changed_by);
    RETURN NEW;
END $$;
CREATE TRIGGER zones_as_versions INSTEAD OF INSERT OR UPDATE OR DELETE ON zones
    FOR EACH ROW EXECUTE FUNCTION zones_as_versions();

-- Permits -----------------------------------------------------------------------------------
-- A permit's identity is its id (permit_ids); revoking it (revoked_at) or shortening it
-- (valid_to) is a new version effective when the change was made. The one rule every reader
-- applies (registry/permits.py): a permit revoked after it started counts up to its revocation;
-- one revoked before it started never applied.

CREATE TABLE permit_versions (
    permit_id      bigint NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    effective_from timestamptz NOT NULL,
    supervisee_id  text NOT NULL REFERENCES supervisees(id) ON DELETE CASCADE,
    valid_from     timestamptz NOT NULL,
    valid_to       timestamptz NOT NULL CHECK (valid_to > valid_from),
    reason         text NOT NULL,
    category       text NOT NULL DEFAULT 'other'
                       CHECK (category IN ('medical', 'visit', 'work', 'family', 'other')),
    destination    jsonb,                            -- GeoJSON geometry; NULL when anywhere
    anywhere       boolean NOT NULL DEFAULT false,
    granted_by     text,
    created_at     timestamptz NOT NULL,             -- when the permit (version 1) was granted
    revoked_at     timestamptz,
    changed_by     text NOT NULL,
    change_reason  text,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (permit_id, version),
    CHECK (anywhere OR destination IS NOT NULL)
);
CREATE INDEX permit_versions_supervisee ON permit_versions (supervisee_id, valid_from);
-- import idempotence and the API's 409: the same permit granted twice is one permit
CREATE UNIQUE INDEX permit_versions_natural
    ON permit_versions (supervisee_id, valid_from, valid_to, reason) WHERE version = 1;

INSERT INTO permit_versions (permit_id, version, effective_from, supervisee_id, valid_from,
                             valid_to, reason, category, destination, anywhere, granted_by,
                             created_at, revoked_at, changed_by, recorded_at)
SELECT id, 1, '-infinity', supervisee_id, valid_from, valid_to, reason, category, destination,
       anywhere, granted_by, created_at, revoked_at, coalesce(granted_by, 'migration'), created_at
  FROM permits;

CREATE SEQUENCE permit_ids OWNED BY permit_versions.permit_id;
SELECT setval('permit_ids', coalesce(max(permit_id), 0) + 1, false) FROM permit_versions;
DROP TABLE permits;

CREATE TRIGGER permit_versions_no_update BEFORE UPDATE ON permit_versions
    FOR EACH ROW EXECUTE FUNCTION forbid_update_or_delete();

-- (a permit keeps its supervisee: partitioning by both lets a filter on the supervisee reach
-- the table's index instead of spanning every permit)
CREATE VIEW permit_spans AS
SELECT v.*, lead(v.effective_from, 1, 'infinity') OVER (
           PARTITION BY v.supervisee_id, v.permit_id ORDER BY v.effective_from, v.version
       ) AS effective_to
  FROM permit_versions v;

CREATE VIEW permits AS
SELECT permit_id AS id, supervisee_id, valid_from, valid_to, reason, category, destination,
       anywhere, granted_by, created_at, revoked_at, version,
       CASE WHEN isfinite(effective_from) THEN effective_from END AS effective_from, changed_by,
       change_reason
  FROM permit_spans
 WHERE effective_to = 'infinity';
ALTER VIEW permits ALTER COLUMN category SET DEFAULT 'other';
ALTER VIEW permits ALTER COLUMN anywhere SET DEFAULT false;

CREATE FUNCTION permits_as_versions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_version integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'permits are versioned: revoke permit % instead of deleting it', OLD.id;
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.supervisee_id) IS DISTINCT FROM (OLD.id, OLD.supervisee_id) THEN
        RAISE EXCEPTION 'a permit keeps its id and supervisee';
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.id := coalesce(NEW.id, nextval('permit_ids'));
        next_version := 1;
        NEW.effective_from := coalesce(NEW.effective_from, '-infinity');
        NEW.created_at := coalesce(NEW.created_at, now());
    ELSE
        PERFORM pg_advisory_xact_lock(hashtext('permit:' || OLD.id));
        SELECT max(version) + 1 INTO next_version FROM permit_versions WHERE permit_id = OLD.id;
        NEW.effective_from := greatest(now(), OLD.effective_from);
    END IF;
    NEW.version := next_version;
    NEW.changed_by := coalesce(NEW.changed_by, NEW.granted_by, 'sql');
    INSERT INTO permit_versions (permit_id, version, effective_from, supervisee_id, valid_from,
                                 valid_to, reason, category, destination, anywhere, granted_by,
                                 created_at, revoked_at, changed_by, change_reason)
    VALUES (NEW.id, next_version, NEW.effective_from, NEW.supervisee_id, NEW.valid_from,
            NEW.valid_to, NEW.reason, coalesce(NEW.category, 'other'), NEW.destination,
            coalesce(NEW.anywhere, false), NEW.granted_by, NEW.created_at, NEW.revoked_at,
            NEW.changed_by, NEW.change_reason);
    RETURN NEW;
END $$;
CREATE TRIGGER permits_as_versions INSTEAD OF INSERT OR UPDATE OR DELETE ON permits
    FOR EACH ROW EXECUTE FUNCTION permits_as_versions();
