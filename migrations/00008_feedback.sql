-- Slack apps and feedback (SPEC §6): a click on an answer's feedback
-- button (feedback_positive / feedback_negative) is recorded on the agent
-- run it names, with who clicked and when. The run's team is copied so the
-- per-team chart of the last 7 days reads one index; created_at is
-- milliseconds since the epoch, as the events table keeps time. No foreign
-- key: retention deletes agent calls and their feedback by the same clock.

-- +goose Up
CREATE TABLE orchestrator_agent_run_feedback (
    id               VARCHAR(36)  PRIMARY KEY,
    agent_run_id     VARCHAR(36)  NOT NULL,
    webhook_event_id VARCHAR(36),
    org_id           VARCHAR(128) NOT NULL,
    team_node_id     VARCHAR(128) NOT NULL,
    value            VARCHAR(16)  NOT NULL,
    user_id          VARCHAR(64),
    user_name        VARCHAR(128),
    slack_app        VARCHAR(32),
    created_at       BIGINT       NOT NULL
);
CREATE INDEX ix_feedback_run ON orchestrator_agent_run_feedback (agent_run_id);
CREATE INDEX ix_feedback_created ON orchestrator_agent_run_feedback (created_at);
-- A button names its run by id or by correlation id (what the agent was
-- sent as X-Correlation-ID).
CREATE INDEX ix_agent_runs_correlation ON orchestrator_agent_runs (correlation_id);

-- +goose Down
DROP INDEX ix_agent_runs_correlation;
DROP TABLE orchestrator_agent_run_feedback;
