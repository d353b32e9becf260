-- Trust boundaries (SPEC §18): GitHub signs the body alone, so the same
-- signed body re-sent under a new X-GitHub-Delivery is a replay and must be
-- a duplicate. body_sha256 (the SHA-256 of the body as it arrived, kept
-- after the body is purged) is unique among GitHub's events; the index is
-- partial so no other source pays for it. Earlier rows have no hash (NULL)
-- and never conflict.

-- +goose Up
CREATE UNIQUE INDEX ux_webhook_events_replay ON orchestrator_webhook_events (body_sha256) WHERE source = 'github';

-- +goose Down
DROP INDEX ux_webhook_events_replay;
