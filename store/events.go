package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Webhook event statuses (SPEC §6): queued → dispatching → delivered |
// ignored | unrouted | failed | dead.
const (
	EventQueued      = "queued"
	EventDispatching = "dispatching"
	EventDelivered   = "delivered"
	EventIgnored     = "ignored"
	EventUnrouted    = "unrouted"
	EventFailed      = "failed"
	EventDead        = "dead"
	// EventSuppressed: kept from the agent by noise control (SPEC §6
	// Noise), with a reason and its cause; redrivable.
	EventSuppressed = "suppressed"
)

// Suppression reasons (SPEC §6 Noise).
const (
	SuppressedResolved = "resolved"
	SuppressedRepeat   = "repeat"
	SuppressedSilence  = "silence"
	SuppressedBudget   = "budget"
	// SuppressedInhibited: a firing alert of the same org matching an
	// inhibit rule's source held it (SPEC §21); suppressed_by names that
	// alert's event.
	SuppressedInhibited = "inhibited"
	// SuppressedHeld: a firing alert outside its route's or team's
	// active_time_intervals (SPEC §21); suppressed_by names those
	// intervals (comma-separated). Delivered when one opens, if still
	// firing.
	SuppressedHeld = "held"
)

// SuppressedReasons lists the reasons in the order the page shows them.
var SuppressedReasons = []string{SuppressedResolved, SuppressedRepeat, SuppressedSilence, SuppressedInhibited, SuppressedHeld, SuppressedBudget}

// EventStatuses lists the event statuses in their lifecycle order.
var EventStatuses = []string{EventQueued, EventDispatching, EventDelivered, EventIgnored, EventUnrouted, EventFailed, EventDead, EventSuppressed}

// ErrBodyPurged: the event's body was purged by retention, so it cannot be
// dispatched again.
var ErrBodyPurged = errors.New("event body purged by retention")

// Event is a stored webhook event.
type Event struct {
	// ID is the event's id as the API shows it: the decimal of Key, or, for
	// an event stored before migration 7, the UUID it was given then.
	ID string
	// Key is the row's integer id, assigned when the event is stored.
	Key           int64
	Source        string
	DeliveryID    string
	EventType     string
	Status        string
	Identifiers   map[string]string
	OrgID         string
	TeamNodeID    string
	MatchedBy     string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	Headers       map[string]string
	Body          []byte
	BodyPurgedAt  *time.Time
	// PayloadError says why the stored headers and body could not be read
	// (a corrupt or crafted row): the event is shown as unreadable and is
	// not dispatched; empty when they were read.
	PayloadError string
	ReceivedAt   time.Time
	UpdatedAt    time.Time
	FinishedAt   *time.Time
	// DigestRunID and DigestSize name the agent call this event was last
	// folded into with others (SPEC §6 Storms); empty for a lone delivery.
	DigestRunID string
	DigestSize  int
	// Solo: a redriven event goes alone, never folded into a digest.
	Solo bool
	// BodySHA256 is the hex SHA-256 of the body as it arrived (kept when
	// the body is purged). For GitHub it is also a dedupe key: GitHub signs
	// only the body, so the same body under a new X-GitHub-Delivery is a
	// replay (SPEC §18).
	BodySHA256 string
	// AlertKey, AlertState and AlertSig are an alert event's identity: the
	// alert it is about, firing/resolved/other, and a digest of its firing
	// fingerprints (Alertmanager).
	AlertKey, AlertState, AlertSig string
	// AlertLabels are the labels an alert event's alerts share, as a JSON
	// object (Alertmanager's commonLabels; "" for a source without
	// labels): inhibit rules read them (SPEC §21).
	AlertLabels string
	// ReleasedBy names the resolve that ended the inhibition holding this
	// event, when it was released for it (queued again); "" otherwise.
	ReleasedBy string
	// SuppressedReason and SuppressedBy say why an event was kept from the
	// agent and what caused it (an event id, a silence id, a day).
	SuppressedReason, SuppressedBy string
	// HoldUntil, when set on a new event, is when it becomes due (the alert
	// group wait); zero = at once.
	HoldUntil time.Time
	// Decision is where the event went and why, as server/routing wrote
	// it (JSON, bounded there); nil for an event not routed yet or stored
	// before decisions were.
	Decision []byte
	// Trace is the trace the event belongs to (SPEC §22): the 16-byte
	// trace id, the 8-byte id of the door's span and the trace flags (1
	// byte: sampled or not); nil when tracing gave none. The store keeps
	// it as it is (server/tracing reads it).
	Trace []byte
}

