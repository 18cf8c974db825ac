package send

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

// gatedStore is a real store that holds its first AppendBatch until release
// is closed, so that the sends queued meanwhile share the next group commit,
// and records every call.
type gatedStore struct {
	history.Store
	release chan struct{}
	refuse  func([]history.NewMessage) error // nil: pass every batch through

	mu      sync.Mutex
	calls   int
	batches [][]string // the cids of each call after the first
	errs    []error
}

func newGatedStore(s history.Store) *gatedStore {
	return &gatedStore{Store: s, release: make(chan struct{})}
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

// held reports whether the first AppendBatch has begun, and so holds the
// commits behind it until release is closed.
func (g *gatedStore) held() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.calls > 0 }

// commitTogether appends a gate message, then ms concurrently while the gate's
// commit is held, so that ms share one batch; it returns their results.
func commitTogether(t *testing.T, g *gatedStore, ms []history.NewMessage) ([]history.AppendResult, *Committer) {
	t.Helper()
	c := &Committer{Store: g}
	t.Cleanup(c.Close)
	ctx := context.Background()
	gate := make(chan error, 1)
	go func() {
		_, _, err := c.Append(ctx, history.NewMessage{Conv: "dm:gate:keeper", ID: history.NewID(time.Now()), CID: "gate",
			From: "gate", TS: time.Now(), Type: "text", Body: []byte(`1`)}, nil)
		gate <- err
	}()
	testkit.Eventually(t, 10*time.Second, g.held)
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
	store := testkit.OpenPostgres(t, pgtest.DB(t))
	g := newGatedStore(store)
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
	outage := errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	g := newGatedStore(testkit.OpenSQLite(t))
	g.refuse = func([]history.NewMessage) error { return outage }
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

func newMessage(conv, cid string) history.NewMessage {
	now := time.Now()
	return history.NewMessage{Conv: conv, ID: history.NewID(now), CID: cid, From: "alice", TS: now, Type: "text", Body: []byte(`"x"`)}
}

// TestCommitterCloseRace: Append and Do racing with Close either complete or
// return ErrCommitterClosed; none hangs, and everything that completed is
// stored. After Close they fail at once.
func TestCommitterCloseRace(t *testing.T) {
	for round := 0; round < 20; round++ {
		s := testkit.OpenSQLite(t)
		c := &Committer{Store: s, Partitions: 2, MaxBatch: 4}
		var wg sync.WaitGroup
		var mu sync.Mutex
		stored := map[[2]string]bool{}
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				conv := fmt.Sprintf("dm:alice:u%d", i%3)
				cid := fmt.Sprintf("r%d-%d", round, i)
				var err error
				if i%4 == 3 {
					err = c.Do(context.Background(), conv, func() {})
				} else {
					_, _, err = c.Append(context.Background(), newMessage(conv, cid), nil)
					if err == nil {
						mu.Lock()
						stored[[2]string{conv, cid}] = true
						mu.Unlock()
					}
				}
				if err != nil && !errors.Is(err, ErrCommitterClosed) {
					t.Errorf("send %d: %v", i, err)
				}
			}(i)
		}
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Append or Do hangs after Close", round)
		}
		<-closed
		for k := range stored {
			conv, cid := k[0], k[1]
			ms, err := s.Messages(context.Background(), conv, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range ms {
				found = found || m.CID == cid
			}
			if !found {
				t.Fatalf("round %d: %s acknowledged but not stored", round, k)
			}
		}
		if _, _, err := c.Append(context.Background(), newMessage("dm:alice:bob", "late"), nil); !errors.Is(err, ErrCommitterClosed) {
			t.Fatalf("Append after Close: %v, want ErrCommitterClosed", err)
		}
		if err := c.Do(context.Background(), "dm:alice:bob", func() {}); !errors.Is(err, ErrCommitterClosed) {
			t.Fatalf("Do after Close: %v, want ErrCommitterClosed", err)
		}
		c.Close() // twice is fine
	}
}

