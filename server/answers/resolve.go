package answers

// Where an answer goes: the reference orchestrator's output resolver, in
// its order, over the team config the dispatcher already holds. Pure: no
// I/O, the same answer for the same config and trigger.
//
//  1. team config output_config.trigger_overrides.<trigger> —
//     "reply_in_thread" (a Slack trigger), "comment_on_pr" (a GitHub
//     trigger), "use_default", or a list of destinations;
//  2. the trigger's own place: a Slack mention or interaction → its
//     thread; a GitHub issue, pull request or comment event → a comment
//     there; a PagerDuty incident → a note on it; other sources none;
//  3. when nothing above gave a destination, team config
//     output_config.default_destinations.
//
// A digest (alerts folded into one call) has no place of its own: it
// carries its team's destinations once — the destination lists that
// trigger_overrides gives its sources ("use_default" naming the defaults),
// else default_destinations — never a post per folded alert.

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Who posts an answer (ORCHESTRATOR_POST_ANSWERS, team config
// output_config.posted_by).
const (
	// ModeOrchestrator: the appliance posts the destinations it holds a
	// credential for, and tells the agent so (posted_by).
	ModeOrchestrator = "orchestrator"
	// ModeAgent: the appliance only passes the destinations on.
	ModeAgent = "agent"
)

// Modes are the values of ORCHESTRATOR_POST_ANSWERS and posted_by.
var Modes = []string{ModeOrchestrator, ModeAgent}

// Types are the destination types, in the order the docs list them.
var Types = []string{TypeSlack, TypeGitHubIssueComment, TypeGitHubPRComment, TypePagerDutyNote, TypeWebhook}

// MaxDestinations bounds the destinations of one run: a team config with
// a thousand entries does not make a thousand posts (or rows) per answer.
const MaxDestinations = 20

// Trigger is what asked the question.
type Trigger struct {
	// Source is the event's source (slack, github, pagerduty, …, a
	// configured source's name); "" for a digest.
	Source string
	// Meta is the event's metadata as the agent receives it (the source's
	// Describe): the Slack channel and thread, the GitHub repository and
	// number, the PagerDuty incident.
	Meta map[string]any
	// Digest: alerts folded into one call; Sources are their sources.
	Digest  bool
	Sources []string
}

// Planned is one destination of a run and what becomes of its delivery.
type Planned struct {
	Destination Destination
	// Post: the appliance posts it (its delivery starts queued).
	Post bool
	// Failed is why the appliance will not post it — a destination the
	// team config gets wrong, or one it holds no credential for; its
	// delivery is recorded failed with this reason. Empty with Post false:
	// the agent posts it (ModeAgent), and nothing is recorded.
	Failed string
}

// Plan is where one run's answer goes.
type Plan struct {
	// Mode is who posts (ModeOrchestrator or ModeAgent).
	Mode string
	// Destinations go to the agent as output_destinations: every valid
	// destination, those the appliance posts marked posted_by.
	Destinations []Destination
	// Deliveries are the destinations to record, in order: those the
	// appliance posts, and those it refused with a reason.
	Deliveries []Planned
	// Warnings name what in the team config was set aside (an unknown
	// posted_by, destinations past MaxDestinations), for the log.
	Warnings []string
}

// Resolver resolves output destinations.
type Resolver struct {
	// Mode is ORCHESTRATOR_POST_ANSWERS (default ModeOrchestrator); team
	// config output_config.posted_by overrides it.
	Mode string
	// Notifiers post each destination type; a type without one, or whose
	// Checker refuses a destination, is left to the agent.
	Notifiers map[string]Notifier
}

// Resolve plans where the answer of a call for trigger goes, from the
// team's effective config (nil: none). A mistake in the config never
// stops the answer: the destination it spoils is planned failed with a
// reason that names the field.
func (r Resolver) Resolve(cfg map[string]any, t Trigger) Plan {
	oc, _ := cfg["output_config"].(map[string]any)
	p := Plan{Mode: r.Mode}
	if p.Mode == "" {
		p.Mode = ModeOrchestrator
	}
	switch by := oc["posted_by"].(type) {
	case nil:
	case string:
		if slices.Contains(Modes, by) {
			p.Mode = by
		} else {
			p.Warnings = append(p.Warnings, fmt.Sprintf("output_config.posted_by %q is not orchestrator or agent; using %s", clip(by), p.Mode))
		}
	default:
		p.Warnings = append(p.Warnings, "output_config.posted_by is not a string; using "+p.Mode)
	}
	overrides, _ := oc["trigger_overrides"].(map[string]any)
	var raw []entry
	if t.Digest {
		raw = r.digest(oc, overrides, t.Sources)
	} else {
		raw = r.single(oc, overrides, t)
	}
	if len(raw) > MaxDestinations {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%d output destinations; only the first %d are used", len(raw), MaxDestinations))
		raw = raw[:MaxDestinations]
	}
	seen := map[string]bool{}
	for _, e := range raw {
		d, err := e.dest, e.err
		if err == nil && e.value != nil {
			d, err = parseDestination(e.value)
		}
		if err != nil {
			p.Deliveries = append(p.Deliveries, Planned{Destination: d, Failed: fmt.Sprintf("team config %s: %v", e.field, err)})
			continue
		}
		key := d.key()
		if seen[key] {
			continue
		}
		seen[key] = true
		if p.Mode == ModeAgent {
			p.Destinations = append(p.Destinations, d)
			continue
		}
		if why := r.cannotPost(d); why != "" {
			p.Destinations = append(p.Destinations, d)
			p.Deliveries = append(p.Deliveries, Planned{Destination: d,
				Failed: "not posted by the orchestrator: " + why + "; passed to the agent without posted_by"})
			continue
		}
		d.PostedBy = PostedByOrchestrator
		p.Destinations = append(p.Destinations, d)
		p.Deliveries = append(p.Deliveries, Planned{Destination: d, Post: true})
	}
	return p
}

// cannotPost says why the appliance cannot post d ("" = it can).
func (r Resolver) cannotPost(d Destination) string {
	n := r.Notifiers[d.Type]
	if n == nil {
		return "this appliance posts no " + d.Type + " destinations"
	}
	if c, ok := n.(Checker); ok {
		if err := c.Check(d); err != nil {
			return err.Error()
		}
	}
	return ""
}

// entry is one destination before it is checked: resolved by the trigger
// (dest), or as team config wrote it (value), with the field it came from.
type entry struct {
	field string
	value any
	dest  Destination
	err   error
}

// single resolves a lone event's destinations.
func (r Resolver) single(oc, overrides map[string]any, t Trigger) []entry {
	field := "output_config.trigger_overrides." + t.Source
	switch o := overrides[t.Source].(type) {
	case string:
		switch {
		case o == "reply_in_thread" && t.Source == "slack", o == "comment_on_pr" && t.Source == "github":
			return own(t)
		case o == "use_default":
			return list(oc["default_destinations"], "output_config.default_destinations")
		case o == "reply_in_thread", o == "comment_on_pr":
			// The reference's rule: an override that does not fit its
			// trigger falls through to the trigger's own default.
		default:
			return []entry{{field: field, err: fmt.Errorf("%q is not reply_in_thread, comment_on_pr, use_default or a list of destinations", clip(o))}}
		}
	case []any:
		return list(o, field)
	case nil:
	default:
		return []entry{{field: field, err: fmt.Errorf("must be reply_in_thread, comment_on_pr, use_default or a list of destinations")}}
	}
	if got := own(t); len(got) > 0 {
		return got
	}
	return list(oc["default_destinations"], "output_config.default_destinations")
}

// digest resolves a digest's destinations: the lists its sources'
// overrides name, once, else the team's defaults.
func (r Resolver) digest(oc, overrides map[string]any, sources []string) []entry {
	var out []entry
	defaults := false
	seen := map[string]bool{}
	for _, src := range sources {
		if seen[src] {
			continue
		}
		seen[src] = true
		switch o := overrides[src].(type) {
		case []any:
			out = append(out, list(o, "output_config.trigger_overrides."+src)...)
		case string:
			defaults = defaults || o == "use_default"
		}
	}
	if defaults || len(out) == 0 {
		out = append(out, list(oc["default_destinations"], "output_config.default_destinations")...)
	}
	return out
}

// list reads a list of destinations from team config.
func list(v any, field string) []entry {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]entry, 0, len(l))
		for i, x := range l {
			if x == nil {
				x = map[string]any{}
			}
			out = append(out, entry{field: fmt.Sprintf("%s[%d]", field, i), value: x})
		}
		return out
	default:
		return []entry{{field: field, err: fmt.Errorf("must be a list of destinations")}}
	}
}

