package outbox

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/defaults"
	"github.com/parley-im/parley/internal/wire"
)

// Defaults of a Dispatcher.
const (
	DefaultBatch      = 100
	DefaultPoll       = 200 * time.Millisecond
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultDeadAfter  = 24 * time.Hour
)

// Dispatcher feeds one sink from the outbox: it reads events after the
// sink's saved position, hands them to the sink in order and saves the new
// position after each delivery. A failed delivery is retried with
// exponential backoff and jitter; an event that keeps failing for DeadAfter
// is dead-lettered (logged, counted and skipped). In cluster mode (Leaser
// set) one node at a time serves the sink.
type Dispatcher struct {
	Store history.Outboxer
	Sink  Sink
	// Leaser, when set, elects the node that serves the sink.
	Leaser history.Leaser
	// Batch bounds the events read and delivered at once; default
	// DefaultBatch.
	Batch int
	// Poll is how often the outbox is read while idle; default
	// DefaultPoll.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed delivery;
	// DeadAfter is how long an event may keep failing before it is
	// dead-lettered.
	MinBackoff, MaxBackoff, DeadAfter time.Duration
	Metrics                           *Metrics
	Log                               *slog.Logger
}

func (d *Dispatcher) init() {
	defaults.Positive(&d.Batch, DefaultBatch)
	defaults.Positive(&d.Poll, DefaultPoll)
	defaults.Positive(&d.MinBackoff, DefaultMinBackoff)
	defaults.Positive(&d.MaxBackoff, DefaultMaxBackoff)
	defaults.Positive(&d.DeadAfter, DefaultDeadAfter)
	if d.Log == nil {
		d.Log = slog.Default()
	}
	d.Log = d.Log.With("sink", d.Sink.Name())
}

// Run serves the sink until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) {
	d.init()
	for ctx.Err() == nil {
		if d.Leaser == nil {
			d.serve(ctx, nil)
			return
		}
		ok, lost, release, err := d.Leaser.TryLead(ctx, "parley-sink:"+d.Sink.Name())
		if err != nil {
			d.Log.Warn("outbox: elect the node that serves the sink", "error", err)
		}
		if !ok {
			sleep(ctx, nil, time.Second+rand.N(time.Second))
			continue
		}
		d.Log.Info("outbox: this node serves the sink")
		d.serve(ctx, lost)
		release()
	}
}

// serve delivers until ctx is done or lost is closed.
func (d *Dispatcher) serve(ctx context.Context, lost <-chan struct{}) {
	var pos int64
	for {
		p, _, err := d.Store.SinkPosition(ctx, d.Sink.Name())
		if err == nil {
			pos = p
			break
		}
		d.Log.Warn("outbox: read the sink's position", "error", err)
		if !sleep(ctx, lost, d.Poll*5) {
			return
		}
	}
	backoff := d.MinBackoff
	var failing int64   // the position of the event that fails, 0 when none does
	var since time.Time // when it first failed
	for {
		rows, err := d.Store.Outbox(ctx, pos, d.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.Log.Warn("outbox: read events", "error", err)
			if !sleep(ctx, lost, d.Poll*5) {
				return
			}
			continue
		}
		d.Metrics.lag(d.Sink.Name(), d.Store, ctx, pos, rows)
		if len(rows) == 0 {
			if !sleep(ctx, lost, d.Poll) {
				return
			}
			continue
		}
		evs, at := Events(rows)
		n, err := 0, error(nil)
		if len(evs) > 0 {
			n, err = d.Sink.Deliver(ctx, evs)
		}
		if ctx.Err() != nil {
			// Shutting down: keep what was delivered, so that a restart
			// does not deliver it again.
			if n > 0 {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				d.Store.SaveSinkPosition(sctx, d.Sink.Name(), at[n-1])
				cancel()
			}
			return
		}
		next := pos
		switch {
		case err == nil:
			next = rows[len(rows)-1].Pos // rows without an event too
		case n > 0:
			next = at[n-1]
		}
		d.Metrics.delivered(d.Sink.Name(), n)
		if err == nil || n > 0 {
			failing, backoff = 0, d.MinBackoff
		}
		if err != nil {
			d.Metrics.failed(d.Sink.Name())
			if failing != at[n] {
				failing, since = at[n], time.Now()
			}
			if time.Since(since) >= d.DeadAfter {
				d.Log.Error("outbox: event dead-lettered after failing too long", "id", evs[n].ID, "type", evs[n].Type,
					"conv", evs[n].Conv, "seq", evs[n].Seq, "since", since, "error", err)
				d.Metrics.dead(d.Sink.Name())
				next, failing, backoff = at[n], 0, d.MinBackoff
			} else {
				d.Log.Warn("outbox: delivery failed, will retry", "id", evs[n].ID, "retry_in", backoff, "error", err)
			}
		}
		if next != pos {
			if err := d.Store.SaveSinkPosition(ctx, d.Sink.Name(), next); err != nil {
				d.Log.Warn("outbox: save the sink's position", "error", err)
			}
			pos = next
		}
		if err != nil && failing != 0 {
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, d.MaxBackoff)
			if !sleep(ctx, lost, wait) {
				return
			}
		}
	}
}

// sleep waits d; false when ctx ended or lost was closed first.
func sleep(ctx context.Context, lost <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-lost:
		return false
	}
}

// Events turns outbox rows into the events sinks receive, with the outbox
// position of each; rows whose message is gone yield none.
func Events(rows []history.OutboxEvent) (evs []Event, at []int64) {
	for _, r := range rows {
		ev, ok := FromRow(r)
		if !ok {
			continue
		}
		evs = append(evs, ev)
		at = append(at, r.Pos)
	}
	return evs, at
}

// FromRow returns the event of an outbox row: for a message, the type of
// its change (message.created for a plain message) and the message as
// inbox deliveries carry it; for a read marker {"conv","user","seq"}.
func FromRow(r history.OutboxEvent) (Event, bool) {
	ev := Event{ID: r.ID, TS: r.TS.UTC(), Conv: r.Conv, Seq: r.Seq}
	switch r.Kind {
	case history.OutboxRead:
		ev.Type = TypeRead
		ev.Data, _ = json.Marshal(wire.Receipt{Kind: "read", Conv: r.Conv, User: r.User, Seq: r.Seq})
		return ev, true
	case history.OutboxMessage:
		if r.Message == nil {
			return ev, false
		}
		ev.Type = r.Message.Type
		if !history.IsEvent(ev.Type) {
			ev.Type = TypeMessageCreated
		}
		ev.TS = r.Message.TS.UTC()
		ev.Data = wire.MessageDelivery(*r.Message)
		return ev, true
	}
	return ev, false
}
