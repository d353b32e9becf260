package webui

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"math"
	"sync"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/incidentfox/orchestrator-edge/server/chart"
	"github.com/incidentfox/orchestrator-edge/store"
)

// StatsStore holds what the page's charts and the teams page read
// (store.DB implements it).
type StatsStore interface {
	CountReceived(ctx context.Context, since, until time.Time) (int, error)
	CountEvents(ctx context.Context) (int, error)
	PayloadSpace(ctx context.Context) (store.PayloadSpace, error)
	AckLatency(ctx context.Context, since, until time.Time) (store.Histogram, error)
	AgentLatency(ctx context.Context, since, until time.Time, org string) (store.Histogram, error)
	EventsPerSlot(ctx context.Context, w store.Window, org string) ([]store.SlotCount, error)
	EventStatuses(ctx context.Context, since, until time.Time, org string) ([]store.StatusCount, error)
	Teams(ctx context.Context, org string) ([]store.TeamRun, error)
}

// DefaultStatsMaxAge is how long the serving binary reuses the last day's
// figures: at a million events in one day, computing them reads every one.
const DefaultStatsMaxAge = 30 * time.Second

// pageStats is the last day in figures, for one org scope.
type pageStats struct {
	At        time.Time
	Window    store.Window
	PerSlot   []store.SlotCount
	Statuses  []store.StatusCount
	Ack       *store.Histogram // nil for an org-bound admin: acks belong to no org
	Agent     store.Histogram
	SlotLabel []string
	// Volume is the data volume's figures (admins bound to no org, on
	// SQLite); nil otherwise.
	Volume *volumeView
}

// volumeView is the overview's data volume card (docs/backups.md).
type volumeView struct {
	backups.VolumeFigures
	// Filling says the volume is filling at this week's rate, and then
	// FullInDays when it will be full.
	Filling    bool
	FullInDays int
	// FarOff: it grows, but would take more than a year to fill.
	FarOff bool
	// PerEvent is the bytes a stored event costs now without its body.
	PerEvent int64
}

// statsCache keeps each org scope's figures. At a million events in a day
// computing them reads the whole day (seconds), so only the first page
// after start waits for it: once figures older than MaxAge
// (Settings.StatsMaxAge) are asked for, they are served as they are (the
// page says as of when) while one computation renews them in the
// background. With MaxAge 0 every page computes its own.
type statsCache struct {
	mu      sync.Mutex
	entries map[string]*statsEntry
}

type statsEntry struct {
	ready      chan struct{} // closed once stats and err are set
	stats      pageStats
	err        error
	refreshing bool
}

// stats returns the org scope's figures of the last 24 hours.
func (u *UI) stats(ctx context.Context, org string) (pageStats, error) {
	maxAge := u.o.StatsMaxAge
	if maxAge <= 0 {
		return u.computeStats(ctx, org, u.now())
	}
	c := &u.figures
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*statsEntry{}
	}
	e, ok := c.entries[org]
	if !ok {
		// The first computation: every page asking meanwhile waits for it.
		e = &statsEntry{ready: make(chan struct{})}
		c.entries[org] = e
		c.mu.Unlock()
		e.stats, e.err = u.computeStats(ctx, org, u.now())
		c.mu.Lock()
		if e.err != nil {
			delete(c.entries, org) // the next page tries again
		}
		c.mu.Unlock()
		close(e.ready)
		return e.stats, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		return pageStats{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := u.now()
	if (now.Sub(e.stats.At) >= maxAge || now.Before(e.stats.At)) && !e.refreshing {
		e.refreshing = true
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			st, err := u.computeStats(rctx, org, u.now())
			c.mu.Lock()
			defer c.mu.Unlock()
			e.refreshing = false
			if err != nil {
				u.log.Warn("renewing the page's figures failed", "error", err)
				return
			}
			e.stats = st
		}()
	}
	return e.stats, nil
}

func (u *UI) computeStats(ctx context.Context, org string, now time.Time) (pageStats, error) {
	now = now.UTC()
	until := now.Truncate(time.Hour).Add(time.Hour)
	w := store.Window{Since: until.Add(-24 * time.Hour), Until: until, Slots: 24}
	st := pageStats{At: now, Window: w}
	for i := range w.Slots {
		st.SlotLabel = append(st.SlotLabel, w.Since.Add(time.Duration(i)*time.Hour).Format("15:04"))
	}
	db := u.o.Stats
	var err error
	if st.PerSlot, err = db.EventsPerSlot(ctx, w, org); err != nil {
		return st, err
	}
	if st.Statuses, err = db.EventStatuses(ctx, w.Since, w.Until, org); err != nil {
		return st, err
	}
	if st.Agent, err = db.AgentLatency(ctx, w.Since, w.Until, org); err != nil {
		return st, err
	}
	if org == "" {
		ack, err := db.AckLatency(ctx, w.Since, w.Until)
		if err != nil {
			return st, err
		}
		st.Ack = &ack
		if st.Volume, err = u.volume(ctx, now); err != nil {
			return st, err
		}
	}
	return st, nil
}

