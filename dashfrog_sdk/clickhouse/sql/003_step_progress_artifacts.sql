-- dashfrog flow rollup, migration 3: a step's progress (s.progress()) and artifacts
-- (s.artifact()), filled by materialized views from otel_logs / otel_traces as rows arrive.
--
-- Progress: every dashfrog.step.progress event, and the last value the step span carries at its
-- end (dashfrog.step.progress.* attributes), is a row; queries take the latest per step span
-- (argMax(..., ts)), and ReplacingMergeTree(ts) keeps only that one after a merge.
-- Artifacts: every dashfrog.step.artifact event is a row keyed (flow, step span, name); the
-- latest value of a name wins the same way. The value is the artifact's JSON text.
--
-- Migration 1's dashfrog_events_mv also copies these two events into dashfrog_events (it takes
-- every event but the flow and step starts); queries leave them out by name.

CREATE TABLE IF NOT EXISTS {db}.dashfrog_step_progress (
    flow_id  String,
    span_id  String,
    ts       DateTime64(9),
    done     Float64,
    total    Nullable(Float64),
    message  String,
    seen     DateTime64(9),
    INDEX idx_seen seen TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree(ts)
ORDER BY (flow_id, span_id);

CREATE TABLE IF NOT EXISTS {db}.dashfrog_artifacts (
    flow_id   String,
    span_id   String,
    name      String,
    ts        DateTime64(9),
    value     String,
    step_name String,
    service   LowCardinality(String)
) ENGINE = ReplacingMergeTree(ts)
ORDER BY (flow_id, span_id, name);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_step_progress_from_events
TO {db}.dashfrog_step_progress AS
SELECT
    LogAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    Timestamp AS ts,
    toFloat64OrZero(LogAttributes['dashfrog.step.progress.done']) AS done,
    toFloat64OrNull(LogAttributes['dashfrog.step.progress.total']) AS total,
    LogAttributes['dashfrog.step.progress.message'] AS message,
    now64(9) AS seen
FROM {db}.otel_logs
WHERE EventName = 'dashfrog.step.progress'
  AND LogAttributes['dashfrog.flow.id'] != ''
  AND SpanId != ''
  AND LogAttributes['dashfrog.step.progress.done'] != '';

-- The step span's last value, stamped at its end.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_step_progress_from_spans
TO {db}.dashfrog_step_progress AS
SELECT
    SpanAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    fromUnixTimestamp64Nano(toInt64(toUnixTimestamp64Nano(Timestamp) + Duration)) AS ts,
    toFloat64OrZero(SpanAttributes['dashfrog.step.progress.done']) AS done,
    toFloat64OrNull(SpanAttributes['dashfrog.step.progress.total']) AS total,
    SpanAttributes['dashfrog.step.progress.message'] AS message,
    now64(9) AS seen
FROM {db}.otel_traces
WHERE SpanAttributes['dashfrog.flow.id'] != ''
  AND startsWith(SpanName, 'step ')
  AND SpanAttributes['dashfrog.step.name'] != ''
  AND SpanAttributes['dashfrog.step.progress.done'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_artifacts_mv TO {db}.dashfrog_artifacts AS
SELECT
    LogAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    LogAttributes['dashfrog.artifact.name'] AS name,
    Timestamp AS ts,
    LogAttributes['dashfrog.artifact.value'] AS value,
    LogAttributes['dashfrog.step.name'] AS step_name,
    ServiceName AS service
FROM {db}.otel_logs
WHERE EventName = 'dashfrog.step.artifact'
  AND LogAttributes['dashfrog.flow.id'] != ''
  AND SpanId != ''
  AND LogAttributes['dashfrog.artifact.name'] != '';
