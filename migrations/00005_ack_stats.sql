-- The admin page's latency charts (SPEC §9 round 2) read what is stored.
-- Ack latency cannot be a column of the event: the event is committed
-- before the answer that ends its latency. Each replica sums the ack
-- latencies of the events it accepted into a histogram per source (the
-- bucket bounds are the application's) and writes one row per source every
-- few seconds.

--
-- The page also lists events by status, newest first (the overview's recent
-- failures, the events filter): without an index on (status, received_at)
-- a status with few events scans the whole table to find them.

-- +goose Up
CREATE TABLE orchestrator_ack_stats (
    id      UUID        PRIMARY KEY,
    source  VARCHAR(32) NOT NULL,
    at      TIMESTAMP   NOT NULL,
    events  INTEGER     NOT NULL,
    counts  TEXT        NOT NULL
);
CREATE INDEX ix_ack_stats_at ON orchestrator_ack_stats (at);
CREATE INDEX ix_webhook_events_status_received ON orchestrator_webhook_events (status, received_at, id);
-- A team's events, newest first, with a status too: the team index ends in
-- id like the list's order, or the planner prefers the status index and
-- reads every event of that status to find the team's.
DROP INDEX ix_webhook_events_team;
CREATE INDEX ix_webhook_events_team ON orchestrator_webhook_events (org_id, team_node_id, received_at, id);

-- +goose Down
DROP INDEX ix_webhook_events_team;
CREATE INDEX ix_webhook_events_team ON orchestrator_webhook_events (org_id, team_node_id, received_at);
DROP INDEX ix_webhook_events_status_received;
DROP TABLE orchestrator_ack_stats;
