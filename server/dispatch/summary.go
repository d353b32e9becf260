package dispatch

// A streamed run's summary (SPEC §19, "The conversation, streamed"): the
// tools it used, its questions and approvals and what became of them, and
// its duration — kept with the run, posted with its answer in Slack and
// shown on its page. Bounded: at most summaryTools tool names are counted
// by name, the rest in one number.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/incidentfox/orchestrator-edge/store"
)

const summaryTools = 16

// toolTally counts a stream's finished tools by name.
type toolTally struct {
	byName map[string]int
	others int
}

func (t *toolTally) event(ev peers.StreamEvent) {
	if ev.Type != peers.StreamToolEnd {
		return
	}
	name := toolName(ev.Data)
	if t.byName == nil {
		t.byName = map[string]int{}
	}
	if _, ok := t.byName[name]; ok || len(t.byName) < summaryTools {
		t.byName[name]++
		return
	}
	t.others++
}

// summarize is the run's summary line, e.g. "Tools: kubectl_get_pods,
// kubectl_logs ×2 · Question: answered by U0ANA · Approval: approved by
// U0ANA · Took 42s".
func (d *Dispatcher) summarize(ctx context.Context, runID string, tools *toolTally, took time.Duration) string {
	var parts []string
	if n := len(tools.byName); n > 0 || tools.others > 0 {
		names := make([]string, 0, n)
		for name := range tools.byName {
			names = append(names, name)
		}
		sort.Strings(names)
		list := make([]string, 0, n+1)
		for _, name := range names {
			if c := tools.byName[name]; c > 1 {
				list = append(list, fmt.Sprintf("%s ×%d", name, c))
			} else {
				list = append(list, name)
			}
		}
		if tools.others > 0 {
			list = append(list, fmt.Sprintf("%d more", tools.others))
		}
		parts = append(parts, "Tools: "+strings.Join(list, ", "))
	} else {
		parts = append(parts, "Tools: none")
	}
	prompts, err := d.o.Store.RunPrompts(ctx, runID)
	if err != nil {
		d.log.Warn("the run's summary lacks its questions and approvals", "agent_run_id", runID, "error", err)
	}
	var questions, approvals []string
	for _, p := range prompts {
		what := p.State
		if p.DecidedBy != "" {
			what += " by " + p.DecidedBy
		}
		switch p.Kind {
		case store.PromptQuestion:
			questions = append(questions, what)
		case store.PromptApproval:
			if p.State == store.PromptExpired {
				what = "expired (denied)"
			}
			approvals = append(approvals, what+" ("+p.Ref+")")
		case store.PromptStop:
			if p.State == store.PromptStopped {
				parts = append(parts, "Stopped by "+p.DecidedBy)
			}
		}
	}
	plural := func(n int, one string) string {
		if n == 1 {
			return one
		}
		return fmt.Sprintf("%d %ss", n, strings.ToLower(one))
	}
	if len(questions) > 0 {
		parts = append(parts, plural(len(questions), "Question")+": "+strings.Join(questions, ", "))
	}
	if len(approvals) > 0 {
		parts = append(parts, plural(len(approvals), "Approval")+": "+strings.Join(approvals, ", "))
	}
	parts = append(parts, "Took "+took.Round(time.Second).String())
	return strings.Join(parts, " · ")
}

// toolName is a tool event's tool (or name), "a tool" when it names none.
func toolName(data json.RawMessage) string {
	var d struct {
		Tool string `json:"tool"`
		Name string `json:"name"`
	}
	_ = json.Unmarshal(data, &d)
	name := strings.TrimSpace(strings.ToValidUTF8(d.Tool, "?"))
	if name == "" {
		name = strings.TrimSpace(strings.ToValidUTF8(d.Name, "?"))
	}
	if len(name) > 80 {
		name = strings.ToValidUTF8(name[:80], "")
	}
	if name == "" {
		return "a tool"
	}
	return name
}
