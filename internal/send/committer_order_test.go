package send

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// holdFirst is a real store whose first AppendBatch waits for release, so
// that the sends queued meanwhile share the next group commit.
type holdFirst struct {
	history.Store
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *holdFirst) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.entered)
		<-h.release
	}
	return h.Store.AppendBatch(ctx, ms)
}

// TestCommitterKeepsQueueOrder: messages queued one after another, several of
// them from the same sender in the same conversation, share one group commit
// and get seqs in the order they were queued; the store holds each body under
// the seq its sender was answered with, and the deliver callbacks run in that
// order. A committer that reordered a batch (for instance two messages of one
// sender) would store a sender's messages out of send order.
func TestCommitterKeepsQueueOrder(t *testing.T) {
	s := &holdFirst{Store: testkit.OpenSQLite(t), entered: make(chan struct{}), release: make(chan struct{})}
	c := &Committer{Store: s, Partitions: 1}
	defer c.Close()
	ctx := context.Background()

	gate := make(chan error, 1)
	go func() {
		_, _, err := c.Append(ctx, newMessage(history.DirectConvID("alice", "gate"), "gate"), nil)
		gate <- err
	}()
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the gate message never reached the store")
	}

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
