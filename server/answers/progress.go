package answers

// Progress in the Slack thread while a streamed investigation runs (SPEC
// §19, "The conversation, streamed"): one message, posted when the call
// starts, then updated with chat.update — at most once per Every (2 s) by
// the injected clock, however fast the events come — with the current
// thought, the tools running and done, and the time elapsed. The answer
// (or the failure) replaces it: its delivery carries the message's ts
// (Destination.ProgressTS) and the Slack notifier updates that message
// instead of posting a new one. What a progress holds is bounded (one
// thought, a few tools), so a stream of any length costs the same memory.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/peers"
	"github.com/slack-go/slack"
)

// Bounds of a progress message.
const (
	progressThoughtChars = 500
	progressTools        = 8  // running tools shown
	progressDoneNames    = 16 // distinct finished tools counted by name
)

// progressText is a progress message's plain text (notifications and
// clients without blocks).
const progressText = "Investigating…"

// ProgressPoster starts the progress messages of streamed runs.
type ProgressPoster struct {
	// Slack posts and updates the messages.
	Slack *Slack
	// PublicURL links the run ("" = no link).
	PublicURL string
	// Every is the least time between two updates (default 2 s).
	Every time.Duration
	// Now is the clock the bound is kept by (default the wall clock).
	Now func() time.Time
	// Tick, if set, returns the channel that wakes the updater to show
	// what changed since the last update once Every has passed, and a
	// function that stops it (default: a ticker of Every/4). Tests give a
	// channel they drive.
	Tick   func() (<-chan time.Time, func())
	Logger *slog.Logger
}