// TraceLen is the length of a stored trace reference.
const TraceLen = 25

// traceValue is the stored form of a trace reference: NULL unless whole.
func traceValue(b []byte) any {
	if len(b) != TraceLen {
		return nil
	}
	return b
}

// eventColumns are what scanEvent reads, the payload (headers and body)
// from its own table (payloadtable.go).
const eventColumns = `id, legacy_id, source, delivery_id, event_type, status, routing_identifiers, org_id, team_node_id,
	matched_by, attempts, next_attempt_at, last_error, ` + payloadOf + `, body_purged_at, received_at, updated_at, finished_at,
	digest_run_id, digest_size, solo, body_sha256, alert_key, alert_state, alert_sig, suppressed_reason, suppressed_by, decision, trace_id,
	alert_labels, released_by`

// eventColumnsNoBody selects the same columns with the payload left out:
// lists and routing do not need it.
var eventColumnsNoBody = strings.Replace(eventColumns, payloadOf, "NULL", 1)

func scanEvent(row rowScanner) (Event, error) {
	var e Event
	var legacy, idents, org, team, matched, lastErr, digest, akey, astate, asig, sreason, sby, decision, alabels, released sql.NullString
	var digestSize sql.NullInt64
	var next, purged, received, updated, finished msTime
	var payload, sum []byte
	err := row.Scan(&e.Key, &legacy, &e.Source, &e.DeliveryID, &e.EventType, &e.Status, &idents, &org, &team,
		&matched, &e.Attempts, &next, &lastErr, &payload, &purged, &received, &updated, &finished,
		&digest, &digestSize, &e.Solo, &sum, &akey, &astate, &asig, &sreason, &sby, &decision, &e.Trace, &alabels, &released)
	if err != nil {
		return Event{}, err
	}
	e.ID = apiID(e.Key, legacy)
	e.AlertKey, e.AlertState, e.AlertSig, e.SuppressedReason, e.SuppressedBy = akey.String, astate.String, asig.String, sreason.String, sby.String
	e.DigestRunID, e.DigestSize = digest.String, int(digestSize.Int64)
	e.AlertLabels, e.ReleasedBy = alabels.String, released.String
	if decision.Valid && decision.String != "" {
		e.Decision = []byte(decision.String)
	}
	if len(sum) > 0 {
		e.BodySHA256 = hex.EncodeToString(sum)
	}
	e.OrgID, e.TeamNodeID, e.MatchedBy, e.LastError = org.String, team.String, matched.String, lastErr.String
	e.Identifiers = parseIdentifiers(idents)
	if e.Headers, e.Body, err = decodePayload(payload); err != nil {
		// One unreadable row must not fail a page, a claim or a copy of
		// many: it is reported on the event itself.
		e.PayloadError = err.Error()
	}
	e.NextAttemptAt, e.BodyPurgedAt, e.ReceivedAt, e.UpdatedAt, e.FinishedAt = next.Time, purged.ptr(), received.Time, updated.Time, finished.ptr()
	return e, nil
}

// apiID is the id the API shows of the event with key and legacy_id: the
// UUID of an event stored before migration 7, else the key (eventIDText is
// the same in SQL).
func apiID(key int64, legacy sql.NullString) string {
	if legacy.Valid {
		return legacy.String
	}
	return strconv.FormatInt(key, 10)
}

