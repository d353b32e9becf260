package peers

import (
	"context"
	"net/http"
	"net/url"
)

// AIPipeline is the client of the AI Pipeline API.
type AIPipeline struct{ c client }

// NewAIPipeline returns an AI Pipeline client.
func NewAIPipeline(o Options) *AIPipeline {
	return &AIPipeline{c: newClient(AIPipelinePeer, o)}
}

// Bootstrap prepares the pipeline's state for a team.
func (p *AIPipeline) Bootstrap(ctx context.Context, token, team string) error {
	return p.c.call(ctx, http.MethodPost, "/api/v1/teams/"+url.PathEscape(team)+"/bootstrap", token, nil, nil, nil)
}

// Run starts the team's pipeline now.
func (p *AIPipeline) Run(ctx context.Context, token, org, team string) (map[string]any, error) {
	var out map[string]any
	err := p.c.call(ctx, http.MethodPost, "/api/v1/teams/"+url.PathEscape(team)+"/run", token, nil,
		map[string]string{"org_id": org, "team_id": team}, &out)
	return out, err
}
