-- The four tables of SPEC §8. Timestamps are written by the application as
-- fixed-width UTC text (2006-01-02T15:04:05.000000Z) so that text order is time
-- order in SQLite and PostgreSQL parses them as TIMESTAMP literals.

-- +goose Up
CREATE TABLE orchestrator_provisioning_runs (
    id                  UUID PRIMARY KEY,
    kind                VARCHAR(32)  NOT NULL,
    org_id              VARCHAR(128) NOT NULL,
    team_node_id        VARCHAR(128) NOT NULL,
    idempotency_key     VARCHAR(255),
    request_fingerprint VARCHAR(128),
    status              VARCHAR(32)  NOT NULL,
    steps               JSONB        NOT NULL DEFAULT '[]',
    response            JSONB,
    http_status         INTEGER,
    error               TEXT,
    actor               VARCHAR(255),
    created_at          TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at          TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX ux_provisioning_runs_idempotency
    ON orchestrator_provisioning_runs (org_id, team_node_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX ix_provisioning_runs_created ON orchestrator_provisioning_runs (created_at, id);
CREATE INDEX ix_provisioning_runs_team ON orchestrator_provisioning_runs (org_id, team_node_id, created_at);
CREATE INDEX ix_provisioning_runs_status ON orchestrator_provisioning_runs (status, created_at);

CREATE TABLE orchestrator_pipeline_schedules (
    id               UUID PRIMARY KEY,
    org_id           VARCHAR(128) NOT NULL,
    team_node_id     VARCHAR(128) NOT NULL,
    schedule_type    VARCHAR(32)  NOT NULL,
    cron_expression  VARCHAR(255) NOT NULL,
    k8s_cronjob_name VARCHAR(63)  NOT NULL,
    enabled          BOOLEAN      NOT NULL DEFAULT TRUE,
    last_run_at      TIMESTAMP,
    created_at       TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX ux_pipeline_schedules_team_type
    ON orchestrator_pipeline_schedules (org_id, team_node_id, schedule_type);
CREATE UNIQUE INDEX ux_pipeline_schedules_cronjob
    ON orchestrator_pipeline_schedules (k8s_cronjob_name);

CREATE TABLE orchestrator_webhook_events (
    id                  UUID PRIMARY KEY,
    source              VARCHAR(32)  NOT NULL,
    delivery_id         VARCHAR(255) NOT NULL,
    event_type          VARCHAR(128) NOT NULL DEFAULT '',
    status              VARCHAR(32)  NOT NULL,
    routing_identifiers JSONB,
    org_id              VARCHAR(128),
    team_node_id        VARCHAR(128),
    matched_by          VARCHAR(64),
    attempts            INTEGER      NOT NULL DEFAULT 0,
    next_attempt_at     TIMESTAMP,
    last_error          TEXT,
    headers             JSONB,
    body                BYTEA,
    body_sha256         VARCHAR(64),
    body_purged_at      TIMESTAMP,
    received_at         TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at          TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at         TIMESTAMP
);
CREATE UNIQUE INDEX ux_webhook_events_delivery ON orchestrator_webhook_events (source, delivery_id);
CREATE INDEX ix_webhook_events_queue ON orchestrator_webhook_events (status, next_attempt_at);
CREATE INDEX ix_webhook_events_received ON orchestrator_webhook_events (received_at, id);
CREATE INDEX ix_webhook_events_team ON orchestrator_webhook_events (org_id, team_node_id, received_at);

CREATE TABLE orchestrator_agent_runs (
    id               UUID PRIMARY KEY,
    trigger_source   VARCHAR(32)  NOT NULL,
    webhook_event_id UUID REFERENCES orchestrator_webhook_events (id) ON DELETE SET NULL,
    actor            VARCHAR(255),
    org_id           VARCHAR(128) NOT NULL,
    team_node_id     VARCHAR(128) NOT NULL,
    agent_name       VARCHAR(64)  NOT NULL,
    status           VARCHAR(32)  NOT NULL,
    upstream_status  INTEGER,
    error            TEXT,
    correlation_id   VARCHAR(128),
    duration_ms      BIGINT,
    started_at       TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at      TIMESTAMP
);
CREATE INDEX ix_agent_runs_team ON orchestrator_agent_runs (org_id, team_node_id, started_at);
CREATE INDEX ix_agent_runs_event ON orchestrator_agent_runs (webhook_event_id);
CREATE INDEX ix_agent_runs_started ON orchestrator_agent_runs (started_at, id);

-- +goose Down
DROP TABLE orchestrator_agent_runs;
DROP TABLE orchestrator_webhook_events;
DROP TABLE orchestrator_pipeline_schedules;
DROP TABLE orchestrator_provisioning_runs;
