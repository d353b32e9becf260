package store

// The group commit of new webhook events: many concurrent InsertEvent
// calls share one transaction (one fsync), and a row the database refuses
// fails alone.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// insertColumns are what a new event's row is written with; the id is the
// database's. The payload goes to its own table (payloadtable.go).
var insertColumns = []string{"source", "delivery_id", "event_type", "status", "routing_identifiers", "next_attempt_at",
	"last_error", "received_at", "updated_at", "finished_at", "org_id", "team_node_id", "matched_by", "body_sha256",
	"alert_key", "alert_state", "alert_sig", "trace_id", "alert_labels"}

// insertSQL inserts n events in one statement. It skips a redelivery
// (ux_webhook_events_delivery) and a GitHub replay
// (ux_webhook_events_replay) alike; RETURNING names the rows it stored.
//
// SQLite says INSERT OR IGNORE: a statement that cannot abort half-way
// needs no statement journal, which otherwise copied every page the insert
// changed (10% of the writer's CPU). OR IGNORE also skips a row that breaks
// NOT NULL, but checkText and rowValues never make one, and a row neither
// stored nor found fails its batch over to one event a transaction all the
// same. The payloads follow in a second statement (insertPayloadsSQL), in
// the same transaction.
//
// PostgreSQL says ON CONFLICT DO NOTHING, and stores the payloads in the
// same statement (a data-modifying WITH), so that a batch is still one
// statement — one round trip, atomic without BEGIN and COMMIT. The rows'
// values come first, then each row's source, delivery id and payload: the
// payloads are joined to the rows stored by (source, delivery_id), which a
// batch never repeats (insertBatch sends the first of a delivery only).
func (d *dialect) insertSQL(n int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(insertColumns)), ", ") + ")"
	if d.name == "postgres" {
		rows := strings.TrimSuffix(strings.Repeat(one+", ", n), ", ")
		pay := strings.TrimSuffix(strings.Repeat("(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BYTEA)), ", n), ", ")
		return `WITH e AS (INSERT INTO orchestrator_webhook_events (` + strings.Join(insertColumns, ", ") + `) VALUES ` + rows + `
		ON CONFLICT DO NOTHING RETURNING id, source, delivery_id),
	p AS (INSERT INTO orchestrator_event_payloads (event_id, payload)
		SELECT e.id, v.payload FROM e JOIN (VALUES ` + pay + `) AS v (source, delivery_id, payload)
			ON v.source = e.source AND v.delivery_id = e.delivery_id WHERE v.payload IS NOT NULL)
SELECT id, source, delivery_id FROM e`
	}
	return `INSERT OR IGNORE INTO orchestrator_webhook_events (` + strings.Join(insertColumns, ", ") + `) VALUES ` +
		strings.TrimSuffix(strings.Repeat(one+", ", n), ", ") + ` RETURNING id, source, delivery_id`
}

