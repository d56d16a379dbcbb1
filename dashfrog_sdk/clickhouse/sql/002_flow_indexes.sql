-- dashfrog flow rollup, migration 2: indexes for the list queries, filled from dashfrog_flows
-- as its rows are written, and backfilled here from the rows already there (a database
-- upgraded from migration 1).
--
-- Each tolerates a record seen twice (a backfill racing a live insert, a collector resending a
-- batch): the status and label indexes only say where to look (the flows are then read from
-- dashfrog_flows, merged per flow as in migration 1), and step states are merged per span as
-- dashfrog_steps is.

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
-- found without reading every flow that has it, and then read from dashfrog_flows by their
-- full key (dashfrog_flow_labels serves the tenant case).
CREATE TABLE IF NOT EXISTS {db}.dashfrog_flow_labels_by_hour (
    key     LowCardinality(String),
    value   String,
    hour    DateTime,
    tenant  LowCardinality(String),
    name    LowCardinality(String),
    start   DateTime64(9),
    flow_id String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (key, value, hour, flow_id)
SETTINGS index_granularity = 1024;

-- The current step of running flows: each step's start event (final = 0) and span (final = 1),
-- narrow and in small granules, so the steps of a page of flows are read without the steps
-- table's attribute maps and 8192-row granules.
CREATE TABLE IF NOT EXISTS {db}.dashfrog_step_states (
    flow_id String,
    span_id String,
    final   UInt8,
    status  LowCardinality(String),
    name    String,
    start   DateTime64(9)
) ENGINE = ReplacingMergeTree(final)
ORDER BY (flow_id, span_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_status_mv TO {db}.dashfrog_flow_status AS
SELECT outcome.1 AS rank, tenant, hour, start, name, flow_id
FROM {db}.dashfrog_flows
WHERE outcome.1 >= 2;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_labels_by_hour_mv
TO {db}.dashfrog_flow_labels_by_hour AS
SELECT label.1 AS key, label.2 AS value, hour, tenant, name, start, flow_id
FROM {db}.dashfrog_flows
ARRAY JOIN CAST(labels, 'Array(Tuple(String, String))') AS label;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_step_states_mv TO {db}.dashfrog_step_states AS
SELECT flow_id, span_id, final, status, name, start
FROM {db}.dashfrog_steps;

-- Backfill: the rows written before the views above existed (a row written in between is
-- counted twice, which these tables tolerate, see the top).
INSERT INTO {db}.dashfrog_flow_status
SELECT outcome.1 AS rank, tenant, hour, start, name, flow_id
FROM {db}.dashfrog_flows
WHERE outcome.1 >= 2;

INSERT INTO {db}.dashfrog_flow_labels_by_hour
SELECT label.1 AS key, label.2 AS value, hour, tenant, name, start, flow_id
FROM {db}.dashfrog_flows
ARRAY JOIN CAST(labels, 'Array(Tuple(String, String))') AS label;

INSERT INTO {db}.dashfrog_step_states
SELECT flow_id, span_id, final, status, name, start
FROM {db}.dashfrog_steps;
