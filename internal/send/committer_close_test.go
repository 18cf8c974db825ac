package send

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

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

// gate is a real store whose first AppendBatch waits for release.
type gate struct {
	history.Store
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (g *gate) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	g.mu.Lock()
	g.calls++
	first := g.calls == 1
	g.mu.Unlock()
	if first {
		<-g.release
	}
	return g.Store.AppendBatch(ctx, ms)
}

func (g *gate) held() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.calls == 1 }

// heldCommitter returns a committer on a gate that holds its first commit,
// the message "gate" of dm:alice:bob, until g.release is closed.
func heldCommitter(t *testing.T) (*Committer, *gate) {
	t.Helper()
	g := &gate{Store: testkit.OpenSQLite(t), release: make(chan struct{})}
	c := &Committer{Store: g}
	go c.Append(context.Background(), newMessage("dm:alice:bob", "gate"), nil)
	eventually(t, g.held)
	return c, g
}

// queuedFor reports how many requests wait in conv's partition.
func queuedFor(c *Committer, conv string) int { return len(c.part(conv)) }

// TestCommitterQueuedWorkFinishesOnClose: work queued behind a slow commit
// is committed before Close returns, in order.
func TestCommitterQueuedWorkFinishesOnClose(t *testing.T) {
	g := &gate{Store: testkit.OpenSQLite(t), release: make(chan struct{})}
	c := &Committer{Store: g}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, _, err := c.Append(context.Background(), newMessage("dm:alice:bob", "gate"), nil); err != nil {
			t.Errorf("gate: %v", err)
		}
	}()
	eventually(t, g.held)
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
	eventually(t, func() bool { return queuedFor(c, "dm:alice:bob") == 5 })
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
	eventually(t, func() bool { return queuedFor(c, "dm:alice:bob") == 2 })
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
		eventually(t, func() bool { return queuedFor(c, "dm:alice:bob") == n })
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

// eventually polls cond until it holds, failing after 10s.
func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
