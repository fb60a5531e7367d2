-- Retention acts on what was received when (issue 16), not on the device's clock.
--
-- A device's `ts` is its own clock: one reset to 1970 would have its messages, received today,
-- deleted by the next retention run if retention went by `ts`. The service's `received_at` is
-- the time the evidence arrived; how long it is kept counts from then. (The decoder also
-- dead-letters a `ts` more than GIAMSAT_MAX_FIX_AGE_DAYS in the past: `stale_ts`.)
--
-- `telemetry_retention` says how long each telemetry table keeps a row after its receipt;
-- `CALL giamsat_apply_retention()` removes what is past it, on either path:
-- - plain PostgreSQL: DELETE by `received_at` (BRIN-indexed); run it daily (`giamsat retention`
--   from cron or a timer);
-- - TimescaleDB (the .timescale.sql companion schedules it as a daily job, replacing the
--   policies that dropped chunks by `ts`): a chunk is dropped only when it lies wholly before
--   the cutoff by `ts` and none of its rows was received after the cutoff. A chunk holding even
--   one row received later stays whole until that row is past its time too: nothing is removed
--   before its time, some rows may outlive theirs.
-- Dead letters are not telemetry: they are kept.

CREATE TABLE telemetry_retention (
    table_name  text PRIMARY KEY CHECK (table_name IN ('fixes', 'heartbeats', 'device_events')),
    keep        interval NOT NULL CHECK (keep >= interval '1 day')  -- after received_at
);
INSERT INTO telemetry_retention (table_name, keep) VALUES
    ('fixes', interval '10 years'),
    ('heartbeats', interval '2 years'),
    ('device_events', interval '10 years');

-- What one table loses at `cutoff`: the rows (plain) or chunks (hypertable) removed.
CREATE FUNCTION giamsat_drop_received_before(tbl text, cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint := 0;
    c record;
    recent boolean;
    hypertable boolean := false;
BEGIN
    -- timescaledb_information exists only with the extension: named in dynamic SQL alone
    IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                                 WHERE hypertable_schema = ''public'' AND hypertable_name = $1)'
            INTO hypertable USING tbl;
    END IF;
    IF NOT hypertable THEN
        EXECUTE format('DELETE FROM public.%I WHERE received_at < $1', tbl) USING cutoff;
        GET DIAGNOSTICS removed = ROW_COUNT;
        RETURN removed;
    END IF;
    FOR c IN EXECUTE
        'SELECT chunk_schema, chunk_name, range_start, range_end
           FROM timescaledb_information.chunks
          WHERE hypertable_schema = ''public'' AND hypertable_name = $1 AND range_end <= $2
          ORDER BY range_start' USING tbl, cutoff
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE received_at >= $1)',
                       c.chunk_schema, c.chunk_name) INTO recent USING cutoff;
        CONTINUE WHEN recent;
        EXECUTE 'SELECT count(*) FROM drop_chunks($1::regclass, older_than => $2, newer_than => $3)'
            USING 'public.' || quote_ident(tbl), c.range_end, c.range_start;
        removed := removed + 1;
    END LOOP;
    RETURN removed;
END $$;

-- Every telemetry table, each by its own `keep`. The signature is a TimescaleDB job's.
CREATE PROCEDURE giamsat_apply_retention(job_id integer DEFAULT NULL, config jsonb DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    removed bigint;
BEGIN
    FOR r IN SELECT table_name, keep FROM telemetry_retention ORDER BY table_name LOOP
        removed := giamsat_drop_received_before(r.table_name, now() - r.keep);
        IF removed > 0 THEN
            RAISE LOG 'giamsat retention: % rows (plain table) or chunks (hypertable) of % received before % removed',
                removed, r.table_name, now() - r.keep;
        END IF;
    END LOOP;
END $$;
