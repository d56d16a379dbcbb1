-- dashfrog flow rollup, migration 1: tables keyed for the flow questions, filled by materialized
-- views from the exporter's otel_traces / otel_logs as rows arrive.
--
-- Applied by `dashfrog clickhouse init` ({db} is the database, e.g. otel). Never edit a released
-- migration: add the next number. Every statement is idempotent (IF NOT EXISTS).
--
-- How a flow is rebuilt: every record that knows the flow's start (its span, its
-- dashfrog.flow.start event, a dashfrog.flow.end event sent by another process) adds one row to
-- dashfrog_flows. Rows of one flow share (tenant, name, hour, flow_id) and are merged in the
-- background; queries GROUP BY flow_id, so they are right before any merge too. The final status
-- is the highest-ranked one seen, whatever the arrival order:
--     failed (4) > cancelled (3) > completed (2) > running (1)
-- and `outcome` carries (rank, end ns, error type, error message) of that record, so the end
-- time and the error always come with the status they belong to.
-- Attribute values arrive as the exporter writes them: strings (numbers and booleans as text).

CREATE TABLE IF NOT EXISTS {db}.dashfrog_flows (
    tenant     LowCardinality(String),
    name       LowCardinality(String),
    hour       DateTime,
    flow_id    String,
    start      SimpleAggregateFunction(min, DateTime64(9)),
    outcome    SimpleAggregateFunction(max, Tuple(UInt8, Int64, String, String)),
    parent_id  SimpleAggregateFunction(max, String),
    service    SimpleAggregateFunction(max, String),
    trace_id   SimpleAggregateFunction(max, String),
    span_id    SimpleAggregateFunction(max, String),
    timeout_s  SimpleAggregateFunction(max, Float64),
    labels     SimpleAggregateFunction(any, Map(String, String)),
    seen       SimpleAggregateFunction(max, DateTime64(9)),
    INDEX idx_flow_id flow_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_parent_id parent_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_seen seen TYPE minmax GRANULARITY 1
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, name, hour, flow_id)
-- Small granules: a tenant's flows are a thin slice of the table, and each query reads whole
-- granules of every part it touches.
SETTINGS index_granularity = 1024;

