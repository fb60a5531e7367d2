-- Geofence decision state, one row per supervisee: geofence.transitions.State.to_bytes()
-- (confirmation counters, open conditions, last decided fix; ~40 bytes + ~30 per zone).
-- Persisted so that a restart of the service fires nothing twice. Written in batches by
-- geofence.store.save_states (one statement per batch).
CREATE TABLE geofence_state (
    supervisee_id  text PRIMARY KEY REFERENCES supervisees(id) ON DELETE CASCADE,
    state          bytea NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