// own is the trigger's own place: the thread, the issue or pull request,
// the incident. A trigger whose event lacks what its place needs (a
// mention without a channel) has none.
func own(t Trigger) []entry {
	m := t.Meta
	field := "the " + t.Source + " event"
	var d Destination
	switch t.Source {
	case "slack":
		d = Destination{Type: TypeSlack, ChannelID: str(m, "channel"), ThreadTS: str(m, "thread_ts")}
		if d.ThreadTS == "" {
			d.ThreadTS = str(m, "ts")
		}
		if app := str(m, "app"); app != "default" {
			d.App = app
		}
		if d.ChannelID == "" {
			return nil
		}
	case "github":
		d = Destination{Type: TypeGitHubPRComment, Repo: str(m, "repo"), PRNumber: num(m["pr_number"])}
		if d.PRNumber == 0 {
			d = Destination{Type: TypeGitHubIssueComment, Repo: d.Repo, IssueNumber: num(m["issue_number"])}
		}
		if d.Repo == "" || d.PRNumber+d.IssueNumber == 0 {
			return nil
		}
	case "pagerduty":
		d = Destination{Type: TypePagerDutyNote, IncidentID: str(m, "incident_id")}
		if d.IncidentID == "" {
			return nil
		}
	default:
		return nil
	}
	return []entry{{field: field, dest: d, err: d.validate()}}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// num reads a positive whole number written as a JSON number or a string
// of digits (0 if it is neither).
func num(v any) int {
	switch n := v.(type) {
	case float64:
		if n >= 1 && n <= math.MaxInt32 && n == math.Trunc(n) {
			return int(n)
		}
	case int:
		if n >= 1 && n <= math.MaxInt32 {
			return n
		}
	case int64:
		if n >= 1 && n <= math.MaxInt32 {
			return int(n)
		}
	case json.Number:
		return num(string(n))
	case string:
		if i, err := strconv.Atoi(n); err == nil && i >= 1 && i <= math.MaxInt32 {
			return i
		}
	}
	return 0
}

// parseDestination reads one destination as team config wrote it.
func parseDestination(v any) (Destination, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Destination{}, fmt.Errorf("a destination must be a mapping with a type")
	}
	typ, _ := m["type"].(string)
	d := Destination{Type: clip(typ)}
	switch typ {
	case TypeSlack:
		d.ChannelID, d.ThreadTS, d.App = str(m, "channel_id"), str(m, "thread_ts"), str(m, "app")
	case TypeGitHubIssueComment:
		d.Repo, d.IssueNumber = str(m, "repo"), num(m["issue_number"])
		if d.IssueNumber == 0 {
			return d, fmt.Errorf("github_issue_comment needs issue_number, a positive whole number")
		}
	case TypeGitHubPRComment:
		d.Repo, d.PRNumber = str(m, "repo"), num(m["pr_number"])
		if d.PRNumber == 0 {
			return d, fmt.Errorf("github_pr_comment needs pr_number, a positive whole number")
		}
	case TypePagerDutyNote:
		d.IncidentID = str(m, "incident_id")
	case TypeWebhook:
		d.Name = str(m, "name")
		if _, has := m["url"]; has || strings.Contains(d.Name, "://") {
			d.Name = ""
			return d, fmt.Errorf("a webhook destination names one the operator declared in the sources file (destinations:), never a URL")
		}
	case "":
		return d, fmt.Errorf("a destination needs a type (%s)", strings.Join(Types, ", "))
	default:
		return d, fmt.Errorf("unknown destination type %q (%s)", d.Type, strings.Join(Types, ", "))
	}
	return d, d.validate()
}

