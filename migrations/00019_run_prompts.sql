-- The conversation, streamed (SPEC §19): an agent run's open questions and
-- approvals, one row each, so that a click arriving at another replica, or
-- after a restart, is honoured, and an approval nobody decided is denied on
-- time by whichever replica's expiry loop reads it first. A decision is
-- final: it is written only while state is open. Times are milliseconds
-- since the epoch, as the events table keeps them. No foreign key to the
-- agent runs: retention deletes both by the same clock.

-- +goose Up
CREATE TABLE orchestrator_run_prompts (
    id            VARCHAR(36)  PRIMARY KEY,
    agent_run_id  VARCHAR(36)  NOT NULL,
    org_id        VARCHAR(128) NOT NULL,
    team_node_id  VARCHAR(128) NOT NULL,
    slack_app     VARCHAR(128),
    channel_id    VARCHAR(128) NOT NULL,
    thread_ts     VARCHAR(64),
    message_ts    VARCHAR(64),
    kind          VARCHAR(16)  NOT NULL,
    ref           VARCHAR(255),
    payload       TEXT         NOT NULL,
    expires_at    BIGINT,
    state         VARCHAR(16)  NOT NULL,
    decision      TEXT,
    decided_by    VARCHAR(128),
    decided_name  VARCHAR(255),
    decided_at    BIGINT,
    created_at    BIGINT       NOT NULL
);
-- A run's questions and approvals, in order (its page).
CREATE INDEX ix_run_prompts_run ON orchestrator_run_prompts (agent_run_id, created_at);
-- The expiry loop: only open rows with a deadline, soonest first.
CREATE INDEX ix_run_prompts_open ON orchestrator_run_prompts (expires_at) WHERE state = 'open';
-- Retention, oldest first.
CREATE INDEX ix_run_prompts_created ON orchestrator_run_prompts (created_at);

-- +goose Down
DROP TABLE orchestrator_run_prompts;
