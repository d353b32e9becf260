package store

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// What the admin page draws (SPEC §9 round 2), read from what is stored.
// Each query is one indexed range scan of a time window with the grouping
// done by the database, so a page costs the same whether the table holds a
// thousand events or a million; only the window's rows are read.

// Histogram counts durations into buckets: Counts[i] holds values below
// Bounds[i] (and at or above Bounds[i-1]); the last count, one more than
// there are bounds, holds the rest.
type Histogram struct {
	Bounds []time.Duration
	Counts []int64
}

// NewHistogram is an empty histogram over bounds.
func NewHistogram(bounds []time.Duration) Histogram {
	return Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}
}

// Observe counts one value.
func (h Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(h.Bounds) && d >= h.Bounds[i] {
		i++
	}
	h.Counts[i]++
}

// Total is how many values were counted.
func (h Histogram) Total() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Quantile is the upper bound of the bucket holding quantile q: the value
// is below it. over is true when that is the last, unbounded bucket (the
// value is then at least the last bound, which is returned). ok is false
// for an empty histogram.
func (h Histogram) Quantile(q float64) (d time.Duration, over, ok bool) {
	total := h.Total()
	if total == 0 {
		return 0, false, false
	}
	rank := int64(q*float64(total) + 0.5)
	rank = min(max(rank, 1), total)
	var seen int64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			if i == len(h.Bounds) {
				return h.Bounds[len(h.Bounds)-1], true, true
			}
			return h.Bounds[i], false, true
		}
	}
	return h.Bounds[len(h.Bounds)-1], true, true
}

// Add adds other's counts (same bounds).
func (h Histogram) Add(other Histogram) {
	for i := range min(len(h.Counts), len(other.Counts)) {
		h.Counts[i] += other.Counts[i]
	}
}

// AckBuckets bound the ack latency histogram: the answer to a vendor.
var AckBuckets = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond,
	7500 * time.Microsecond, 10 * time.Millisecond, 15 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// AgentBuckets bound the ack→agent histogram: from an event's arrival to
// the start of the agent call that delivered it (digests wait by design).
var AgentBuckets = []time.Duration{
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour,
}

// AckStatsRetention is how long ack latency rows are kept (the page reads
// the last day; the rest is for a look further back in the database).
const AckStatsRetention = 30 * 24 * time.Hour

// AckStat is one replica's ack latencies of one source since its last write.
type AckStat struct {
	ID     string
	Source string
	At     time.Time
	Counts []int64 // over AckBuckets
}