// volume estimates when the data volume fills, at this week's rate, from
// what the live file holds now: an event's row costs what the database's
// pages in use outside the payload table cost per event, and stays until
// event retention removes it; its body costs what the payload table's
// pages cost per payload, and stays until body retention purges it (the
// purge gives whole pages back). So the growth of a day is the events that
// arrived in the last 7 days less those event retention removes in the
// next 7 (they arrived a retention period earlier), times the first, plus
// the bodies that arrived less those body retention purges in the next 7,
// times the second. Nil on PostgreSQL or without the backups manager.
func (u *UI) volume(ctx context.Context, now time.Time) (*volumeView, error) {
	if u.o.Backups == nil {
		return nil, nil
	}
	fig, err := u.o.Backups.Figures(ctx)
	if errors.Is(err, backups.ErrShared) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v := &volumeView{VolumeFigures: fig}
	week := 7 * 24 * time.Hour
	arrived, err := u.o.Stats.CountReceived(ctx, now.Add(-week), now)
	if err != nil {
		return nil, err
	}
	// leaving counts the events received in the week that ends a
	// retention period from now: they go within the next 7 days.
	leaving := func(r time.Duration) (int, error) {
		if r <= 0 {
			return 0, nil
		}
		return u.o.Stats.CountReceived(ctx, now.Add(-r), now.Add(-r+week))
	}
	events, err := leaving(u.o.EventRetention)
	if err != nil {
		return nil, err
	}
	bodies := events
	if u.o.BodyRetention > 0 {
		if bodies, err = leaving(u.o.BodyRetention); err != nil {
			return nil, err
		}
	}
	total, err := u.o.Stats.CountEvents(ctx)
	if err != nil {
		return nil, err
	}
	payloads, err := u.o.Stats.PayloadSpace(ctx)
	if err != nil {
		return nil, err
	}
	var perBody int64
	if total > 0 {
		v.PerEvent = max(0, fig.UsedBytes-payloads.Bytes) / int64(total)
	}
	if payloads.Payloads > 0 {
		perBody = payloads.Bytes / int64(payloads.Payloads)
	}
	perDay := (float64(arrived-events)*float64(v.PerEvent) + float64(arrived-bodies)*float64(perBody)) / 7
	v.Filling, v.FullInDays, v.FarOff = outlook(fig.Available, perDay)
	return v, nil
}

// fillHorizon is how far ahead "full in about N days" is worth saying: a
// week's rate says nothing of the volume years from now.
const fillHorizon = 365

// outlook is when a volume with available bytes free fills at perDay bytes
// a day: in days when that is within fillHorizon, else not filling (farOff
// when it grows, but would take longer than that).
func outlook(available int64, perDay float64) (filling bool, days int, farOff bool) {
	if perDay <= 0 || available <= 0 {
		return false, 0, false
	}
	d := math.Ceil(float64(available) / perDay)
	if d > fillHorizon {
		return false, 0, true
	}
	return true, int(d), false
}

// charts is the overview's pictures and the tables that say the same.
type charts struct {
	At                      time.Time
	Since, Until            time.Time
	PerSource, Outcomes     template.HTML
	Latency                 template.HTML
	SourceRows              []sourceRow
	OutcomeRows             []outcomeRow
	LatencyRows             []latencyRow
	SlotLabels              []string
	Total, Busiest          int
	BusiestAt               string
	AckHidden, NoDeliveries bool
}

type sourceRow struct {
	Source string
	Hours  []int
	Total  int
}

type outcomeRow struct {
	Status string
	Count  int
}

type latencyRow struct {
	What, P50, P90, P99 string
	Count               int64
}

