-- Release at the end (SPEC §21): the events a silence, a mute interval,
-- an inhibition or a route's active_time_intervals keep back and that were
-- not released yet, by what holds them — what the release pass reads every
-- few seconds. Partial: only the events held now, so it stays as small as
-- what is held (released, settled and other suppressed events leave it).

-- +goose Up
CREATE INDEX ix_webhook_events_held ON orchestrator_webhook_events (suppressed_reason, suppressed_by, id)
  WHERE status = 'suppressed' AND released_by IS NULL AND suppressed_reason IN ('silence', 'held', 'inhibited');

-- +goose Down
DROP INDEX ix_webhook_events_held;
