-- Issue 16: a supervisee wears one device at a time (at most one open assignment). Where
-- earlier data has more, the newest assignment stays open and the older ones are closed now,
-- each closure kept in the audit log.
WITH closed AS (
    UPDATE device_assignments a SET unassigned_at = now()
     WHERE a.unassigned_at IS NULL
       AND EXISTS (SELECT 1 FROM device_assignments b
                    WHERE b.supervisee_id = a.supervisee_id AND b.unassigned_at IS NULL
                      AND (b.assigned_at, b.id) > (a.assigned_at, a.id))
    RETURNING a.device_id, a.supervisee_id
), freed AS (
    UPDATE devices d SET supervisee_id = NULL
      FROM closed c WHERE d.id = c.device_id AND d.supervisee_id = c.supervisee_id
    RETURNING d.id
)
INSERT INTO audit_log (at, actor, action, subject, params)
SELECT now(), 'migration 0071', 'device.unassign', c.device_id,
       jsonb_build_object('supervisee_id', c.supervisee_id,
                          'reason', 'a second open assignment of the supervisee')
  FROM closed c;

CREATE UNIQUE INDEX device_assignments_one_open_per_supervisee
    ON device_assignments (supervisee_id) WHERE unassigned_at IS NULL;
