-- dashfrog flow rollup, migration 2: indexes for the list queries, filled from dashfrog_flows
-- as its rows are written, and backfilled here from the rows already there (a database
-- upgraded from migration 1).
--
-- Both tables tolerate a record seen twice (a backfill racing a live insert, a collector
-- resending a batch): they only say where to look; the answer is always read from
-- dashfrog_flows, merged per flow as in migration 1.

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

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_status_mv TO {db}.dashfrog_flow_status AS
SELECT outcome.1 AS rank, tenant, hour, start, name, flow_id
FROM {db}.dashfrog_flows
WHERE outcome.1 >= 2;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flow_labels_by_hour_mv
TO {db}.dashfrog_flow_labels_by_hour AS
SELECT label.1 AS key, label.2 AS value, hour, tenant, flow_id
FROM {db}.dashfrog_flows
ARRAY JOIN CAST(labels, 'Array(Tuple(String, String))') AS label;

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
