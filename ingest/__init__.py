"""giamsat ingest: device messages from MQTT -> decoded, validated, stored, acknowledged.

Modules, in data-flow order: `records` (domain types), `decode` (pure decoders), `registry`
(device registry cache), `store` (batched COPY storage), `client` / `consumer` (MQTT), `service`
(`IngestService`, `run_forever`), `metrics`. Run alone with `python -m ingest`.
"""
