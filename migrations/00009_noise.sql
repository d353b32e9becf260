-- Noise control (SPEC §6 Noise): an alert event's identity (its key, its
-- state, a digest of its firing fingerprints), why an event was kept from
-- the agent (suppressed_reason: resolved, repeat, silence, budget) and what
-- caused it (suppressed_by: the resolving event, the earlier delivery, the
-- silence, the budget's day). Silences are maintenance windows an admin
-- sets; the admin audit keeps bulk redrives and silence changes with their
-- actor. Times are milliseconds since the epoch, as the events table keeps
-- them. ADD COLUMN needs no table rebuild: existing rows read NULL.

-- +goose Up
ALTER TABLE orchestrator_webhook_events ADD COLUMN alert_key VARCHAR(255);
ALTER TABLE orchestrator_webhook_events ADD COLUMN alert_state VARCHAR(16);
ALTER TABLE orchestrator_webhook_events ADD COLUMN alert_sig VARCHAR(32);
ALTER TABLE orchestrator_webhook_events ADD COLUMN suppressed_reason VARCHAR(16);
ALTER TABLE orchestrator_webhook_events ADD COLUMN suppressed_by VARCHAR(64);
-- A resolve's firing events, a firing's earlier delivery: by alert, newest last.
CREATE INDEX ix_webhook_events_alert ON orchestrator_webhook_events (source, alert_key, id) WHERE alert_key IS NOT NULL;
-- The events list filtered by reason, and the overview's calls saved.
CREATE INDEX ix_webhook_events_suppressed ON orchestrator_webhook_events (suppressed_reason, received_at, id) WHERE suppressed_reason IS NOT NULL;

CREATE TABLE orchestrator_silences (
    id               VARCHAR(36)  PRIMARY KEY,
    org_id           VARCHAR(128) NOT NULL,
    team_node_id     VARCHAR(128),
    sources          VARCHAR(512),
    match_event_type VARCHAR(128),
    match_service    VARCHAR(128),
    match_alert_key  VARCHAR(255),
    starts_at        BIGINT       NOT NULL,
    ends_at          BIGINT       NOT NULL,
    comment          TEXT         NOT NULL,
    created_by       VARCHAR(255) NOT NULL,
    created_at       BIGINT       NOT NULL,
    expired_by       VARCHAR(255),
    expired_at       BIGINT
);
CREATE INDEX ix_silences_ends ON orchestrator_silences (ends_at);

CREATE TABLE orchestrator_admin_audit (
    id         VARCHAR(36)  PRIMARY KEY,
    at         BIGINT       NOT NULL,
    actor      VARCHAR(255) NOT NULL,
    org_id     VARCHAR(128),
    action     VARCHAR(64)  NOT NULL,
    detail     TEXT         NOT NULL
);
CREATE INDEX ix_admin_audit_at ON orchestrator_admin_audit (at);

-- +goose Down
DROP TABLE orchestrator_admin_audit;
DROP TABLE orchestrator_silences;
DROP INDEX ix_webhook_events_suppressed;
DROP INDEX ix_webhook_events_alert;
ALTER TABLE orchestrator_webhook_events DROP COLUMN suppressed_by;
ALTER TABLE orchestrator_webhook_events DROP COLUMN suppressed_reason;
ALTER TABLE orchestrator_webhook_events DROP COLUMN alert_sig;
ALTER TABLE orchestrator_webhook_events DROP COLUMN alert_state;
ALTER TABLE orchestrator_webhook_events DROP COLUMN alert_key;
