package dispatch

import (
	"context"

	"github.com/incidentfox/orchestrator-edge/store"
)

// completion is what one agent call (or one noise decision) leaves to
// record: its events' outcomes, its agent-run row, and its answer's
// deliveries. The completer writes them in batches (SPEC §6 Storms), in
// one transaction each, so that dispatch bookkeeping never keeps the single
// writer from ingest for long; an answer's deliveries ride in the same
// transaction as its run, one row each. Until a flush, the events stay
// dispatching; a crash before it returns them to the queue at the next
// start.
type completion struct {
	outs       []store.Outcome
	run        *store.AgentRun
	deliveries []store.AnswerDelivery
}

// weight counts a completion toward FlushAt by its outcomes, as the
// completer always has.
func (c completion) weight() int { return len(c.outs) }

// record writes a batch of completions in one transaction.
func (d *Dispatcher) record(ctx context.Context, batch []completion) error {
	var outs []store.Outcome
	var runs []store.AgentRun
	var deliveries []store.AnswerDelivery
	for _, c := range batch {
		outs = append(outs, c.outs...)
		if c.run != nil {
			runs = append(runs, *c.run)
		}
		deliveries = append(deliveries, c.deliveries...)
	}
	return d.o.Store.RecordOutcomes(ctx, outs, runs, deliveries)
}

// recorded hands the answers' deliveries, now durable, to the outbox: it
// posts those this process claimed when it recorded them.
func (d *Dispatcher) recorded(batch []completion) {
	if d.o.Outbox == nil {
		return
	}
	for _, c := range batch {
		if c.run != nil && len(c.deliveries) > 0 {
			d.o.Outbox.Hand(*c.run, c.deliveries)
		}
	}
}
