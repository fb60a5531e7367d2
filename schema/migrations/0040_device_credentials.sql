-- MQTT credentials of devices (contract §1: a device connects as its device_id and may publish
-- only under its own em/v1/dev/{device_id}/). `giamsat broker-config` issues each registered
-- device a random secret once, hands the secret to the operator, and keeps only Mosquitto's
-- PBKDF2-SHA512 hash of it here, in the exact form Mosquitto 2's password_file takes
-- ($7$iterations$base64(salt)$base64(hash)), so the password file can be rewritten at any
-- time without knowing a secret. Deleting a device deletes its credential.

CREATE TABLE device_credentials (
    device_id      text PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    password_hash  text NOT NULL
                       CHECK (password_hash ~ '^\$7\$[0-9]+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$'),
    issued_at      timestamptz NOT NULL DEFAULT now()
);