// eventRef is the condition that finds the event the API names id: by its
// key, or by the UUID of an event stored before migration 7. ok is false
// for an id no event can have.
func eventRef(id string) (cond string, arg any, ok bool) {
	if k, err := strconv.ParseInt(id, 10, 64); err == nil && k > 0 && strconv.FormatInt(k, 10) == id {
		return "id = ?", k, true
	}
	if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
		return "legacy_id = ?", u.String(), true
	}
	return "", nil, false
}

// scope adds the events filter's org, team, suppression reason and time
// range (the list and the bulk redrive read them alike).
func (w *filter) scope(f EventFilter) {
	w.eq("org_id", f.OrgID)
	w.eq("team_node_id", f.TeamNodeID)
	w.eq("suppressed_reason", f.SuppressedReason)
	w.eq("matched_by", f.MatchedBy)
	if !f.Since.IsZero() {
		w.add("received_at >= ?", ms(f.Since))
	}
	if !f.Until.IsZero() {
		w.add("received_at < ?", ms(f.Until))
	}
}

// requeueSQL queues events again, alone, with a fresh attempt budget (one
// redrive, or a bulk one); its arguments are the status, the time twice and
// solo, then the condition's. A suppressed event keeps its
// suppressed_reason and suppressed_by: why it was kept back stays part of
// its history (status says where it is now).
const requeueSQL = `UPDATE orchestrator_webhook_events SET status = ?, attempts = 0, next_attempt_at = ?,
		updated_at = ?, finished_at = NULL, solo = ?, digest_run_id = NULL, digest_size = NULL WHERE `

// redriveSQL queues one event again.
const redriveSQL = requeueSQL + `id = ?`

// RequeueDispatching returns events a crash left dispatching to the queue.
func (db *DB) RequeueDispatching(ctx context.Context, now time.Time) (int, error) {
	return eventsQueue.requeueAll(ctx, db, now)
}

// GetEvent returns one event.
func (db *DB) GetEvent(ctx context.Context, id string) (Event, error) {
	cond, arg, ok := eventRef(id)
	if !ok {
		return Event{}, fmt.Errorf("%w: event %s", ErrNotFound, id)
	}
	e, err := scanEvent(db.read.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM orchestrator_webhook_events WHERE `+cond, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("%w: event %s", ErrNotFound, id)
	}
	return e, err
}

// EventFilter selects events; empty fields do not filter.
type EventFilter struct {
	Source, Status, OrgID, TeamNodeID string
	// SuppressedReason keeps the events suppressed for that reason.
	SuppressedReason string
	// MatchedBy keeps the events routed (or ignored) that way: "rule:<name>"
	// for a routing rule's.
	MatchedBy string
	// DeliveryID finds the event a vendor knows by that id (with Source, it
	// uses the unique index; without, it scans).
	DeliveryID   string
	Since, Until time.Time
	Limit        int
	Cursor       string
	// Before (instead of Cursor) pages towards newer events: the page just
	// newer than the event that cursor names; the cursor ListEvents then
	// returns is the Before of the page newer still.
	Before string
}

// EventCursor is the paging cursor that names e: Cursor pages older than
// it, Before newer.
func EventCursor(e Event) string { return encodeCursor(e.ReceivedAt, strconv.FormatInt(e.Key, 10)) }

// ListEvents returns events newest first and the next page's cursor. The
// list leaves bodies out: they can be large, and the detail has them.
func (db *DB) ListEvents(ctx context.Context, f EventFilter) ([]Event, string, error) {
	var w filter
	w.eq("source", f.Source)
	w.eq("status", f.Status)
	if f.Status != "" && f.Status != EventDelivered && f.Status != EventIgnored {
		w.add(rareStatuses) // lets the rare statuses' partial index serve
	}
	w.eq("delivery_id", f.DeliveryID)
	w.scope(f)
	return page[Event]{table: "orchestrator_webhook_events", columns: eventColumnsNoBody,
		timeCol: "received_at", limit: f.Limit, cursor: f.Cursor, before: f.Before, scan: scanEvent, keyArgs: eventKeyArgs,
		key: func(e Event) (time.Time, string) { return e.ReceivedAt, strconv.FormatInt(e.Key, 10) }}.run(ctx, db.read, w)
}

// RedrivableStatuses are the statuses an event may be queued again from.
var RedrivableStatuses = []string{EventUnrouted, EventFailed, EventDead, EventSuppressed}

// redrivableCondition is RedrivableStatuses as SQL, its statuses literal.
var redrivableCondition = "status IN ('" + strings.Join(RedrivableStatuses, "', '") + "')"

// Redrivable reports whether the event's status allows queueing it again:
// it ended unrouted, failed, dead or suppressed. (Redrive also needs its body.)
func (e Event) Redrivable() bool { return slices.Contains(RedrivableStatuses, e.Status) }

// Redrive puts an unrouted, failed, dead or suppressed event back in the
// queue with a fresh attempt budget.
func (db *DB) Redrive(ctx context.Context, id string, now time.Time) (Event, error) {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return Event{}, err
	}
	defer tx.Rollback()
	cond, arg, ok := eventRef(id)
	if !ok {
		return Event{}, fmt.Errorf("%w: event %s", ErrNotFound, id)
	}
	e, err := scanEvent(tx.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM orchestrator_webhook_events WHERE `+cond+db.d.forUpdate, arg))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Event{}, fmt.Errorf("%w: event %s", ErrNotFound, id)
	case err != nil:
		return Event{}, err
	case !e.Redrivable():
		return Event{}, fmt.Errorf("%w: event %s is %s; only unrouted, failed, dead and suppressed events can be redriven", ErrConflict, id, e.Status)
	case e.BodyPurgedAt != nil:
		return Event{}, fmt.Errorf("%w: event %s", ErrBodyPurged, id)
	}
	at := ms(now)
	// A redriven event goes alone (solo), never folded into a digest, and
	// past noise control: an operator asked for it.
	if _, err := tx.ExecContext(ctx, redriveSQL, EventQueued, at, at, true, e.Key); err != nil {
		return Event{}, err
	}
	if err := tx.Commit(); err != nil {
		return Event{}, err
	}
	e.Status, e.Attempts, e.NextAttemptAt, e.FinishedAt, e.Solo, e.DigestRunID, e.DigestSize = EventQueued, 0, now, nil, true, "", 0
	return e, nil
}

