-- Several workers (issue 12): the durable broker spreads device topics over N quorum queues
-- (shards), each read by one active worker at a time. A worker that takes over a shard from
-- one that died decides again what the dead one stored but had not decided: it needs to know
-- which devices' messages (per kind: fix, hb, evt, ack, each a routing key of its own) that
-- shard carries. Ingest records it here, in the transaction that stores the messages.

CREATE TABLE ingest_routes (
    device_id  text NOT NULL,
    kind       text NOT NULL,
    shard      integer NOT NULL CHECK (shard >= 0),
    PRIMARY KEY (device_id, kind)
);
CREATE INDEX ingest_routes_shard ON ingest_routes (shard);