// AddAckStats writes ack latency histograms.
func (db *DB) AddAckStats(ctx context.Context, stats []AckStat) error {
	if len(stats) == 0 {
		return nil
	}
	t, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	for _, s := range stats {
		var n int64
		parts := make([]string, len(s.Counts))
		for i, c := range s.Counts {
			parts[i], n = strconv.FormatInt(c, 10), n+c
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO orchestrator_ack_stats (id, source, at, events, counts) VALUES (?, ?, ?, ?, ?)`,
			s.ID, s.Source, formatTime(s.At), n, strings.Join(parts, ",")); err != nil {
			return fmt.Errorf("store: ack stats: %w", err)
		}
	}
	return t.Commit()
}

// AckLatency sums the ack latency histograms written in [since, until).
// A row written with other bucket bounds (an older build) adds what fits.
func (db *DB) AckLatency(ctx context.Context, since, until time.Time) (Histogram, error) {
	h := NewHistogram(AckBuckets)
	rows, err := db.read.QueryContext(ctx, `SELECT counts FROM orchestrator_ack_stats WHERE at >= ? AND at < ?`,
		formatTime(since), formatTime(until))
	if err != nil {
		return h, err
	}
	defer rows.Close()
	for rows.Next() {
		var counts string
		if err := rows.Scan(&counts); err != nil {
			return h, err
		}
		for i, c := range strings.Split(counts, ",") {
			if n, err := strconv.ParseInt(c, 10, 64); err == nil && i < len(h.Counts) {
				h.Counts[i] += n
			}
		}
	}
	return h, rows.Err()
}

// PurgeAckStats drops ack latency rows written before cutoff.
func (db *DB) PurgeAckStats(ctx context.Context, cutoff time.Time) (int, error) {
	res, err := db.write.ExecContext(ctx, `DELETE FROM orchestrator_ack_stats WHERE at < ?`, formatTime(cutoff))
	return affectedRows(res, err)
}

// bucketCase is a CASE expression numbering the interval col falls in:
// 0 below bounds[0], …, len(bounds) at or above the last. It adds the
// bounds to args.
func bucketCase(col string, bounds []any, args *[]any) string {
	var b strings.Builder
	b.WriteString("CASE")
	for i, v := range bounds {
		fmt.Fprintf(&b, " WHEN %s < ? THEN %d", col, i)
		*args = append(*args, v)
	}
	fmt.Fprintf(&b, " ELSE %d END", len(bounds))
	return b.String()
}

// Window is a time range [Since, Until) cut into Slots equal slots.
type Window struct {
	Since, Until time.Time
	Slots        int
}

// slotBoundsMs are the slot bounds as the events table stores times.
func (w Window) slotBoundsMs() []any {
	step := w.Until.Sub(w.Since) / time.Duration(w.Slots)
	out := make([]any, w.Slots-1)
	for i := range out {
		out[i] = ms(w.Since.Add(time.Duration(i+1) * step))
	}
	return out
}

// eventIDText is the SQL for the id the API shows of the event aliased a
// (as agent runs name it): its UUID if it has one, else its key as text.
func eventIDText(a string) string {
	return "COALESCE(CAST(" + a + ".legacy_id AS VARCHAR(36)), CAST(" + a + ".id AS VARCHAR(36)))"
}

// SlotCount is how many events of one source arrived in one slot.
type SlotCount struct {
	Source string
	Slot   int
	Count  int
}

// EventsPerSlot counts events per source and slot of w (an org's when org
// is not "").
func (db *DB) EventsPerSlot(ctx context.Context, w Window, org string) ([]SlotCount, error) {
	if w.Slots < 1 {
		return nil, fmt.Errorf("%w: a window needs at least one slot", ErrInvalid)
	}
	var args []any
	slot := bucketCase("received_at", w.slotBoundsMs(), &args)
	args = append(args, ms(w.Since), ms(w.Until))
	q := `SELECT source, ` + slot + ` AS slot, COUNT(*) FROM orchestrator_webhook_events WHERE received_at >= ? AND received_at < ?`
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, q+` GROUP BY source, slot`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (SlotCount, error) {
		var c SlotCount
		return c, r.Scan(&c.Source, &c.Slot, &c.Count)
	})
}

// StatusCount is how many events of one team (or of none: unrouted) are in
// one status.
type StatusCount struct {
	OrgID, TeamNodeID string
	Status            string
	Count             int
}

// EventStatuses counts the events received in [since, until) per team and
// status (an org's when org is not "").
func (db *DB) EventStatuses(ctx context.Context, since, until time.Time, org string) ([]StatusCount, error) {
	q, args := `SELECT COALESCE(org_id, ''), COALESCE(team_node_id, ''), status, COUNT(*) FROM orchestrator_webhook_events
		WHERE received_at >= ? AND received_at < ?`, []any{ms(since), ms(until)}
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, q+` GROUP BY org_id, team_node_id, status`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (StatusCount, error) {
		var c StatusCount
		return c, r.Scan(&c.OrgID, &c.TeamNodeID, &c.Status, &c.Count)
	})
}

// AgentLatency is the histogram over AgentBuckets of the time from an
// event's arrival to the start of the agent call that delivered it, for the
// events received in [since, until) and delivered (an org's when org is not
// ""): a digest's events each count from their own arrival.
func (db *DB) AgentLatency(ctx context.Context, since, until time.Time, org string) (Histogram, error) {
	h := NewHistogram(AgentBuckets)
	bounds := make([]any, len(AgentBuckets))
	for i, b := range AgentBuckets {
		bounds[i] = b.Milliseconds()
	}
	var args []any
	bucket := bucketCase("("+db.d.epochMillis("r.started_at")+" - e.received_at)", bounds, &args)
	where, wargs := `e.status = ? AND e.received_at >= ? AND e.received_at < ?`, []any{EventDelivered, ms(since), ms(until)}
	if org != "" {
		where, wargs = where+` AND e.org_id = ?`, append(wargs, org)
	}
	// A lone event's run names it; a digest's events name their run. A
	// lone event retried has failed runs too: the delivering one succeeded.
	q := `SELECT b, COUNT(*) FROM (
		SELECT ` + bucket + ` AS b FROM orchestrator_webhook_events e
		JOIN orchestrator_agent_runs r ON r.id = e.digest_run_id WHERE ` + where + `
		UNION ALL
		SELECT ` + bucket + ` AS b FROM orchestrator_webhook_events e
		JOIN orchestrator_agent_runs r ON r.webhook_event_id = ` + eventIDText("e") + ` AND r.status = ?
		WHERE e.digest_run_id IS NULL AND ` + where + `) x GROUP BY b`
	all := append(append(append([]any{}, args...), wargs...), args...)
	all = append(append(all, RunSucceeded), wargs...)
	rows, err := db.read.QueryContext(ctx, q, all...)
	if err != nil {
		return h, err
	}
	defer rows.Close()
	for rows.Next() {
		var b int
		var n int64
		if err := rows.Scan(&b, &n); err != nil {
			return h, err
		}
		if b >= 0 && b < len(h.Counts) {
			h.Counts[b] += n
		}
	}
	return h, rows.Err()
}

// TeamRun is a team this orchestrator knows — it ran a workflow for it, or
// routed an event to it — and its latest run, if any.
type TeamRun struct {
	OrgID, TeamNodeID string
	// FirstProvisioned is when its first provisioning run that succeeded
	// started (zero: never provisioned here — a refused or failed run,
	// say a 409 routing_conflict, created nothing).
	FirstProvisioned time.Time
	// Last is its latest run of either kind (zero ID: none here).
	Last Run
}

// Provisioned says whether this orchestrator provisioned the team.
func (t TeamRun) Provisioned() bool { return !t.FirstProvisioned.IsZero() }

// Teams lists every team with a run here or an event routed to it (an
// org's when org is not ""), by org and team, each with its latest run.
func (db *DB) Teams(ctx context.Context, org string) ([]TeamRun, error) {
	where, args := ``, []any{RunKindProvision, RunSucceeded}
	if org != "" {
		where, args = `WHERE org_id = ?`, append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT t.org_id, t.team_node_id, t.first, `+prefixed("r", runColumns)+`
		FROM (SELECT org_id, team_node_id, MAX(created_at) AS last,
		             MIN(CASE WHEN kind = ? AND status = ? THEN created_at END) AS first
		      FROM orchestrator_provisioning_runs `+where+` GROUP BY org_id, team_node_id) t
		JOIN orchestrator_provisioning_runs r
		  ON r.org_id = t.org_id AND r.team_node_id = t.team_node_id AND r.created_at = t.last
		ORDER BY t.org_id, t.team_node_id, r.id`, args...)
	if err != nil {
		return nil, err
	}
	teams, err := collect(rows, func(r rowScanner) (TeamRun, error) {
		var t TeamRun
		var first nullTime
		var org, team string
		run, err := scanRun(prefixScanner{r, []any{&org, &team, &first}})
		t.OrgID, t.TeamNodeID, t.FirstProvisioned, t.Last = org, team, first.Time, run
		return t, err
	})
	if err != nil {
		return nil, err
	}
	routed, err := db.routedTeams(ctx, org)
	if err != nil {
		return nil, err
	}
	// Merge the two sorted lists; two runs started in the same microsecond
	// give one team.
	out := make([]TeamRun, 0, len(teams)+len(routed))
	less := func(a, b TeamKey) int {
		return cmp.Or(cmp.Compare(a.OrgID, b.OrgID), cmp.Compare(a.TeamNodeID, b.TeamNodeID))
	}
	i, j := 0, 0
	for i < len(teams) || j < len(routed) {
		var next TeamRun
		switch {
		case j == len(routed) || (i < len(teams) && less(TeamKey{OrgID: teams[i].OrgID, TeamNodeID: teams[i].TeamNodeID}, routed[j]) <= 0):
			next = teams[i]
			if j < len(routed) && less(TeamKey{OrgID: next.OrgID, TeamNodeID: next.TeamNodeID}, routed[j]) == 0 {
				j++
			}
			i++
		default:
			next = TeamRun{OrgID: routed[j].OrgID, TeamNodeID: routed[j].TeamNodeID}
			j++
		}
		if n := len(out); n > 0 && out[n-1].OrgID == next.OrgID && out[n-1].TeamNodeID == next.TeamNodeID {
			continue
		}
		out = append(out, next)
	}
	return out, nil
}

// routedTeams lists the teams events were routed to, by org and team. It
// walks ix_webhook_events_team one team at a time (a loose index scan: each
// step finds the next team after the last with one index seek), so it
// costs a few reads per team, not a read per event.
func (db *DB) routedTeams(ctx context.Context, org string) ([]TeamKey, error) {
	// The next team is the next one of the same org, else the first of the
	// next org: two seeks an index answers exactly (a row-value comparison
	// is planned as a range on the org alone).
	scope, args := `org_id IS NOT NULL`, []any{}
	nextOrg := `SELECT n.id FROM orchestrator_webhook_events n WHERE n.org_id > t.org_id AND n.team_node_id IS NOT NULL
		      ORDER BY n.org_id, n.team_node_id LIMIT 1`
	if org != "" {
		scope, args, nextOrg = `org_id = ?`, []any{org}, `NULL`
	}
	rows, err := db.read.QueryContext(ctx, `WITH RECURSIVE teams(org_id, team_node_id) AS (
		  SELECT org_id, team_node_id FROM (SELECT org_id, team_node_id FROM orchestrator_webhook_events
		    WHERE `+scope+` AND team_node_id IS NOT NULL ORDER BY org_id, team_node_id LIMIT 1) f
		  UNION ALL
		  SELECT e.org_id, e.team_node_id FROM teams t JOIN orchestrator_webhook_events e ON e.id = COALESCE(
		    (SELECT n.id FROM orchestrator_webhook_events n WHERE n.org_id = t.org_id AND n.team_node_id > t.team_node_id
		      ORDER BY n.org_id, n.team_node_id LIMIT 1),
		    (`+nextOrg+`))
		)
		SELECT org_id, team_node_id FROM teams`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (TeamKey, error) {
		var k TeamKey
		return k, r.Scan(&k.OrgID, &k.TeamNodeID)
	})
}

// prefixed qualifies each column of a column list with a table alias.
func prefixed(alias, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// prefixScanner scans some leading columns into head, the rest as asked.
type prefixScanner struct {
	r    rowScanner
	head []any
}

func (p prefixScanner) Scan(dest ...any) error {
	return p.r.Scan(append(append([]any{}, p.head...), dest...)...)
}