// heldCommitter returns a committer on a gated store that holds its first commit,
// the message "gate" of dm:alice:bob, until g.release is closed.
func heldCommitter(t *testing.T) (*Committer, *gatedStore) {
	t.Helper()
	g := newGatedStore(testkit.OpenSQLite(t))
	c := &Committer{Store: g}
	go c.Append(context.Background(), newMessage("dm:alice:bob", "gate"), nil)
	testkit.Eventually(t, 10*time.Second, g.held)
	return c, g
}

// queuedFor reports how many requests wait in conv's partition.
func queuedFor(c *Committer, conv string) int { return len(c.part(conv)) }

// TestCommitterQueuedWorkFinishesOnClose: work queued behind a slow commit
// is committed before Close returns, in order.
func TestCommitterQueuedWorkFinishesOnClose(t *testing.T) {
	g := newGatedStore(testkit.OpenSQLite(t))
	c := &Committer{Store: g}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, _, err := c.Append(context.Background(), newMessage("dm:alice:bob", "gate"), nil); err != nil {
			t.Errorf("gate: %v", err)
		}
	}()
	testkit.Eventually(t, 10*time.Second, g.held)
	var order []string
	var omu sync.Mutex
	for i := 0; i < 5; i++ {
		wg.Add(1)
		cid := fmt.Sprintf("q%d", i)
		go func() {
			defer wg.Done()
			if _, _, err := c.Append(context.Background(), newMessage("dm:alice:bob", cid), func(r history.AppendResult) {
				omu.Lock()
				order = append(order, r.Message.CID)
				omu.Unlock()
			}); err != nil {
				t.Errorf("%s: %v", cid, err)
			}
		}()
	}
	// All five are queued behind the gate before Close.
	testkit.Eventually(t, 10*time.Second, func() bool { return queuedFor(c, "dm:alice:bob") == 5 })
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	close(g.release)
	<-closed
	wg.Wait()
	if len(order) != 5 {
		t.Fatalf("delivered %v after Close, want the 5 queued", order)
	}
	ms, err := g.Store.Messages(context.Background(), "dm:alice:bob", 0, 100)
	if err != nil || len(ms) != 6 {
		t.Fatalf("stored %d messages (%v), want 6", len(ms), err)
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("seqs %v", ms)
		}
	}
}

// TestCommitterCancelledSender: a sender whose context ends before the
// commit is not stored and gets its context's error; the others are stored.
func TestCommitterCancelledSender(t *testing.T) {
	c, g := heldCommitter(t)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Append(ctx, newMessage("dm:alice:bob", "gives-up"), nil)
		errc <- err
	}()
	okc := make(chan error, 1)
	go func() {
		_, _, err := c.Append(context.Background(), newMessage("dm:alice:bob", "stays"), nil)
		okc <- err
	}()
	testkit.Eventually(t, 10*time.Second, func() bool { return queuedFor(c, "dm:alice:bob") == 2 })
	cancel()
	close(g.release)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled sender: %v, want context.Canceled", err)
	}
	if err := <-okc; err != nil {
		t.Fatalf("other sender: %v", err)
	}
	ms, _ := g.Store.Messages(context.Background(), "dm:alice:bob", 0, 10)
	for _, m := range ms {
		if m.CID == "gives-up" {
			t.Fatalf("the cancelled send was stored: %+v", ms)
		}
	}
	if len(ms) != 2 {
		t.Fatalf("stored %d, want gate and stays", len(ms))
	}
}

