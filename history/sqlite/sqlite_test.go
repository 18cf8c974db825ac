package sqlite_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/history/sqlite"
)

func open(t *testing.T) history.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), t.TempDir(), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { historytest.Run(t, open) }

// TestReopen shows that data survives closing and reopening the data dir.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := history.DirectConvID("alice", "bob")
	if _, _, err := s.Append(ctx, historytest.NewMsg(conv, "alice", "c1", `"hi"`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlite.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs, err := s.Messages(ctx, conv, 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].CID != "c1" {
		t.Fatalf("after reopen: %+v %v", msgs, err)
	}
}

// TestReopenSeqs: seqs continue across restarts and never name a different
// message (historytest.Reopen).
func TestReopenSeqs(t *testing.T) {
	dir := t.TempDir()
	historytest.Reopen(t, func(t *testing.T) history.Store {
		s, err := sqlite.Open(context.Background(), dir, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// BenchmarkAppend stores one message per transaction, and 64 per
// transaction (group commit); compare the per-message figures.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := sqlite.Open(context.Background(), b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchAppend(b, s, size)
		})
	}
}

func benchAppend(b *testing.B, s history.Store, size int) {
	ctx := context.Background()
	batch := make([]history.NewMessage, size)
	b.ResetTimer()
	for i := 0; i < b.N; i += size {
		for j := range batch {
			batch[j] = historytest.NewMsg(history.DirectConvID("alice", fmt.Sprintf("u%d", (i+j)%100)), "alice", "", `{"text":"hello there"}`)
		}
		rs, err := s.AppendBatch(ctx, batch)
		if err != nil || rs[0].Err != nil {
			b.Fatal(err)
		}
	}
}
