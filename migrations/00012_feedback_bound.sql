-- Feedback bound to its run (SPEC §18, round 4). An agent run gets an
-- unguessable feedback reference, the value its answer's feedback buttons
-- carry instead of the sequential correlation id (a lone event's id). One
-- person's feedback on one run is one row, the last click winning: the
-- older duplicates a person's repeated clicks left are deleted, then a
-- unique index holds it, also for two replicas recording at once. The
-- unique index leads with agent_run_id, so the run's own index goes.

-- +goose Up
ALTER TABLE orchestrator_agent_runs ADD COLUMN feedback_ref VARCHAR(64);
CREATE UNIQUE INDEX ux_agent_runs_feedback_ref ON orchestrator_agent_runs (feedback_ref) WHERE feedback_ref IS NOT NULL;
DELETE FROM orchestrator_agent_run_feedback WHERE user_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM orchestrator_agent_run_feedback AS newer
    WHERE newer.agent_run_id = orchestrator_agent_run_feedback.agent_run_id
      AND newer.user_id = orchestrator_agent_run_feedback.user_id
      AND (newer.created_at > orchestrator_agent_run_feedback.created_at
           OR (newer.created_at = orchestrator_agent_run_feedback.created_at AND newer.id > orchestrator_agent_run_feedback.id)));
CREATE UNIQUE INDEX ux_feedback_run_user ON orchestrator_agent_run_feedback (agent_run_id, user_id);
DROP INDEX ix_feedback_run;

-- +goose Down
CREATE INDEX ix_feedback_run ON orchestrator_agent_run_feedback (agent_run_id);
DROP INDEX ux_feedback_run_user;
DROP INDEX ux_agent_runs_feedback_ref;
ALTER TABLE orchestrator_agent_runs DROP COLUMN feedback_ref;