var (
	slackChannel = regexp.MustCompile(`^[A-Z0-9]{1,32}$`)
	slackTS      = regexp.MustCompile(`^[0-9]{1,20}(\.[0-9]{1,12})?$`)
	slug         = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	githubRepo   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$`)
	pdID         = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)
)

// validate checks the fields of a destination of a known type, so that
// nothing a team config writes reaches a vendor's URL unchecked.
func (d Destination) validate() error {
	switch d.Type {
	case TypeSlack:
		if !slackChannel.MatchString(d.ChannelID) {
			return fmt.Errorf("slack needs channel_id, a Slack channel id such as C0A4967KRBM")
		}
		if d.ThreadTS != "" && !slackTS.MatchString(d.ThreadTS) {
			return fmt.Errorf("slack thread_ts must be a Slack message timestamp such as 1733312345.000100")
		}
		if d.App != "" && !slug.MatchString(d.App) {
			return fmt.Errorf("slack app must be the slug of a Slack app of the sources file")
		}
	case TypeGitHubIssueComment, TypeGitHubPRComment:
		if !githubRepo.MatchString(d.Repo) || strings.Contains(d.Repo, "..") {
			return fmt.Errorf("%s needs repo as owner/name", d.Type)
		}
	case TypePagerDutyNote:
		if !pdID.MatchString(d.IncidentID) {
			return fmt.Errorf("pagerduty_note needs incident_id, a PagerDuty incident id such as Q2W3E4R5T6Y7U8")
		}
	case TypeWebhook:
		if !slug.MatchString(d.Name) {
			return fmt.Errorf("webhook needs name, a destination declared in the sources file ([a-z][a-z0-9-]{0,31})")
		}
	}
	return nil
}

// key names a destination for de-duplication (posted_by aside).
func (d Destination) key() string {
	d.PostedBy = ""
	b, _ := json.Marshal(d)
	return string(b)
}

// clip keeps a value from team config short enough to show in a reason.
func clip(s string) string { return cut(s, 64) }

// cut keeps s within n bytes, cut on a character boundary with an ellipsis.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// EncodeDestination is a destination as its delivery stores it.
func EncodeDestination(d Destination) []byte {
	b, _ := json.Marshal(d) // a struct of strings and ints always encodes
	return b
}

// DecodeDestination reads a destination as its delivery stored it.
func DecodeDestination(b []byte) (Destination, error) {
	var d Destination
	err := json.Unmarshal(b, &d)
	return d, err
}

// Where says in words where a destination is, for the admin page: "Slack
// C0A4967KRBM, thread 1733312345.000100", "GitHub acme/payments PR #42",
// "PagerDuty incident Q2W3E4R5", "webhook ops-bus".
func (d Destination) Where() string {
	switch d.Type {
	case TypeSlack:
		s := "Slack " + d.ChannelID
		if d.ThreadTS != "" {
			s += ", thread " + d.ThreadTS
		}
		if d.App != "" {
			s += " (app " + d.App + ")"
		}
		return s
	case TypeGitHubIssueComment:
		return fmt.Sprintf("GitHub %s issue #%d", d.Repo, d.IssueNumber)
	case TypeGitHubPRComment:
		return fmt.Sprintf("GitHub %s PR #%d", d.Repo, d.PRNumber)
	case TypePagerDutyNote:
		return "PagerDuty incident " + d.IncidentID
	case TypeWebhook:
		return "webhook " + d.Name
	case "":
		return "(no type)"
	}
	return "unknown type " + clip(d.Type)
}
