-- Counts an officer's password changes. Bearer tokens carry the count they were issued under:
-- after a change (a reset by an admin, a suspected leak) older tokens are refused and cannot
-- be refreshed, so one password change signs the officer out everywhere.
ALTER TABLE officers ADD COLUMN password_version integer NOT NULL DEFAULT 1;
