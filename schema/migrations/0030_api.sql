-- Officers' API (issue 5): who may sign in, and an append-only audit log of what they read and
-- changed. Passwords are argon2id hashes (argon2-cffi); never stored or logged in clear.

CREATE TABLE officers (
    username       text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.-]{3,64}$'),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('commune', 'province', 'admin')),
    unit           text REFERENCES units(code),     -- the officer's unit; NULL only for admins
    display_name   text,
    active         boolean NOT NULL DEFAULT true,   -- false = may no longer sign in
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (role = 'admin' OR unit IS NOT NULL)
);
CREATE INDEX officers_unit ON officers (unit);

-- Every read of a track, a case export or a dead letter, and every change made through the API:
-- who (username), what (a bounded action name), which record (subject), when, with what params.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    actor    text NOT NULL,
    action   text NOT NULL,          -- e.g. track.read, case_export.read, dead_letters.read
    subject  text,                   -- supervisee id, device id, alert id, unit code, username
    params   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_subject ON audit_log (subject, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION forbid_update_or_delete();  -- from 0020
