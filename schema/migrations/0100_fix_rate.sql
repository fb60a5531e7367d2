-- The fix rate the service last asked each device for (contract §1 `set_interval`): faster
-- while the device's wearer has an unresolved zone alert, back to normal once all are
-- resolved. One row per device the service ever sped up; the job in
-- alerts/delivery/fixrate.py compares it with what the open alerts want.
CREATE TABLE device_fix_rate (
    device_id   text PRIMARY KEY,
    fix_s       integer NOT NULL CHECK (fix_s > 0),  -- the interval asked for, s
    command_id  text NOT NULL,                       -- device_commands.id of the request
    sent_at     timestamptz NOT NULL
);
