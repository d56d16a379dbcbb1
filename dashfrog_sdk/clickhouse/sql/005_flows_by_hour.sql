-- dashfrog flow rollup, migration 5: the flows again, keyed by time first, for the lists and
-- stats that have no tenant (the default `dashfrog flows`, `status=failed` or labels across
-- tenants, `stats(since=...)`).
--
-- dashfrog_flows is keyed (tenant, name, hour, flow_id): a tenant's flows are one slice of it,
-- but the newest flows of all tenants are spread over every slice, so a page of them read about
-- one granule per flow shown (about 1 ms CPU a flow at 1M flows) and a time window without a
-- tenant read the whole table. Here the same rows are keyed (hour, flow_id): the newest flows
-- are the last granules of the table, a window is a key range, and a page of flows found by
-- migration 2's indexes is a few neighbouring granules.
--
-- Same columns and merge functions as dashfrog_flows, so queries merge it per flow the same way
-- (GROUP BY flow_id; the precedence is max(outcome)). Tenant and name are no longer key
-- columns: max() keeps the one non-empty value, as the queries' anyIf(..., != '') does, and
-- labels keep a non-empty map over an empty one (max) when rows merge.

CREATE TABLE IF NOT EXISTS {db}.dashfrog_flows_by_hour (
    hour       DateTime,
    flow_id    String,
    tenant     SimpleAggregateFunction(max, LowCardinality(String)),
    name       SimpleAggregateFunction(max, LowCardinality(String)),
    start      SimpleAggregateFunction(min, DateTime64(9)),
    outcome    SimpleAggregateFunction(max, Tuple(UInt8, Int64, String, String)),
    parent_id  SimpleAggregateFunction(max, String),
    service    SimpleAggregateFunction(max, String),
    trace_id   SimpleAggregateFunction(max, String),
    span_id    SimpleAggregateFunction(max, String),
    timeout_s  SimpleAggregateFunction(max, Float64),
    labels     SimpleAggregateFunction(max, Map(String, String)),
    seen       SimpleAggregateFunction(max, DateTime64(9))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, flow_id)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dashfrog_flows_by_hour_mv
TO {db}.dashfrog_flows_by_hour AS
SELECT hour, flow_id, tenant, name, start, outcome, parent_id, service, trace_id, span_id,
       timeout_s, labels, seen
FROM {db}.dashfrog_flows;

-- Backfill: the flows written before the view above existed (a row written in between is in
-- both; the queries merge per flow, and a record counted twice changes no max or min).
INSERT INTO {db}.dashfrog_flows_by_hour
SELECT hour, flow_id, tenant, name, start, outcome, parent_id, service, trace_id, span_id,
       timeout_s, labels, seen
FROM {db}.dashfrog_flows;