// PurgeBodies drops the payloads (headers and body) of up to limit events
// received before cutoff that are not waiting in the queue; their metadata
// stays, marked purged at now. Fewer than limit means none is left.
// ix_webhook_events_unpurged holds only the events not yet purged, so each
// batch reads just what it purges; the payload rows go whole, oldest ids
// first, so the pages they filled empty and the incremental vacuum after
// the retention pass returns them (SPEC §16).
func (db *DB) PurgeBodies(ctx context.Context, cutoff, now time.Time, limit int) (int, error) {
	t, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer t.Rollback()
	rows, err := t.QueryContext(ctx, `UPDATE orchestrator_webhook_events SET body_purged_at = ?
		WHERE id IN (SELECT id FROM orchestrator_webhook_events WHERE `+unpurged+` AND received_at < ?
			AND status NOT IN (?, ?) ORDER BY received_at LIMIT ?`+db.d.forUpdate+`)
		RETURNING id`, ms(now), ms(cutoff), EventQueued, EventDispatching, limit)
	if err != nil {
		return 0, err
	}
	ids, err := collect(rows, scanKey)
	if err != nil {
		return 0, err
	}
	if err := deletePayloads(ctx, t, ids); err != nil {
		return 0, err
	}
	return len(ids), t.Commit()
}

// scanKey reads an event's integer id.
func scanKey(r rowScanner) (int64, error) {
	var id int64
	return id, r.Scan(&id)
}

