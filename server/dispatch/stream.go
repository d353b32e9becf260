package dispatch

// The streaming call (SPEC §19, "The conversation, streamed"): a team
// whose agent speaks it (team config agent.protocol: investigate, or
// ORCHESTRATOR_AGENT_PROTOCOL) is called with POST {base}/investigate and
// its server-sent events read as they come. The result is the run's
// answer, delivered as any answer is; a stream that fails after it began is
// reported, not retried.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/answers"
	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
)

// Agent protocols.
const (
	// ProtocolRun is POST /agents/{agent}/run, one JSON answer.
	ProtocolRun = "run"
	// ProtocolInvestigate is POST /investigate, a stream of events.
	ProtocolInvestigate = "investigate"
)

// protocol is how the team's agent is called: its config's agent.protocol
// when it names one, else the appliance's default.
func (d *Dispatcher) protocol(cfg map[string]any, t store.TeamKey) string {
	agent, _ := cfg["agent"].(map[string]any)
	switch p, _ := agent["protocol"].(string); p {
	case ProtocolRun, ProtocolInvestigate:
		return p
	case "":
	default:
		d.log.Warn("team's agent.protocol is neither run nor investigate; using the default", "org_id", t.OrgID,
			"team_node_id", t.TeamNodeID, "default", d.o.AgentProtocol)
	}
	if d.o.AgentProtocol == ProtocolInvestigate {
		return ProtocolInvestigate
	}
	return ProtocolRun
}

// investigate makes the streaming call for one run: its thread id is the
// run's id (what the agent's questions and approvals are answered to).
// A Slack thread the appliance posts the answer to gets a progress
// message, which the answer replaces (plan's delivery names it).
func (d *Dispatcher) investigate(ctx context.Context, baseURL, token, correlation, runID string, t store.TeamKey,
	req peers.AgentRequest, timeout time.Duration, plan *answers.Plan, tools *toolTally) (json.RawMessage, error) {
	in := peers.InvestigateRequest{Prompt: req.Message, ThreadID: runID, TenantID: t.OrgID, TeamID: t.TeamNodeID,
		Context: req.Context, OutputDestinations: req.OutputDestinations}
	var progress *answers.Progress
	conv := &stream{d: d, runID: runID, team: t}
	for i, p := range plan.Deliveries {
		if p.Post && p.Destination.Type == answers.TypeSlack && d.o.Progress != nil {
			conv.dest = p.Destination
			if progress = d.o.Progress.Start(ctx, p.Destination, runID); progress != nil {
				defer func() {
					progress.Close()
					plan.Deliveries[i].Destination.ProgressTS = progress.TS()
				}()
			}
			break
		}
	}
	conv.begin(ctx)
	defer func() {
		// A shutdown leaves them open: the agent may still wait for them,
		// and a click on another replica, or after the restart, is honoured.
		if ctx.Err() == nil {
			conv.end(ctx)
		}
	}()
	h := peers.StreamHandler{
		Event: func(ev peers.StreamEvent) {
			progress.Event(ev)
			tools.event(ev)
			conv.event(ctx, ev)
		},
		Skipped: func(reason string) {
			d.log.Warn("agent stream: event skipped", "reason", reason, "agent_run_id", runID, "org_id", t.OrgID,
				"team_node_id", t.TeamNodeID)
		},
	}
	return d.o.Agent.Investigate(ctx, baseURL, token, correlation, in, timeout, h)
}
