-- The event log is most often browsed by source, newest first (the admin
-- page's filter); without this index that query scans the whole table.

-- +goose Up
CREATE INDEX ix_webhook_events_source_received ON orchestrator_webhook_events (source, received_at, id);

-- +goose Down
DROP INDEX ix_webhook_events_source_received;
