package historytest

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-im/parley/history"
)

// Open opens a store for tb with open, fails tb when that fails, and closes
// the store when tb ends: the body of a store's open function for Run and
// its benchmarks.
func Open[S history.Store](tb testing.TB, open func(ctx context.Context) (S, error)) S {
	tb.Helper()
	s, err := open(context.Background())
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// BenchAppend benchmarks AppendBatch on a fresh store from open with one
// message per transaction and with 64 per transaction (group commit), each
// to one of 100 direct conversations; compare the per-message figures.
func BenchAppend(b *testing.B, open func(tb testing.TB) history.Store) {
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			batch := make([]history.NewMessage, size)
			b.ResetTimer()
			for i := 0; i < b.N; i += size {
				for j := range batch {
					batch[j] = NewMsg(history.DirectConvID("alice", fmt.Sprintf("u%d", (i+j)%100)), "alice", "", `{"text":"hello there"}`)
				}
				rs, err := s.AppendBatch(ctx, batch)
				if err != nil || rs[0].Err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
