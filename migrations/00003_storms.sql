-- Storms (SPEC §6): the digest an event was folded into, the mark that a
-- redriven event goes alone, the event count of each agent call, and the
-- index the team gate claims by (a team's due events, oldest first).

-- +goose Up
ALTER TABLE orchestrator_webhook_events ADD COLUMN digest_run_id UUID;
ALTER TABLE orchestrator_webhook_events ADD COLUMN digest_size INTEGER;
ALTER TABLE orchestrator_webhook_events ADD COLUMN solo BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE orchestrator_agent_runs ADD COLUMN event_count INTEGER NOT NULL DEFAULT 1;
CREATE INDEX ix_webhook_events_team_queue
    ON orchestrator_webhook_events (status, org_id, team_node_id, next_attempt_at);

-- +goose Down
DROP INDEX ix_webhook_events_team_queue;
ALTER TABLE orchestrator_agent_runs DROP COLUMN event_count;
ALTER TABLE orchestrator_webhook_events DROP COLUMN solo;
ALTER TABLE orchestrator_webhook_events DROP COLUMN digest_size;
ALTER TABLE orchestrator_webhook_events DROP COLUMN digest_run_id;
