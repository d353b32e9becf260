-- Routing rules (SPEC §20): every event keeps the decision that says where
-- it went and why — the identifiers tried and the lookup's answers, the rule
-- that matched, the noise rules that applied, the agent chosen — as JSON of
-- at most 4 KiB (server/routing cuts it). TEXT on both databases; events
-- stored before read NULL (no decision recorded). The events list filters by
-- rule through matched_by ("rule:<name>"), indexed here.

-- +goose Up
ALTER TABLE orchestrator_webhook_events ADD COLUMN decision TEXT;
CREATE INDEX ix_webhook_events_matched_by ON orchestrator_webhook_events (matched_by, received_at, id) WHERE matched_by IS NOT NULL;

-- +goose Down
DROP INDEX ix_webhook_events_matched_by;
ALTER TABLE orchestrator_webhook_events DROP COLUMN decision;
