-- Traces (SPEC §22): an event keeps the trace it belongs to, so its page
-- links the trace and dispatch continues it hours later. 25 bytes — the
-- 16-byte trace id, the 8-byte id of the door's span that the dispatch
-- spans hang under, and the trace flags (sampled or not) — and NULL when
-- tracing gave none (off, and no traceparent came with the delivery): an
-- untraced event stores nothing.
-- BYTEA on PostgreSQL; on SQLite a blob kept as it is.

-- +goose Up
ALTER TABLE orchestrator_webhook_events ADD COLUMN trace_id BYTEA;

-- +goose Down
ALTER TABLE orchestrator_webhook_events DROP COLUMN trace_id;
