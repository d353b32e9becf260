-- Inhibition (SPEC §21): an alert event keeps the labels its alerts share
-- (Alertmanager's commonLabels, as JSON text; NULL for a source without
-- labels), so that inhibit rules read every replica's firing alerts from
-- the database; released_by names the resolve that ended what held an
-- inhibited event, when it was released (queued again) for that.
-- ADD COLUMN needs no table rebuild: existing rows read NULL.

-- +goose Up
ALTER TABLE orchestrator_webhook_events ADD COLUMN alert_labels TEXT;
ALTER TABLE orchestrator_webhook_events ADD COLUMN released_by VARCHAR(64);
-- An org's firing alert events with labels, newest last: the inhibitors.
CREATE INDEX ix_webhook_events_labeled ON orchestrator_webhook_events (org_id, id) WHERE alert_labels IS NOT NULL AND alert_state = 'firing';

-- +goose Down
DROP INDEX ix_webhook_events_labeled;
ALTER TABLE orchestrator_webhook_events DROP COLUMN released_by;
ALTER TABLE orchestrator_webhook_events DROP COLUMN alert_labels;
