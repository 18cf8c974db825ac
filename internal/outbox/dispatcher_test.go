package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/outbox"
	"github.com/parley-im/parley/internal/testkit"
)

// flakySink refuses the events whose body is "poison" and records the
// others.
type flakySink struct {
	mu  sync.Mutex
	got []outbox.Event
}

func (s *flakySink) Name() string { return "flaky" }

func (s *flakySink) Deliver(_ context.Context, evs []outbox.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ev := range evs {
		var d struct{ Body string }
		json.Unmarshal(ev.Data, &d)
		if d.Body == "poison" {
			return i, errors.New("refused")
		}
		s.got = append(s.got, ev)
	}
	return len(evs), nil
}

func (s *flakySink) bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ev := range s.got {
		var d struct{ Body string }
		json.Unmarshal(ev.Data, &d)
		out = append(out, d.Body)
	}
	return out
}

// TestDispatcherDeadLetter: an event that keeps failing is retried with
// backoff, dead-lettered after DeadAfter (counted), and the events after it
// are delivered in order; the position is saved, so a new dispatcher goes
// on from there.
func TestDispatcherDeadLetter(t *testing.T) {
	s := testkit.OpenSQLite(t)
	ob := s.(history.Outboxer)
	ctx := context.Background()
	for _, body := range []string{`"one"`, `"poison"`, `"two"`, `"three"`} {
		nm := history.NewMessage{Conv: history.DirectConvID("alice", "bob"), ID: history.NewID(time.Now()), From: "alice",
			TS: time.Now(), Type: history.TypeText, Body: json.RawMessage(body)}
		if _, _, err := s.Append(ctx, nm); err != nil {
			t.Fatal(err)
		}
	}
	sink := &flakySink{}
	m := outbox.NewMetrics(prometheus.NewRegistry())
	d := &outbox.Dispatcher{Store: ob, Sink: sink, Poll: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond, DeadAfter: 300 * time.Millisecond, Metrics: m, Log: testkit.Logger()}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(runCtx); close(done) }()
	head, _ := ob.OutboxHead(ctx)
	testkit.Eventually(t, 10*time.Second, func() bool {
		pos, _, _ := ob.SinkPosition(ctx, "flaky")
		return len(sink.bodies()) == 3 && pos == head
	})
	cancel()
	<-done
	if got := sink.bodies(); got[0] != "one" || got[1] != "two" || got[2] != "three" {
		t.Fatalf("delivered %v", got)
	}
	if n := testutil.ToFloat64(m.DeadLetters.WithLabelValues("flaky")); n != 1 {
		t.Fatalf("dead letters %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.Failures.WithLabelValues("flaky")); n < 2 {
		t.Fatalf("failures %v, want retries before the dead letter", n)
	}
	if pos, ok, err := ob.SinkPosition(ctx, "flaky"); err != nil || !ok || pos != head {
		t.Fatalf("saved position %d (%v, %v), want the head %d", pos, ok, err, head)
	}
	// Pruning: everything the only sink consumed goes.
	n, err := (&outbox.Pruner{Store: ob, Sinks: []string{"flaky"}}).Prune(ctx)
	if err != nil || n != 4 {
		t.Fatalf("pruned %d (%v), want 4", n, err)
	}
	if rest, _ := ob.Outbox(ctx, 0, 10); len(rest) != 0 {
		t.Fatalf("outbox after pruning: %d events", len(rest))
	}
}
