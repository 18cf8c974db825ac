package send_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/send"
)

// gatedStore holds its first AppendBatch until release is closed, so that the
// sends queued meanwhile share the next group commit, and records every call.
type gatedStore struct {
	history.Store
	release chan struct{}
	refuse  func([]history.NewMessage) error // nil: pass every batch through

	mu      sync.Mutex
	calls   int
	batches [][]string // the cids of each call after the first
	errs    []error
}

func (g *gatedStore) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	g.mu.Lock()
	g.calls++
	first := g.calls == 1
	g.mu.Unlock()
	if first {
		<-g.release
	}
	var rs []history.AppendResult
	var err error
	if g.refuse != nil {
		err = g.refuse(ms)
	}
	if err == nil {
		rs, err = g.Store.AppendBatch(ctx, ms)
	}
	if !first {
		cids := make([]string, len(ms))
		for i, m := range ms {
			cids[i] = m.CID
		}
		g.mu.Lock()
		g.batches, g.errs = append(g.batches, cids), append(g.errs, err)
		g.mu.Unlock()
	}
	return rs, err
}

// commitTogether appends a gate message, then ms concurrently while the gate's
// commit is held, so that ms share one batch; it returns their results.
func commitTogether(t *testing.T, g *gatedStore, ms []history.NewMessage) ([]history.AppendResult, *send.Committer) {
	t.Helper()
	c := &send.Committer{Store: g}
	t.Cleanup(c.Close)
	ctx := context.Background()
	gate := make(chan error, 1)
	go func() {
		_, _, err := c.Append(ctx, history.NewMessage{Conv: "dm:gate:keeper", ID: history.NewID(time.Now()), CID: "gate",
			From: "gate", TS: time.Now(), Type: "text", Body: []byte(`1`)}, nil)
		gate <- err
	}()
	for {
		g.mu.Lock()
		n := g.calls
		g.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	results := make([]history.AppendResult, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var delivered []history.AppendResult
			msg, created, err := c.Append(ctx, m, func(r history.AppendResult) { delivered = append(delivered, r) })
			results[i] = history.AppendResult{Message: msg, Created: created, Err: err}
			if err == nil && len(delivered) != 1 {
				t.Errorf("%s: stored but delivered %d times", m.CID, len(delivered))
			}
			if err != nil && len(delivered) != 0 {
				t.Errorf("%s: failed (%v) but delivered", m.CID, err)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // every Append above is queued behind the gate
	close(g.release)
	wg.Wait()
	if err := <-gate; err != nil && g.refuse == nil {
		t.Fatalf("gate message: %v", err)
	}
	return results, c
}

func messages(from, to string, cids ...string) []history.NewMessage {
	ms := make([]history.NewMessage, len(cids))
	for i, cid := range cids {
		ms[i] = history.NewMessage{Conv: history.DirectConvID(from, to), ID: history.NewID(time.Now()), CID: cid,
			From: from, TS: time.Now(), Type: "text", Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return ms
}

// TestCommitterIsolatesRefusedRow bypasses ParseSendPayload: a message with
// U+0000 in its cid and type reaches a real PostgreSQL in one group commit
// with others. PostgreSQL refuses the whole transaction (SQLSTATE 22021); the
// committer retries the rest without it, so only that message fails, with
// history.EINVALID, and the others are stored in order.
func TestCommitterIsolatesRefusedRow(t *testing.T) {
	store, err := postgres.Open(context.Background(), pgtest.DB(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	g := &gatedStore{Store: store, release: make(chan struct{})}
	ms := messages("alice", "bob", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8")
	const bad = 5
	ms[bad].CID, ms[bad].Type = "a\x00b", "x\x00"
	results, _ := commitTogether(t, g, ms)

	for i, r := range results {
		switch {
		case i == bad && history.ErrorCode(r.Err) != history.EINVALID:
			t.Errorf("message with U+0000: err %v, want code %s", r.Err, history.EINVALID)
		case i != bad && (r.Err != nil || !r.Created):
			t.Errorf("%s: err %v, created %v; want stored", ms[i].CID, r.Err, r.Created)
		}
	}
	stored, err := store.Messages(context.Background(), "dm:alice:bob", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(ms)-1 {
		t.Fatalf("stored %d messages, want %d", len(stored), len(ms)-1)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.batches) == 0 || len(g.batches[0]) != len(ms) || history.ErrorCode(g.errs[0]) != history.EINVALID {
		t.Fatalf("first group commit after the gate = %q (%v); want all %d messages refused with %s",
			g.batches, g.errs, len(ms), history.EINVALID)
	}
	var want []string // the order in which the sends were queued
	for _, cid := range g.batches[0] {
		if cid != ms[bad].CID {
			want = append(want, cid)
		}
	}
	for i, m := range stored {
		if m.CID != want[i] || m.Seq != int64(i+1) {
			t.Fatalf("stored[%d] = cid %q seq %d, want cid %q seq %d (queue order)", i, m.CID, m.Seq, want[i], i+1)
		}
	}
	if n := len(g.batches); n > 2*len(ms) {
		t.Errorf("%d transactions to isolate one message of %d", n, len(ms))
	}
}

// TestCommitterOutageFailsWholeBatch: an error that is not about a value (the
// store is unreachable) fails every message of the batch at once, without
// retrying parts of it, so the senders retry (and v3 ones are disconnected)
// as before.
func TestCommitterOutageFailsWholeBatch(t *testing.T) {
	store, err := sqlite.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	outage := errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	g := &gatedStore{Store: store, release: make(chan struct{}), refuse: func([]history.NewMessage) error { return outage }}
	ms := messages("alice", "bob", "a0", "a1", "a2", "a3")
	results, _ := commitTogether(t, g, ms)
	for i, r := range results {
		if !errors.Is(r.Err, outage) {
			t.Errorf("%s: err %v, want the outage", ms[i].CID, r.Err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.batches) != 1 || len(g.batches[0]) != len(ms) {
		t.Fatalf("group commits after the gate = %q, want one of all %d messages", g.batches, len(ms))
	}
}
