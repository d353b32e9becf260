-- The admin page's latency charts (SPEC §9 round 2) read what is stored.
-- Ack latency cannot be a column of the event: the event is committed
-- before the answer that ends its latency. Each replica sums the ack
-- latencies of the events it accepted into a histogram per source (the
-- bucket bounds are the application's) and writes one row per source every
-- few seconds.

-- +goose Up
CREATE TABLE orchestrator_ack_stats (
    id      UUID        PRIMARY KEY,
    source  VARCHAR(32) NOT NULL,
    at      TIMESTAMP   NOT NULL,
    events  INTEGER     NOT NULL,
    counts  TEXT        NOT NULL
);
CREATE INDEX ix_ack_stats_at ON orchestrator_ack_stats (at);

-- +goose Down
DROP TABLE orchestrator_ack_stats;
