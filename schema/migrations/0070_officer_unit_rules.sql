-- Issue 16: an officer's role and unit agree. An admin has no unit (admins see every unit);
-- a province officer belongs to a province unit (no parent) and a commune officer to a
-- commune unit (one with a parent): api.officers checks those two against the units table.
UPDATE officers SET unit = NULL, updated_at = now() WHERE role = 'admin' AND unit IS NOT NULL;
ALTER TABLE officers ADD CONSTRAINT officers_admin_has_no_unit
    CHECK (role <> 'admin' OR unit IS NULL);