// deletePayloads deletes the payloads of the events with ids, in id order.
func deletePayloads(ctx context.Context, q querier, ids []int64) error {
	slices.Sort(ids)
	for len(ids) > 0 {
		n := min(len(ids), RetentionBatch)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM orchestrator_event_payloads WHERE event_id IN (`+
			strings.TrimSuffix(strings.Repeat("?, ", n), ", ")+`)`, args...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// QueueDepth counts events waiting for or in dispatch, of one org if org
// is not "" (events not yet routed belong to no org).
func (db *DB) QueueDepth(ctx context.Context, org string) (int, error) {
	q, args := `SELECT COUNT(*) FROM orchestrator_webhook_events WHERE `+activeStatuses, []any{}
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	var n int
	err := db.read.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

// SourceCount is how many events one source sent.
type SourceCount struct {
	Source string
	Count  int
}

// endOfTime bounds an open time range (a literal both databases read).
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// CountEventsSince counts events per source received at or after since, of
// one org if org is not "".
func (db *DB) CountEventsSince(ctx context.Context, since time.Time, org string) ([]SourceCount, error) {
	// Bounded on both sides, or SQLite's planner walks the whole
	// (source, received_at) index for the GROUP BY instead of the hour.
	q, args := `SELECT source, COUNT(*) FROM orchestrator_webhook_events WHERE received_at >= ? AND received_at < ?`,
		[]any{ms(since), ms(endOfTime)}
	if org != "" {
		q, args = q+` AND org_id = ?`, append(args, org)
	}
	rows, err := db.read.QueryContext(ctx, q+` GROUP BY source ORDER BY source`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r rowScanner) (SourceCount, error) {
		var c SourceCount
		return c, r.Scan(&c.Source, &c.Count)
	})
}

// ms is a time as the events table stores it: milliseconds since the Unix
// epoch (migration 7).
func ms(t time.Time) int64 { return t.UnixMilli() }

// msTime scans an events table time (milliseconds, or NULL).
type msTime struct {
	Time  time.Time
	Valid bool
}

func (m *msTime) Scan(v any) error {
	var n sql.NullInt64
	if err := n.Scan(v); err != nil {
		return err
	}
	*m = msTime{Valid: n.Valid}
	if n.Valid {
		m.Time = time.UnixMilli(n.Int64).UTC()
	}
	return nil
}

func (m msTime) ptr() *time.Time {
	if !m.Valid {
		return nil
	}
	t := m.Time
	return &t
}

// eventKeyArgs turns an events cursor's time and key into query arguments.
func eventKeyArgs(at, id string) (any, any, error) {
	t, err := time.Parse(timeLayout, at)
	k, kerr := strconv.ParseInt(id, 10, 64)
	if err != nil || kerr != nil {
		return nil, nil, fmt.Errorf("%w: malformed cursor", ErrInvalid)
	}
	return ms(t), k, nil
}

// withPayload is ix_webhook_events_payload's condition: the index over the
// events' payload column of migrations 7 to 10 (payloadtable.go's down
// restores it).
const withPayload = `payload IS NOT NULL`

// identifiersText is how an event's routing identifiers are stored since
// migration 7: URL query form (slack_channel_id=C0A4967KRBM), shorter than
// the JSON object schema 6 stored; NULL when there are none.
func identifiersText(m map[string]string) any {
	if len(m) == 0 {
		return nil
	}
	v := url.Values{}
	for k, s := range m {
		v.Set(k, s)
	}
	return v.Encode()
}

// parseIdentifiers reads either form.
func parseIdentifiers(s sql.NullString) map[string]string {
	if !s.Valid || s.String == "" {
		return nil
	}
	out := map[string]string{}
	if strings.HasPrefix(s.String, "{") {
		_ = json.Unmarshal([]byte(s.String), &out)
		return out
	}
	v, _ := url.ParseQuery(s.String)
	for k := range v {
		out[k] = v.Get(k)
	}
	return out
}

// EventTrace returns the stored trace reference of event id (nil when it
// has none or there is no such event): an answer's post joins its trace.
func (db *DB) EventTrace(ctx context.Context, id string) []byte {
	cond, arg, ok := eventRef(id)
	if !ok {
		return nil
	}
	var ref []byte
	if err := db.read.QueryRowContext(ctx, `SELECT trace_id FROM orchestrator_webhook_events WHERE `+cond, arg).Scan(&ref); err != nil {
		return nil
	}
	return ref
}