// Progress is one run's progress message. A nil *Progress does nothing.
type Progress struct {
	pp    *ProgressPoster
	dest  Destination
	runID string
	ts    string
	start time.Time

	mu      sync.Mutex
	last    time.Time // the last update, by the clock
	dirty   bool
	updates int
	thought string
	running []string       // tool names, in start order (bounded)
	ids     map[string]int // running tool id → its place (bounded with running)
	done    map[string]int // finished tools by name (bounded)
	others  int            // finished tools past the bound on names

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// Start posts the progress message of a run in d's thread and returns its
// tracker; nil (nothing to track) when d is not a Slack destination the
// appliance posts, or the post failed (logged: the answer is then posted
// as a new message).
func (pp *ProgressPoster) Start(ctx context.Context, d Destination, runID string) *Progress {
	if pp == nil || pp.Slack == nil || d.Type != TypeSlack || pp.Slack.Check(d) != nil {
		return nil
	}
	now := pp.now()
	p := &Progress{pp: pp, dest: d, runID: runID, start: now, last: now, ids: map[string]int{}, done: map[string]int{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ts, err := pp.Slack.PostBlocks(ctx, d, progressText, p.blocks(now))
	if err != nil {
		pp.log().Warn("progress message not posted", "agent_run_id", runID, "error", err)
		return nil
	}
	p.ts = ts
	tick, stopTick := pp.ticker()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer stopTick()
		for {
			select {
			case <-p.stop:
				return
			case <-p.kick:
			case <-tick:
			}
			p.flush(context.WithoutCancel(ctx))
		}
	}()
	return p
}

func (pp *ProgressPoster) now() time.Time {
	if pp.Now != nil {
		return pp.Now()
	}
	return time.Now()
}

func (pp *ProgressPoster) every() time.Duration {
	if pp.Every > 0 {
		return pp.Every
	}
	return 2 * time.Second
}

func (pp *ProgressPoster) ticker() (<-chan time.Time, func()) {
	if pp.Tick != nil {
		return pp.Tick()
	}
	t := time.NewTicker(pp.every() / 4)
	return t.C, t.Stop
}

func (pp *ProgressPoster) log() *slog.Logger {
	if pp.Logger != nil {
		return pp.Logger
	}
	return slog.Default()
}

// TS is the progress message's ts ("" for a nil Progress).
func (p *Progress) TS() string {
	if p == nil {
		return ""
	}
	return p.ts
}

// Updates is how many chat.update calls the progress made.
func (p *Progress) Updates() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.updates
}

// Event takes one stream event; the message shows it at the next update.
func (p *Progress) Event(ev peers.StreamEvent) {
	if p == nil {
		return
	}
	var d struct {
		Text    string `json:"text"`
		Thought string `json:"thought"`
		Tool    string `json:"tool"`
		Name    string `json:"name"`
		ID      string `json:"id"`
	}
	_ = json.Unmarshal(ev.Data, &d)
	tool := cut(strings.ToValidUTF8(strings.TrimSpace(or(d.Tool, d.Name)), "?"), 80)
	if tool == "" {
		tool = "a tool"
	}
	id := cut(strings.ToValidUTF8(or(d.ID, tool), "?"), 80)
	p.mu.Lock()
	switch ev.Type {
	case peers.StreamThought:
		p.thought = cut(strings.ToValidUTF8(strings.TrimSpace(or(d.Text, d.Thought)), "?"), progressThoughtChars)
	case peers.StreamToolStart:
		if _, ok := p.ids[id]; !ok && len(p.running) < progressTools {
			p.ids[id] = len(p.running)
			p.running = append(p.running, tool)
		}
	case peers.StreamToolEnd:
		if i, ok := p.ids[id]; ok {
			p.running = append(p.running[:i], p.running[i+1:]...)
			delete(p.ids, id)
			for k, j := range p.ids {
				if j > i {
					p.ids[k] = j - 1
				}
			}
		}
		if _, ok := p.done[tool]; ok || len(p.done) < progressDoneNames {
			p.done[tool]++
		} else {
			p.others++
		}
	default:
		p.mu.Unlock()
		return
	}
	p.dirty = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// flush updates the message when something changed and Every has passed
// since the last update (by the clock).
func (p *Progress) flush(ctx context.Context) {
	now := p.pp.now()
	p.mu.Lock()
	if !p.dirty || now.Sub(p.last) < p.pp.every() {
		p.mu.Unlock()
		return
	}
	p.dirty, p.last = false, now
	p.updates++
	blocks := p.blocksLocked(now)
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.pp.Slack.UpdateBlocks(ctx, p.dest, p.ts, progressText, blocks); err != nil {
		p.pp.log().Warn("progress message not updated", "agent_run_id", p.runID, "error", err)
	}
}

// Close stops the updates; the answer's delivery replaces the message.
func (p *Progress) Close() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
}

func (p *Progress) blocks(now time.Time) []slack.Block {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocksLocked(now)
}

// blocksLocked lays the message out: what the agent is doing, its tools,
// the time elapsed, the run's link.
func (p *Progress) blocksLocked(now time.Time) []slack.Block {
	var b strings.Builder
	fmt.Fprintf(&b, "*Investigating…* (%s)", elapsed(now.Sub(p.start)))
	if p.thought != "" {
		b.WriteString("\n> " + strings.ReplaceAll(escape(p.thought), "\n", "\n> "))
	}
	if len(p.running) > 0 {
		b.WriteString("\nRunning: " + escape(strings.Join(p.running, ", ")))
	}
	if len(p.done) > 0 {
		names := make([]string, 0, len(p.done))
		for n := range p.done {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, 0, len(names)+1)
		for _, n := range names {
			if c := p.done[n]; c > 1 {
				parts = append(parts, fmt.Sprintf("%s ×%d", n, c))
			} else {
				parts = append(parts, n)
			}
		}
		if p.others > 0 {
			parts = append(parts, fmt.Sprintf("%d more", p.others))
		}
		b.WriteString("\nDone: " + escape(strings.Join(parts, ", ")))
	}
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, b.String(), false, false), nil, nil)}
	stop := slack.NewButtonBlockElement(ActionStop, p.runID, slack.NewTextBlockObject(slack.PlainTextType, "Stop", false, false))
	stop.Style = slack.StyleDanger
	blocks = append(blocks, slack.NewActionBlock("run_controls", stop))
	if u := RunURL(p.pp.PublicURL, p.runID); u != "" {
		blocks = append(blocks, slack.NewContextBlock("orchestrator_run",
			slack.NewTextBlockObject(slack.MarkdownType, "<"+u+"|See this run on the orchestrator>", false, false)))
	}
	return blocks
}

// elapsed is a duration as people read it: 45s, 2m 05s.
func elapsed(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 60 {
		return fmt.Sprintf("%ds", s)
	}
	return fmt.Sprintf("%dm %02ds", s/60, s%60)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