// TestCommitterDoOrder: an exclusive operation queued between sends runs
// after the sends queued before it and before those queued after it.
func TestCommitterDoOrder(t *testing.T) {
	c, g := heldCommitter(t)
	defer c.Close()
	var mu sync.Mutex
	var events []string
	note := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	var wg sync.WaitGroup
	n := 0
	step := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
		n++
		testkit.Eventually(t, 10*time.Second, func() bool { return queuedFor(c, "dm:alice:bob") == n })
	}
	step(func() {
		c.Append(context.Background(), newMessage("dm:alice:bob", "before"), func(history.AppendResult) { note("before") })
	})
	step(func() { c.Do(context.Background(), "dm:alice:bob", func() { note("op") }) })
	step(func() {
		c.Append(context.Background(), newMessage("dm:alice:bob", "after"), func(history.AppendResult) { note("after") })
	})
	close(g.release)
	wg.Wait()
	if fmt.Sprint(events) != "[before op after]" {
		t.Fatalf("order %v, want [before op after]", events)
	}
}

// TestCommitterKeepsQueueOrder: messages queued one after another, several of
// them from the same sender in the same conversation, share one group commit
// and get seqs in the order they were queued; the store holds each body under
// the seq its sender was answered with, and the deliver callbacks run in that
// order. A committer that reordered a batch (for instance two messages of one
// sender) would store a sender's messages out of send order.
func TestCommitterKeepsQueueOrder(t *testing.T) {
	s := newGatedStore(testkit.OpenSQLite(t))
	c := &Committer{Store: s, Partitions: 1}
	defer c.Close()
	ctx := context.Background()

	gate := make(chan error, 1)
	go func() {
		_, _, err := c.Append(ctx, newMessage(history.DirectConvID("alice", "gate"), "gate"), nil)
		gate <- err
	}()
	testkit.Eventually(t, 10*time.Second, s.held)

	// Queued strictly one after another: each Append is in the partition's
	// queue before the next one starts.
	conv := history.DirectConvID("alice", "bob")
	senders := []string{"alice", "alice", "bob", "alice", "alice", "alice", "bob", "bob", "alice"}
	type result struct {
		m   history.Message
		err error
	}
	results := make([]chan result, len(senders))
	var mu sync.Mutex
	var delivered []string
	for i, from := range senders {
		now := time.Now()
		nm := history.NewMessage{Conv: conv, ID: history.NewID(now), CID: fmt.Sprintf("c%d", i), From: from, TS: now,
			Type: "text", Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		results[i] = make(chan result, 1)
		go func() {
			m, _, err := c.Append(ctx, nm, func(r history.AppendResult) {
				mu.Lock()
				delivered = append(delivered, r.Message.CID)
				mu.Unlock()
			})
			results[i] <- result{m, err}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for len(c.parts[0]) != i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("send %d not queued (queue length %d)", i, len(c.parts[0]))
			}
			time.Sleep(time.Millisecond)
		}
	}
	close(s.release)
	if err := <-gate; err != nil {
		t.Fatalf("gate message: %v", err)
	}

	var prev int64
	for i := range senders {
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("send %d: %v", i, r.err)
		}
		if r.m.CID != fmt.Sprintf("c%d", i) || string(r.m.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("send %d answered with another message: %+v", i, r.m)
		}
		if r.m.Seq <= prev {
			t.Errorf("send %d (from %s) answered with seq %d after seq %d: seqs out of queue order", i, senders[i], r.m.Seq, prev)
		}
		prev = r.m.Seq
	}

	stored, err := s.Messages(ctx, conv, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(senders) {
		t.Fatalf("stored %d messages, want %d", len(stored), len(senders))
	}
	for i, m := range stored {
		if m.Seq != int64(i+1) || m.CID != fmt.Sprintf("c%d", i) || m.From != senders[i] || string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("stored message %d = seq %d cid %s from %s body %s; want seq %d cid c%d from %s", i, m.Seq, m.CID, m.From, m.Body, i+1, i, senders[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, cid := range delivered {
		if cid != fmt.Sprintf("c%d", i) {
			t.Fatalf("delivered in the order %v, want c0, c1, ...", delivered)
		}
	}
}
