-- dashfrog flow rollup, migration 2: indexes for the list queries and an hourly pre-aggregate
-- for stats(), each filled from dashfrog_flows as its rows are written, and backfilled here from
-- the rows already there (a database upgraded from migration 1).
--
-- Every table here tolerates a record seen twice (a backfill racing a live insert, a collector
-- resending a batch): the status and label indexes only say where to look (the answer is read
-- from dashfrog_flows), and the hourly pre-aggregate counts flows as sets of ids; a group whose
-- records do not add up (more ending records than ended flows) is recomputed from dashfrog_flows
-- (dashfrog_sdk/store/clickhouse.py, stats()).

-- Ended flows by status rank (2 completed, 3 cancelled, 4 failed; the rank of each record, not
-- of the flow): every failed flow has a rank-4 row, so `status=failed` reads only failed flows'
-- rows, by tenant and hour or by hour alone. A cancelled or completed candidate is checked
-- against dashfrog_flows, where a higher-ranked record may have made it failed.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_flow_status (
    rank    UInt8,
    tenant  LowCardinality(String),
    hour    DateTime,
    start   DateTime64(9),
    name    LowCardinality(String),
    flow_id String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (rank, tenant, hour, flow_id)
SETTINGS index_granularity = 1024;

-- labels={key: value} without a tenant: by label and hour, so the newest flows with a label are
-- found without reading every flow that has it (dashfrog_flow_labels serves the tenant case).
CREATE TABLE IF NOT EXISTS {db}.dashfrog_flow_labels_by_hour (
    key     LowCardinality(String),
    value   String,
    hour    DateTime,
    tenant  LowCardinality(String),
    flow_id String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (key, value, hour, flow_id)
SETTINGS index_granularity = 1024;

-- stats(): per start hour, tenant and flow name, the ids of the flows seen and of those with a
-- record ranked completed or higher, cancelled or higher, failed. Sets, so the counts follow
-- the precedence in any arrival order: failed = |failed|, cancelled = |stopped| - |failed|,
-- completed = |ended| - |stopped|, running = |flows| - |ended|. `durations` holds each ending
-- record's duration; it is the flows' durations when each ended flow has exactly one ending
-- record (ending_records = |ended|) and none came from a dashfrog.flow.end event or has a
-- deadline (irregular = 0). Other groups are recomputed per flow.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_flow_hourly (
    hour           DateTime,
    tenant         LowCardinality(String),
    name           LowCardinality(String),
    flows          AggregateFunction(uniqExact, String),
    ended          AggregateFunction(uniqExact, String),
    stopped        AggregateFunction(uniqExact, String),
    failed         AggregateFunction(uniqExact, String),
    ending_records SimpleAggregateFunction(sum, UInt64),
    irregular      SimpleAggregateFunction(sum, UInt64),
    durations      AggregateFunction(quantilesExactInclusive(0.5, 0.95), Float64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, tenant, name);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_status_mv TO {db}.dashfrog_flow_status AS
SELECT outcome.1 AS rank, tenant, hour, start, name, flow_id
FROM {db}.dashfrog_flows
WHERE outcome.1 >= 2;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_labels_by_hour_mv
TO {db}.dashfrog_flow_labels_by_hour AS
SELECT label.1 AS key, label.2 AS value, hour, tenant, flow_id
FROM {db}.dashfrog_flows
ARRAY JOIN CAST(labels, 'Array(Tuple(String, String))') AS label;

-- A dashfrog.flow.end event's row has no service (001, dashfrog_flows_from_events).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_hourly_mv TO {db}.dashfrog_flow_hourly AS
SELECT
    hour, tenant, name,
    uniqExactState(flow_id) AS flows,
    uniqExactStateIf(flow_id, outcome.1 >= 2) AS ended,
    uniqExactStateIf(flow_id, outcome.1 >= 3) AS stopped,
    uniqExactStateIf(flow_id, outcome.1 = 4) AS failed,
    toUInt64(countIf(outcome.1 >= 2)) AS ending_records,
    toUInt64(countIf((outcome.1 >= 2 AND service = '') OR timeout_s > 0)) AS irregular,
    quantilesExactInclusiveStateIf(0.5, 0.95)(
        (outcome.2 - toUnixTimestamp64Nano(start)) / 1e6, outcome.1 >= 2) AS durations
FROM {db}.dashfrog_flows
GROUP BY hour, tenant, name;

-- Backfill: the rows written before the views above existed (a row written in between is
-- counted twice, which these tables tolerate, see the top).
INSERT INTO {db}.dashfrog_flow_status
SELECT outcome.1 AS rank, tenant, hour, start, name, flow_id
FROM {db}.dashfrog_flows
WHERE outcome.1 >= 2;

INSERT INTO {db}.dashfrog_flow_labels_by_hour
SELECT label.1 AS key, label.2 AS value, hour, tenant, flow_id
FROM {db}.dashfrog_flows
ARRAY JOIN CAST(labels, 'Array(Tuple(String, String))') AS label;

INSERT INTO {db}.dashfrog_flow_hourly
SELECT
    hour, tenant, name,
    uniqExactState(flow_id) AS flows,
    uniqExactStateIf(flow_id, outcome.1 >= 2) AS ended,
    uniqExactStateIf(flow_id, outcome.1 >= 3) AS stopped,
    uniqExactStateIf(flow_id, outcome.1 = 4) AS failed,
    toUInt64(countIf(outcome.1 >= 2)) AS ending_records,
    toUInt64(countIf((outcome.1 >= 2 AND service = '') OR timeout_s > 0)) AS irregular,
    quantilesExactInclusiveStateIf(0.5, 0.95)(
        (outcome.2 - toUnixTimestamp64Nano(start)) / 1e6, outcome.1 >= 2) AS durations
FROM {db}.dashfrog_flows
GROUP BY hour, tenant, name;
