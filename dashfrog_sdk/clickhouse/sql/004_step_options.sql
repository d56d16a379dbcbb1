-- dashfrog flow rollup, migration 4: the options of steps given retries, a timeout or
-- raise_on_error=False (step.start(...): dashfrog.step.attempt, .attempts, .retried, .timeout,
-- .raise_on_error on the step span). Migration 1's dashfrog_steps keeps a step's own attributes
-- only (no dashfrog.* key), so each attempt of a retried step was a step row without its number.
-- One row per step span that carries any of them; a step without options has none.

CREATE TABLE IF NOT EXISTS {db}.dashfrog_step_options (
    flow_id String,
    span_id String,
    options Map(String, String)
) ENGINE = ReplacingMergeTree
ORDER BY (flow_id, span_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_step_options_mv
TO {db}.dashfrog_step_options AS
SELECT
    SpanAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    CAST(mapFilter((k, v) -> k IN ('dashfrog.step.attempt', 'dashfrog.step.attempts',
                                   'dashfrog.step.retried', 'dashfrog.step.timeout_s',
                                   'dashfrog.step.raise_on_error'), SpanAttributes),
         'Map(String, String)') AS options
FROM {db}.otel_traces
WHERE SpanAttributes['dashfrog.flow.id'] != ''
  AND startsWith(SpanName, 'step ')
  AND (SpanAttributes['dashfrog.step.attempt'] != ''
       OR SpanAttributes['dashfrog.step.timeout_s'] != ''
       OR SpanAttributes['dashfrog.step.raise_on_error'] != '');

INSERT INTO {db}.dashfrog_step_options
SELECT SpanAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    CAST(mapFilter((k, v) -> k IN ('dashfrog.step.attempt', 'dashfrog.step.attempts',
                                   'dashfrog.step.retried', 'dashfrog.step.timeout_s',
                                   'dashfrog.step.raise_on_error'), SpanAttributes),
         'Map(String, String)') AS options
FROM {db}.otel_traces
WHERE SpanAttributes['dashfrog.flow.id'] != ''
  AND startsWith(SpanName, 'step ')
  AND (SpanAttributes['dashfrog.step.attempt'] != ''
       OR SpanAttributes['dashfrog.step.timeout_s'] != ''
       OR SpanAttributes['dashfrog.step.raise_on_error'] != '');
