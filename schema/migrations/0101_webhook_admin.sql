-- Webhooks registered from the dashboard (issue 15): who added each one and when, and when it
-- was last switched off; the secret is shown once at creation and never returned again.
ALTER TABLE unit_webhooks ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE unit_webhooks ADD COLUMN created_by text;
ALTER TABLE unit_webhooks ADD COLUMN disabled_at timestamptz;