func (st pageStats) charts(sources []string) charts {
	c := charts{At: st.At, Since: st.Window.Since, Until: st.Window.Until, SlotLabels: st.SlotLabel, AckHidden: st.Ack == nil}
	perSource := map[string][]int{}
	for _, src := range sources {
		perSource[src] = make([]int, st.Window.Slots)
	}
	hourTotals := make([]int, st.Window.Slots)
	for _, sc := range st.PerSlot {
		if v, ok := perSource[sc.Source]; ok && sc.Slot >= 0 && sc.Slot < len(v) {
			v[sc.Slot] += sc.Count
			hourTotals[sc.Slot] += sc.Count
			c.Total += sc.Count
		}
	}
	for i, n := range hourTotals {
		if n > c.Busiest {
			c.Busiest, c.BusiestAt = n, st.SlotLabel[i]
		}
	}
	var series []chart.Series
	for _, src := range sources {
		row := sourceRow{Source: src, Hours: perSource[src]}
		for _, n := range row.Hours {
			row.Total += n
		}
		c.SourceRows = append(c.SourceRows, row)
		series = append(series, chart.Series{Label: src, Values: row.Hours})
	}
	desc := fmt.Sprintf("%d events in the 24 hours from %s to %s UTC.", c.Total, st.Window.Since.Format("Jan 2 15:04"), st.Window.Until.Format("Jan 2 15:04"))
	if c.Busiest > 0 {
		desc += fmt.Sprintf(" Busiest hour: %s UTC with %d events.", c.BusiestAt, c.Busiest)
	}
	for _, r := range c.SourceRows {
		desc += fmt.Sprintf(" %s: %d.", r.Source, r.Total)
	}
	c.PerSource = chart.Columns("chart-per-source", "Events per source per hour, last 24 hours (UTC)", desc, series, st.SlotLabel, 3,
		func(s, slot, v int) string {
			return fmt.Sprintf("%s, %s–%s UTC: %d events", sources[s], st.SlotLabel[slot],
				st.Window.Since.Add(time.Duration(slot+1)*time.Hour).Format("15:04"), v)
		})

	byStatus := map[string]int{}
	for _, sc := range st.Statuses {
		byStatus[sc.Status] += sc.Count
	}
	var bars []chart.Bar
	desc = "Where the events of the last 24 hours are now:"
	most := 0
	for _, status := range store.EventStatuses {
		n := byStatus[status]
		most = max(most, n)
		c.OutcomeRows = append(c.OutcomeRows, outcomeRow{status, n})
		bars = append(bars, chart.Bar{Label: status, Length: float64(n), Text: fmt.Sprint(n), Class: "o-" + status})
		desc += fmt.Sprintf(" %s %d.", status, n)
	}
	c.Outcomes = chart.Bars("chart-outcomes", "Dispatch outcomes, last 24 hours (events)", desc, bars, countTicks(most))

	var lat []chart.Bar
	desc = "Percentiles of the last 24 hours; each value is the upper bound of its histogram bucket."
	add := func(what string, h store.Histogram) {
		row := latencyRow{What: what, Count: h.Total()}
		for _, q := range []struct {
			q   float64
			dst *string
		}{{0.5, &row.P50}, {0.9, &row.P90}, {0.99, &row.P99}} {
			d, over, ok := h.Quantile(q.q)
			if !ok {
				*q.dst = "no data"
				continue
			}
			*q.dst = "< " + shortDuration(d)
			if over {
				*q.dst = "≥ " + shortDuration(d)
			}
			// Every bar, ack or ack→agent, on one log scale of time.
			lat = append(lat, chart.Bar{Label: fmt.Sprintf("%s p%g", what, q.q*100), Length: latencyLength(d),
				Text: *q.dst, Class: "l-" + fmt.Sprint(int(q.q*100))})
		}
		desc += fmt.Sprintf(" %s (%d events): p50 %s, p90 %s, p99 %s.", what, row.Count, row.P50, row.P90, row.P99)
		c.LatencyRows = append(c.LatencyRows, row)
	}
	if st.Ack != nil {
		add("Ack", *st.Ack)
	}
	add("Ack→agent", st.Agent)
	c.NoDeliveries = st.Agent.Total() == 0
	c.Latency = chart.Bars("chart-latency", "Latency percentiles, last 24 hours (log scale)", desc, lat, latencyTicks(lat))
	return c
}

// latencyFloor is where the latency chart's log scale starts.
const latencyFloor = 100 * time.Microsecond

// latencyLength puts a duration on the latency chart's one scale: a unit
// per tenfold from 100 µs (a sliver below it, so a bar still shows).
func latencyLength(d time.Duration) float64 {
	return math.Max(0.15, math.Log10(float64(d)/float64(latencyFloor)))
}

// latencyTicks marks each tenfold from 1 ms up to just past the longest bar.
func latencyTicks(bars []chart.Bar) []chart.Tick {
	longest := 0.0
	for _, b := range bars {
		longest = math.Max(longest, b.Length)
	}
	var ticks []chart.Tick
	for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second,
		10 * time.Second, time.Minute, 10 * time.Minute, time.Hour} {
		at := latencyLength(d)
		ticks = append(ticks, chart.Tick{At: at, Label: shortDuration(d)})
		if at >= longest {
			break
		}
	}
	return ticks
}

// countTicks marks 0 and round steps up to at least most.
func countTicks(most int) []chart.Tick {
	step := niceStep(most)
	var ticks []chart.Tick
	for v := 0; ; v += step {
		ticks = append(ticks, chart.Tick{At: float64(v), Label: chart.Count(v)})
		if v >= most {
			return ticks
		}
	}
}

// niceStep is the smallest of 1, 2, 5, 10, 20, 50, … that covers most in
// four steps.
func niceStep(most int) int {
	for p := 1; ; p *= 10 {
		for _, m := range []int{1, 2, 5} {
			if m*p*4 >= most {
				return m * p
			}
		}
	}
}

// shortDuration writes 500µs, 7.5ms, 2s, 5m, 3h.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%gms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%gs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%gm", d.Minutes())
	}
	return fmt.Sprintf("%gh", d.Hours())
}

// ForgetStats drops the figures kept for the pages: the next page computes
// them (benchmarks time both).
func (u *UI) ForgetStats() {
	u.figures.mu.Lock()
	u.figures.entries = nil
	u.figures.mu.Unlock()
}
