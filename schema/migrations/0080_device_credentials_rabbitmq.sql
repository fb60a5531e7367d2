-- The durable broker (RabbitMQ, issue 12) checks passwords against its own hash format,
-- base64(salt(4 bytes) || SHA-256(salt || password)) (rabbit_password_hashing_sha256), which
-- cannot be derived from the Mosquitto hash. `giamsat broker-config` stores both when it
-- issues a secret; a device issued a secret before this column existed has none and must be
-- rotated (`giamsat broker-config --rotate DEVICE`) to log in to RabbitMQ.

ALTER TABLE device_credentials
    ADD COLUMN rabbitmq_hash text
        CHECK (rabbitmq_hash IS NULL OR rabbitmq_hash ~ '^[A-Za-z0-9+/]{48}$');
