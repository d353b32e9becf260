-- Scale-out (SPEC §13): admin page sessions live in the database so that a
-- login is valid on every replica and survives restarts (only a hash of the
-- session id is stored, and the admin token is sealed with a key derived
-- from the id, which only the browser holds); and each team's dispatch
-- budget (a token bucket) is shared by the replicas through its row.

-- +goose Up
CREATE TABLE orchestrator_ui_sessions (
    id_hash    VARCHAR(64)  PRIMARY KEY,
    actor      VARCHAR(255) NOT NULL,
    sealed     BYTEA        NOT NULL,
    flash      TEXT,
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    seen_at    TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX ix_ui_sessions_seen ON orchestrator_ui_sessions (seen_at);

CREATE TABLE orchestrator_team_budgets (
    org_id       VARCHAR(128)     NOT NULL,
    team_node_id VARCHAR(128)     NOT NULL,
    tokens       DOUBLE PRECISION NOT NULL,
    updated_at   TIMESTAMP        NOT NULL,
    PRIMARY KEY (org_id, team_node_id)
);

-- +goose Down
DROP TABLE orchestrator_team_budgets;
DROP TABLE orchestrator_ui_sessions;
