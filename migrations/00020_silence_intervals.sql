-- Recurring silences (SPEC §21): a silence may name time intervals of the
-- sources file (time_intervals:) and then mutes only while one of them is
-- open, between its starts_at and ends_at (at most a year). The names,
-- comma-separated; NULL for a plain silence, so existing rows are unchanged.

-- +goose Up
ALTER TABLE orchestrator_silences ADD COLUMN mute_time_intervals TEXT;

-- +goose Down
ALTER TABLE orchestrator_silences DROP COLUMN mute_time_intervals;
