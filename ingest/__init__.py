"""giamsat ingest: device messages from MQTT -> decoded, validated, stored, acknowledged.

Modules, in data-flow order: `records` (domain types), `decode` (pure decoders), `registry`
(device registry cache), `store` (batched COPY storage), `client` / `consumer` (MQTT), `service`
(`IngestService`, `run_forever`), `metrics`. The service runs it inside `giamsat worker`;
`python -m ingest` runs it alone (storage without decisions, for benchmarks and tests).
"""