-- flow id (or id prefix) -> where its rows are in dashfrog_flows.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_flow_ids (
    flow_id String,
    tenant  LowCardinality(String),
    name    LowCardinality(String),
    hour    DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (flow_id, tenant, name, hour);

-- labels={key: value} filters: one row per flow and label.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_flow_labels (
    key     LowCardinality(String),
    value   String,
    tenant  LowCardinality(String),
    flow_id String,
    hour    DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (key, value, tenant, flow_id)
SETTINGS index_granularity = 1024;

-- Steps: a row from the step's start event (final = 0, status running) until its span arrives
-- (final = 1, authoritative); queries take argMax(..., final) per span_id.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_steps (
    flow_id        String,
    span_id        String,
    final          UInt8,
    name           String,
    trace_id       String,
    parent_span_id String,
    service        LowCardinality(String),
    status         LowCardinality(String),
    optional       UInt8,
    start          DateTime64(9),
    end_ns         Int64,
    error_type     String,
    error_message  String,
    attributes     Map(String, String),
    seen           DateTime64(9),
    INDEX idx_seen seen TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree(final)
ORDER BY (flow_id, span_id);

-- Every other span inside a flow (HTTP, Celery, the user's own), for the flow's picture.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_spans (
    flow_id        String,
    span_id        String,
    trace_id       String,
    parent_span_id String,
    name           String,
    kind           LowCardinality(String),
    service        LowCardinality(String),
    start          DateTime64(9),
    end_ns         Int64,
    error          UInt8
) ENGINE = ReplacingMergeTree
ORDER BY (flow_id, span_id);

-- flow.event(...) records and the flow's Python log records.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_events (
    flow_id    String,
    ts         DateTime64(9),
    name       String,
    service    LowCardinality(String),
    trace_id   String,
    span_id    String,
    step_name  String,
    attributes Map(String, String)
) ENGINE = MergeTree
ORDER BY (flow_id, ts);

CREATE TABLE IF NOT EXISTS {db}.dashfrog_logs (
    flow_id    String,
    ts         DateTime64(9),
    severity   LowCardinality(String),
    body       String,
    logger     String,
    step_name  String,
    service    LowCardinality(String),
    trace_id   String,
    span_id    String,
    attributes Map(String, String)
) ENGINE = MergeTree
ORDER BY (flow_id, ts);

-- -- materialized views ------------------------------------------------------------------

-- The flow span: "flow <name>", or any span carrying dashfrog.flow.status.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flows_from_spans TO {db}.dashfrog_flows AS
WITH
    if(SpanAttributes['dashfrog.flow.status'] != '', SpanAttributes['dashfrog.flow.status'],
       if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 'failed', 'completed')) AS status_text,
    if(SpanAttributes['dashfrog.error.type'] != '', SpanAttributes['dashfrog.error.type'],
       `Events.Attributes`[indexOf(`Events.Name`, 'exception')]['exception.type']) AS error_type,
    if(SpanAttributes['dashfrog.error.message'] != '', SpanAttributes['dashfrog.error.message'],
       `Events.Attributes`[indexOf(`Events.Name`, 'exception')]['exception.message']) AS error_message
SELECT
    SpanAttributes['dashfrog.tenant'] AS tenant,
    SpanAttributes['dashfrog.flow.name'] AS name,
    toStartOfHour(Timestamp) AS hour,
    SpanAttributes['dashfrog.flow.id'] AS flow_id,
    Timestamp AS start,
    tuple(
        toUInt8(indexOf(['running', 'completed', 'cancelled', 'failed'], status_text)),
        if(status_text = 'running', toInt64(0), toInt64(toUnixTimestamp64Nano(Timestamp) + Duration)),
        if(status_text = 'failed', error_type, ''),
        if(status_text = 'failed', error_message, '')
    ) AS outcome,
    SpanAttributes['dashfrog.flow.parent_id'] AS parent_id,
    ServiceName AS service,
    TraceId AS trace_id,
    SpanId AS span_id,
    toFloat64OrZero(SpanAttributes['dashfrog.flow.timeout_s']) AS timeout_s,
    CAST(mapApply((k, v) -> (substring(k, 16), v),
                  mapFilter((k, v) -> startsWith(k, 'dashfrog.label.'), SpanAttributes)),
         'Map(String, String)') AS labels,
    now64(9) AS seen
FROM {db}.otel_traces
WHERE SpanAttributes['dashfrog.flow.id'] != ''
  AND NOT (startsWith(SpanName, 'step ') AND SpanAttributes['dashfrog.step.name'] != '')
  AND (SpanAttributes['dashfrog.flow.status'] != ''
       OR SpanName = concat('flow ', SpanAttributes['dashfrog.flow.name']));

-- dashfrog.flow.start (the flow is running, from which service) and dashfrog.flow.end (sent
-- when a flow ends away from its span: another process, end_on_exit=False, flow.fail()).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flows_from_events TO {db}.dashfrog_flows AS
WITH
    EventName = 'dashfrog.flow.end' AS is_end,
    LogAttributes['dashfrog.flow.status'] AS end_status,
    if(is_end AND toInt64OrZero(LogAttributes['dashfrog.flow.start_time']) > 0,
       fromUnixTimestamp64Nano(toInt64OrZero(LogAttributes['dashfrog.flow.start_time'])),
       Timestamp) AS flow_start
SELECT
    LogAttributes['dashfrog.tenant'] AS tenant,
    LogAttributes['dashfrog.flow.name'] AS name,
    toStartOfHour(flow_start) AS hour,
    LogAttributes['dashfrog.flow.id'] AS flow_id,
    flow_start AS start,
    if(is_end,
       tuple(toUInt8(greatest(2, indexOf(['running', 'completed', 'cancelled', 'failed'],
                                         if(end_status = '', 'completed', end_status)))),
             if(toInt64OrZero(LogAttributes['dashfrog.flow.end_time']) > 0,
                toInt64OrZero(LogAttributes['dashfrog.flow.end_time']),
                toInt64(toUnixTimestamp64Nano(Timestamp))),
             LogAttributes['dashfrog.error.type'],
             LogAttributes['dashfrog.error.message']),
       tuple(toUInt8(1), toInt64(0), '', '')) AS outcome,
    LogAttributes['dashfrog.flow.parent_id'] AS parent_id,
    if(is_end, '', ServiceName) AS service,
    if(is_end, LogAttributes['dashfrog.flow.trace_id'], TraceId) AS trace_id,
    if(is_end, LogAttributes['dashfrog.flow.span_id'], SpanId) AS span_id,
    toFloat64OrZero(LogAttributes['dashfrog.flow.timeout_s']) AS timeout_s,
    CAST(mapApply((k, v) -> (substring(k, 16), v),
                  mapFilter((k, v) -> startsWith(k, 'dashfrog.label.'), LogAttributes)),
         'Map(String, String)') AS labels,
    now64(9) AS seen
FROM {db}.otel_logs
WHERE EventName IN ('dashfrog.flow.start', 'dashfrog.flow.end')
  AND LogAttributes['dashfrog.flow.id'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_ids_mv TO {db}.dashfrog_flow_ids AS
SELECT flow_id, tenant, name, hour FROM {db}.dashfrog_flows;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_labels_mv TO {db}.dashfrog_flow_labels AS
SELECT label.1 AS key, label.2 AS value, tenant, flow_id, hour
FROM {db}.dashfrog_flows
ARRAY JOIN CAST(labels, 'Array(Tuple(String, String))') AS label;

-- Step spans ("step <name>" with dashfrog.step.name) and dashfrog.step.start events.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_steps_from_spans TO {db}.dashfrog_steps AS
SELECT
    SpanAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    toUInt8(1) AS final,
    SpanAttributes['dashfrog.step.name'] AS name,
    TraceId AS trace_id,
    ParentSpanId AS parent_span_id,
    ServiceName AS service,
    if(SpanAttributes['dashfrog.step.status'] != '', SpanAttributes['dashfrog.step.status'],
       if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 'failed', 'completed')) AS status,
    toUInt8(SpanAttributes['dashfrog.step.optional'] IN ('true', 'True', '1')) AS optional,
    Timestamp AS start,
    toInt64(toUnixTimestamp64Nano(Timestamp) + Duration) AS end_ns,
    if(SpanAttributes['dashfrog.error.type'] != '', SpanAttributes['dashfrog.error.type'],
       `Events.Attributes`[indexOf(`Events.Name`, 'exception')]['exception.type']) AS error_type,
    if(SpanAttributes['dashfrog.error.message'] != '', SpanAttributes['dashfrog.error.message'],
       `Events.Attributes`[indexOf(`Events.Name`, 'exception')]['exception.message']) AS error_message,
    CAST(mapFilter((k, v) -> NOT startsWith(k, 'dashfrog.') AND NOT startsWith(k, 'otel.scope.'),
                   SpanAttributes), 'Map(String, String)') AS attributes,
    now64(9) AS seen
FROM {db}.otel_traces
WHERE SpanAttributes['dashfrog.flow.id'] != ''
  AND startsWith(SpanName, 'step ')
  AND SpanAttributes['dashfrog.step.name'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_steps_from_events TO {db}.dashfrog_steps AS
SELECT
    LogAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    toUInt8(0) AS final,
    if(LogAttributes['dashfrog.step.name'] != '', LogAttributes['dashfrog.step.name'], '?') AS name,
    TraceId AS trace_id,
    '' AS parent_span_id,
    ServiceName AS service,
    'running' AS status,
    toUInt8(LogAttributes['dashfrog.step.optional'] IN ('true', 'True', '1')) AS optional,
    Timestamp AS start,
    toInt64(0) AS end_ns,
    '' AS error_type,
    '' AS error_message,
    CAST(map(), 'Map(String, String)') AS attributes,
    now64(9) AS seen
FROM {db}.otel_logs
WHERE EventName = 'dashfrog.step.start'
  AND LogAttributes['dashfrog.flow.id'] != ''
  AND SpanId != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_spans_mv TO {db}.dashfrog_spans AS
SELECT
    SpanAttributes['dashfrog.flow.id'] AS flow_id,
    SpanId AS span_id,
    TraceId AS trace_id,
    ParentSpanId AS parent_span_id,
    SpanName AS name,
    lower(replaceOne(SpanKind, 'SPAN_KIND_', '')) AS kind,
    ServiceName AS service,
    Timestamp AS start,
    toInt64(toUnixTimestamp64Nano(Timestamp) + Duration) AS end_ns,
    toUInt8(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS error
FROM {db}.otel_traces
WHERE SpanAttributes['dashfrog.flow.id'] != ''
  AND NOT (startsWith(SpanName, 'step ') AND SpanAttributes['dashfrog.step.name'] != '')
  AND SpanAttributes['dashfrog.flow.status'] = ''
  AND SpanName != concat('flow ', SpanAttributes['dashfrog.flow.name']);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_events_mv TO {db}.dashfrog_events AS
SELECT
    LogAttributes['dashfrog.flow.id'] AS flow_id,
    Timestamp AS ts,
    if(EventName = 'dashfrog.flow.event' AND LogAttributes['dashfrog.event.name'] != '',
       LogAttributes['dashfrog.event.name'], EventName) AS name,
    ServiceName AS service,
    TraceId AS trace_id,
    SpanId AS span_id,
    LogAttributes['dashfrog.step.name'] AS step_name,
    CAST(mapFilter((k, v) -> NOT startsWith(k, 'dashfrog.'), LogAttributes),
         'Map(String, String)') AS attributes
FROM {db}.otel_logs
WHERE EventName != ''
  AND EventName NOT IN ('dashfrog.flow.start', 'dashfrog.flow.end', 'dashfrog.step.start')
  AND LogAttributes['dashfrog.flow.id'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_logs_mv TO {db}.dashfrog_logs AS
SELECT
    LogAttributes['dashfrog.flow.id'] AS flow_id,
    Timestamp AS ts,
    SeverityText AS severity,
    Body AS body,
    ScopeName AS logger,
    LogAttributes['dashfrog.step.name'] AS step_name,
    ServiceName AS service,
    TraceId AS trace_id,
    SpanId AS span_id,
    CAST(mapFilter((k, v) -> NOT startsWith(k, 'dashfrog.'), LogAttributes),
         'Map(String, String)') AS attributes
FROM {db}.otel_logs
WHERE EventName = ''
  AND LogAttributes['dashfrog.flow.id'] != '';
