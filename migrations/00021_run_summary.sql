-- The conversation, streamed (SPEC §19): a streamed run keeps a summary —
-- the tools it used, its questions and approvals and what became of them,
-- its duration — posted with its answer and shown on its page. NULL for a
-- run made with the run call, or before this migration.

-- +goose Up
ALTER TABLE orchestrator_agent_runs ADD COLUMN summary TEXT;

-- +goose Down
ALTER TABLE orchestrator_agent_runs DROP COLUMN summary;
