-- Answers where the question was asked: the outbox of answer deliveries,
-- one row per (agent run, destination), a durable queue like the events
-- queue — status queued → posting → posted | failed | dead, attempts, the
-- last error, next_attempt_at (the due time while queued, the claim's
-- lease while posting), the posted message's id and link. Times are
-- milliseconds since the epoch, as the events table keeps them. No foreign
-- key to the agent runs: retention deletes both by the same clock.
--
-- The answer text is kept once per run, on the agent run, not per
-- delivery; retention empties it after the body retention (answer_purged_at)
-- once no delivery of the run still waits to be posted.

-- +goose Up
ALTER TABLE orchestrator_agent_runs ADD COLUMN answer TEXT;
ALTER TABLE orchestrator_agent_runs ADD COLUMN answer_purged_at BIGINT;
-- The answers retention has yet to empty, oldest first.
CREATE INDEX ix_agent_runs_answer ON orchestrator_agent_runs (started_at) WHERE answer IS NOT NULL;

CREATE TABLE orchestrator_answer_deliveries (
    id               VARCHAR(36)  PRIMARY KEY,
    agent_run_id     VARCHAR(36)  NOT NULL,
    seq              INTEGER      NOT NULL,
    webhook_event_id VARCHAR(64),
    org_id           VARCHAR(128) NOT NULL,
    team_node_id     VARCHAR(128) NOT NULL,
    dest_type        VARCHAR(32)  NOT NULL,
    destination      TEXT         NOT NULL,
    status           VARCHAR(16)  NOT NULL,
    attempts         INTEGER      NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    last_error       TEXT,
    message_id       VARCHAR(255),
    link             TEXT,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    finished_at      BIGINT
);
-- One row per (run, destination); the run's deliveries in order.
CREATE UNIQUE INDEX ux_answer_deliveries_run ON orchestrator_answer_deliveries (agent_run_id, seq);
-- The queue: only rows waiting or being posted, due first.
CREATE INDEX ix_answer_deliveries_queue ON orchestrator_answer_deliveries (next_attempt_at, id)
    WHERE status IN ('queued', 'posting');
-- Retention (oldest first) and the overview's answers of the day.
CREATE INDEX ix_answer_deliveries_created ON orchestrator_answer_deliveries (created_at);
CREATE INDEX ix_answer_deliveries_finished ON orchestrator_answer_deliveries (finished_at, status);

-- +goose Down
DROP TABLE orchestrator_answer_deliveries;
DROP INDEX ix_agent_runs_answer;
ALTER TABLE orchestrator_agent_runs DROP COLUMN answer_purged_at;
ALTER TABLE orchestrator_agent_runs DROP COLUMN answer;