// insertPayloadsSQL stores n payloads on SQLite, after their events'
// insert in the same transaction. OR REPLACE: SQLite may give a new event
// the id of the newest event once that is deleted, and whatever payload
// is found under it is not this event's.
func insertPayloadsSQL(n int) string {
	return `INSERT OR REPLACE INTO orchestrator_event_payloads (event_id, payload) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ")
}

const findEventSQL = `SELECT id, legacy_id FROM orchestrator_webhook_events WHERE source = ? AND delivery_id = ?`

// replaySource is the source whose bodies are unique (its signature covers
// the body alone); ux_webhook_events_replay indexes them.
const replaySource = "github"

// findReplaySQL names the source literally so that both databases use the
// partial index.
const findReplaySQL = `SELECT id, legacy_id FROM orchestrator_webhook_events WHERE source = 'github' AND body_sha256 = ?`

// oneStatement is the largest batch one insert statement holds: what a few
// dozen concurrent senders make.
const oneStatement = 32

// chunkSizes are the statement sizes a batch is cut into (largest first):
// every size up to oneStatement, so that such a batch is one statement —
// and, settling nothing, needs no transaction of its own (insertBatch) —
// then 64, 128 and 256. Only these 35 statements are ever prepared.
var chunkSizes = func() []int {
	sizes := []int{256, 128, 64}
	for n := oneStatement; n >= 1; n-- {
		sizes = append(sizes, n)
	}
	return sizes
}()

// eventStmts are the group commit's statements, prepared once: preparing
// per event cost more than the insert itself.
type eventStmts struct {
	// insert stores n events (insertSQL); payloads stores n payloads
	// (insertPayloadsSQL, SQLite only).
	insert, payloads map[int]*sql.Stmt
	find, replay     *sql.Stmt
	// A resolve's settling (store/noise.go).
	settleFirings, settleKept, alertHanded, settleResolve *sql.Stmt
}

// deliveryKey is what makes an event a redelivery of another.
type deliveryKey struct{ source, delivery string }

// rowValues are an event's insertColumns and its stored payload, computed
// by the caller's goroutine (the payload's compression among them), not
// the writer's.
func (e Event) rowValues() ([]any, []byte) {
	at := ms(e.ReceivedAt)
	var finished, sum any
	var next any = at
	if e.Status != EventQueued {
		finished, next = at, nil
	} else if e.HoldUntil.After(e.ReceivedAt) {
		next = ms(e.HoldUntil)
	}
	if b, err := hex.DecodeString(e.BodySHA256); err == nil && len(b) == sha256.Size {
		sum = b
	}
	return []any{e.Source, e.DeliveryID, e.EventType, e.Status, identifiersText(e.Identifiers), next, nullIfEmpty(e.LastError),
		at, at, finished, nullIfEmpty(e.OrgID), nullIfEmpty(e.TeamNodeID),
		nullIfEmpty(e.MatchedBy), sum, nullIfEmpty(e.AlertKey), nullIfEmpty(e.AlertState), nullIfEmpty(e.AlertSig), traceValue(e.Trace), nullIfEmpty(e.AlertLabels)}, encodePayload(e.Headers, e.Body)
}

// InsertResult is the outcome of InsertEvent.
type InsertResult struct {
	ID        string
	Duplicate bool
	// Settled, for a resolve, is how many waiting firing events of its
	// alert it settled (SPEC §6 Noise); the resolve itself is then
	// suppressed too unless a firing of the alert reached the agent.
	Settled int
	// Suppressed: the stored event was settled at once (a resolve whose
	// firing never reached the agent).
	Suppressed bool
}

type insertReq struct {
	ev      Event
	vals    []any
	payload []byte // nil: none
	done    chan insertDone
}

type insertDone struct {
	res InsertResult
	err error
}

// maxBatch bounds one group commit.
const maxBatch = 256

// InsertEvent stores a new event durably — it returns only after the
// transaction holding it has committed (and, with synchronous=FULL, been
// fsynced) — or reports a duplicate of (source, delivery id). Concurrent
// calls are batched into one transaction by a single writer goroutine, so
// that durability costs one fsync per batch, not per event.
func (db *DB) InsertEvent(ctx context.Context, e Event) (InsertResult, error) {
	if e.Source == "" || e.DeliveryID == "" || e.Status == "" {
		return InsertResult{}, fmt.Errorf("%w: event needs source, delivery id and status", ErrInvalid)
	}
	if err := e.checkText(); err != nil {
		return InsertResult{}, err
	}
	req := insertReq{ev: e, done: make(chan insertDone, 1)}
	req.vals, req.payload = e.rowValues()
	select {
	case db.inserts <- req:
	case <-db.closing:
		return InsertResult{}, errors.New("store: closed")
	case <-ctx.Done():
		return InsertResult{}, ctx.Err()
	}
	select {
	case d := <-req.done:
		return d.res, d.err
	case <-db.committerDone:
		select {
		case d := <-req.done:
			return d.res, d.err
		default:
			return InsertResult{}, errors.New("store: closed")
		}
	case <-ctx.Done():
		// The event may still be committed; a vendor retry is then a duplicate.
		return InsertResult{}, ctx.Err()
	}
}

// groupCommit is the single writer of new events.
func (db *DB) groupCommit() {
	defer close(db.committerDone)
	for {
		var batch []insertReq
		select {
		case r := <-db.inserts:
			batch = append(batch, r)
		case <-db.closing:
			// Commit what was handed over before the close.
			for {
				select {
				case r := <-db.inserts:
					db.commitBatch([]insertReq{r})
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-db.inserts:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commitBatch(batch)
	}
}

// commitBatch commits a batch in one transaction. If the database refuses
// one row — on PostgreSQL that aborts the whole transaction — each event is
// committed again on its own, so the refused one fails alone and the others
// are stored (SPEC §18).
func (db *DB) commitBatch(batch []insertReq) {
	// On SQLite no deadline: modernc watches a cancellable context with a
	// goroutine per statement, and waking them cost the writer 5% of its
	// CPU. What could make a statement wait there — the write lock — is
	// bounded by busy_timeout, and a disk that stops answering no context
	// can interrupt. PostgreSQL is across a network: 30 s.
	ctx := context.Background()
	if db.d.name == "postgres" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	results, rowFailed, err := db.insertBatch(ctx, batch)
	switch {
	case err == nil:
	case rowFailed && len(batch) > 1:
		for i := range batch {
			one, _, err := db.insertBatch(ctx, batch[i:i+1])
			results[i] = one[0]
			if err != nil {
				results[i] = insertDone{err: fmt.Errorf("store: commit event: %w", err)}
			}
		}
	default:
		for i := range results {
			results[i] = insertDone{err: fmt.Errorf("store: commit events: %w", err)}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
	db.batches.Add(1)
}

// insertBatch inserts the events in one transaction, a few multi-row
// statements for the whole batch. It stops at the first statement the
// database refuses (rowFailed) and then commits nothing.
func (db *DB) insertBatch(ctx context.Context, batch []insertReq) (results []insertDone, rowFailed bool, err error) {
	results = make([]insertDone, len(batch))
	if db.stmts.insert == nil {
		if err := db.prepareInserts(ctx); err != nil {
			return results, false, err
		}
	}
	// Only the first of a delivery is sent: the others are its duplicates
	// whatever happens to it, and PostgreSQL's statement pairs payloads
	// with rows by delivery.
	firsts := make([]insertReq, 0, len(batch))
	seen := make(map[deliveryKey]bool, len(batch))
	withPayload := false
	for _, r := range batch {
		if k := (deliveryKey{r.ev.Source, r.ev.DeliveryID}); !seen[k] {
			seen[k] = true
			firsts = append(firsts, r)
			withPayload = withPayload || r.payload != nil
		}
	}
	// A batch that one statement holds and that settles nothing needs no
	// transaction of its own: the statement is one — all its rows or none,
	// committed (and fsynced) when it completes — which spares a BEGIN and
	// a COMMIT: on PostgreSQL two network round trips of three. On SQLite
	// the payloads are a second statement, so a batch with any is a
	// transaction (BEGIN and COMMIT cost no round trip there).
	single := len(firsts) <= oneStatement && !settles(batch) && (db.d.name == "postgres" || !withPayload)
	use := func(s *sql.Stmt) *sql.Stmt { return s }
	var t tx
	if !single {
		if t, err = db.write.BeginTx(ctx, nil); err != nil {
			return results, false, err
		}
		defer t.Rollback()
		use = func(s *sql.Stmt) *sql.Stmt { return t.StmtContext(ctx, s) }
		var refs []AlertRef
		for _, r := range batch {
			if settling(r.ev) {
				refs = append(refs, r.ev.alertRef())
			}
		}
		if err := db.lockAlerts(ctx, t, refs); err != nil {
			return results, false, err
		}
	}
	stored := make(map[deliveryKey]int64, len(batch))
	rest := firsts
	for _, n := range chunkSizes {
		for len(rest) >= n {
			args := make([]any, 0, n*(len(insertColumns)+3))
			for _, r := range rest[:n] {
				args = append(args, r.vals...)
			}
			if db.d.name == "postgres" {
				for _, r := range rest[:n] {
					args = append(args, r.ev.Source, r.ev.DeliveryID, r.payload)
				}
			}
			rows, err := use(db.stmts.insert[n]).QueryContext(ctx, args...)
			if err != nil {
				return results, true, err
			}
			for rows.Next() {
				var id int64
				var k deliveryKey
				if err := rows.Scan(&id, &k.source, &k.delivery); err != nil {
					rows.Close()
					return results, true, err
				}
				stored[k] = id
			}
			if err := rows.Close(); err != nil {
				return results, true, err
			}
			if err := rows.Err(); err != nil {
				return results, true, err
			}
			rest = rest[n:]
		}
	}
	if db.d.name != "postgres" && withPayload {
		if err := db.insertPayloads(ctx, use, firsts, stored); err != nil {
			return results, true, err
		}
	}
	// The first of the batch with a delivery that was stored is new; the
	// others, and those the database skipped, are duplicates of the row
	// already there.
	for i, r := range batch {
		k := deliveryKey{r.ev.Source, r.ev.DeliveryID}
		if id, ok := stored[k]; ok {
			results[i] = insertDone{res: InsertResult{ID: strconv.FormatInt(id, 10)}}
			delete(stored, k)
			continue
		}
		id, err := db.existing(ctx, use, r.ev)
		switch {
		case err != nil && single:
			// The others are committed: this one fails alone.
			results[i] = insertDone{err: fmt.Errorf("store: commit event: %w", err)}
			continue
		case err != nil:
			return results, true, err
		}
		results[i] = insertDone{res: InsertResult{ID: id, Duplicate: true}}
	}
	if single {
		return results, false, nil
	}
	// A resolve settles its alert's waiting firing events in the same
	// transaction: once it is acknowledged, none of them can be claimed.
	for i, r := range batch {
		if !settling(r.ev) || results[i].res.Duplicate {
			continue
		}
		key, _ := strconv.ParseInt(results[i].res.ID, 10, 64)
		settled, suppressed, err := settle(ctx, alertStatements{t: t, prepared: &db.stmts}, key, r.ev.alertRef(), r.ev.ReceivedAt)
		if err != nil {
			return results, false, err
		}
		results[i].res.Settled, results[i].res.Suppressed = settled, suppressed
	}
	return results, false, t.Commit()
}

// settling reports whether storing e settles its alert's waiting events:
// a resolve whose team is known when it is stored (its route was cached).
// An alert is its team's (SPEC §18, round 4): a resolve not yet routed
// settles when the router gives it its team (RecordRoutes).
func settling(e Event) bool {
	return e.AlertState == AlertStateResolved && e.AlertKey != "" && e.OrgID != "" && e.TeamNodeID != "" && !e.Solo
}

// alertRef names the alert of a routed event.
func (e Event) alertRef() AlertRef {
	return AlertRef{OrgID: e.OrgID, TeamNodeID: e.TeamNodeID, Source: e.Source, Key: e.AlertKey}
}

// prepareInserts prepares the group commit's statements, once: preparing
// per event cost more than the insert itself.
func (db *DB) prepareInserts(ctx context.Context) error {
	var err error
	st := eventStmts{insert: map[int]*sql.Stmt{}, payloads: map[int]*sql.Stmt{}}
	for _, n := range chunkSizes {
		if st.insert[n], err = db.write.PrepareContext(ctx, db.d.insertSQL(n)); err != nil {
			return err
		}
		if db.d.name != "postgres" {
			if st.payloads[n], err = db.write.PrepareContext(ctx, insertPayloadsSQL(n)); err != nil {
				return err
			}
		}
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{{&st.find, findEventSQL}, {&st.replay, findReplaySQL},
		{&st.settleFirings, settleFiringsSQL}, {&st.settleKept, settleKeptSQL}, {&st.alertHanded, alertHandedSQL}, {&st.settleResolve, settleResolveSQL}} {
		if *p.dst, err = db.write.PrepareContext(ctx, p.q); err != nil {
			return err
		}
	}
	db.stmts = st
	return nil
}

// insertPayloads stores, on SQLite, the payloads of the events of firsts
// that were stored (their ids in stored), in id order.
func (db *DB) insertPayloads(ctx context.Context, use func(*sql.Stmt) *sql.Stmt, firsts []insertReq, stored map[deliveryKey]int64) error {
	type row struct {
		id      int64
		payload []byte
	}
	rows := make([]row, 0, len(firsts))
	for _, r := range firsts {
		if id, ok := stored[deliveryKey{r.ev.Source, r.ev.DeliveryID}]; ok && r.payload != nil {
			rows = append(rows, row{id, r.payload})
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.id, b.id) })
	for _, n := range chunkSizes {
		for len(rows) >= n {
			args := make([]any, 0, 2*n)
			for _, r := range rows[:n] {
				args = append(args, r.id, r.payload)
			}
			if _, err := use(db.stmts.payloads[n]).ExecContext(ctx, args...); err != nil {
				return err
			}
			rows = rows[n:]
		}
	}
	return nil
}

// settles reports whether any event of the batch is settling.
func settles(batch []insertReq) bool {
	for _, r := range batch {
		if settling(r.ev) {
			return true
		}
	}
	return false
}

// existing names the stored event a skipped one duplicates: the same
// delivery, or for GitHub the same body.
func (db *DB) existing(ctx context.Context, use func(*sql.Stmt) *sql.Stmt, e Event) (string, error) {
	scan := func(row *sql.Row) (string, error) {
		var key int64
		var legacy sql.NullString
		err := row.Scan(&key, &legacy)
		return apiID(key, legacy), err
	}
	id, err := scan(use(db.stmts.find).QueryRowContext(ctx, e.Source, e.DeliveryID))
	if errors.Is(err, sql.ErrNoRows) && e.Source == replaySource {
		if sum, herr := hex.DecodeString(e.BodySHA256); herr == nil {
			id, err = scan(use(db.stmts.replay).QueryRowContext(ctx, sum))
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: event %s/%s was neither stored nor found", e.Source, e.DeliveryID)
	}
	return id, err
}

// checkText refuses what the databases would refuse or mangle (SPEC §18:
// text is valid UTF-8 without NUL, within its column's length in
// characters), so a bad value never reaches a batch.
func (e Event) checkText() error {
	bad := func(s string) bool { return !utf8.ValidString(s) || strings.ContainsRune(s, 0) }
	if e.BodySHA256 != "" {
		if b, err := hex.DecodeString(e.BodySHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%w: body_sha256 is not a hex SHA-256", ErrInvalid)
		}
	}
	for _, s := range []string{e.Source, e.DeliveryID, e.EventType, e.Status, e.OrgID, e.TeamNodeID, e.MatchedBy, e.LastError,
		e.AlertKey, e.AlertState, e.AlertSig, e.AlertLabels} {
		if bad(s) {
			return fmt.Errorf("%w: event text is not valid UTF-8 without NUL", ErrInvalid)
		}
	}
	for _, c := range []struct {
		s string
		n int
	}{{e.Source, 32}, {e.DeliveryID, 255}, {e.EventType, 128}, {e.Status, 32}, {e.OrgID, 128}, {e.TeamNodeID, 128},
		{e.MatchedBy, 64}, {e.AlertKey, 255}, {e.AlertState, 16}, {e.AlertSig, 32}, {e.AlertLabels, MaxAlertLabels}} {
		if utf8.RuneCountInString(c.s) > c.n {
			return fmt.Errorf("%w: %q is longer than its column (%d characters)", ErrInvalid, c.s[:min(len(c.s), 40)], c.n)
		}
	}
	for _, m := range []map[string]string{e.Identifiers, e.Headers} {
		for k, v := range m {
			if bad(k) || bad(v) {
				return fmt.Errorf("%w: event identifiers or headers are not valid UTF-8 without NUL", ErrInvalid)
			}
		}
	}
	return nil
}

// CommitBatches is how many group commits have run (for benchmarks).
func (db *DB) CommitBatches() int64 { return db.batches.Load() }
