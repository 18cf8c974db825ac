package sqlite_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
)

// TestAppendBatchChunks: batches that take several multi-row INSERTs (200
// is 128 + 64 + 8 rows) store every message under its seq with its body and
// cid, searchable, with their outbox rows in seq order.
func TestAppendBatchChunks(t *testing.T) {
	for _, n := range []int{1, 2, 3, 13, 128, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			dm := history.DirectConvID("alice", "bob")
			batch := make([]history.NewMessage, n)
			for i := range batch {
				from := []string{"alice", "bob"}[i%2]
				batch[i] = historytest.NewMsg(dm, from, fmt.Sprintf("c%d", i), fmt.Sprintf(`{"text":"word%d"}`, i))
			}
			rs, err := s.AppendBatch(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Messages(ctx, dm, 0, 1000)
			if err != nil || len(got) != n {
				t.Fatalf("%d messages stored, %v; want %d", len(got), err, n)
			}
			for i, m := range got {
				if r := rs[i]; !r.Created || r.Message.Seq != int64(i+1) || m.Seq != int64(i+1) || m.CID != batch[i].CID || string(m.Body) != string(batch[i].Body) || m.ID != batch[i].ID {
					t.Fatalf("seq %d holds %+v (result %+v), want cid %s body %s", i+1, m, r.Message, batch[i].CID, batch[i].Body)
				}
			}
			ob := s.(history.Outboxer)
			evs, err := ob.Outbox(ctx, 0, 1000)
			if err != nil || len(evs) != n {
				t.Fatalf("%d outbox rows, %v; want %d", len(evs), err, n)
			}
			for i, ev := range evs {
				if ev.Seq != int64(i+1) || ev.ID != batch[i].ID {
					t.Fatalf("outbox row %d: seq %d id %s, want seq %d id %s", i, ev.Seq, ev.ID, i+1, batch[i].ID)
				}
			}
			res, _, err := s.(history.Privacy).Search(ctx, history.SearchQuery{User: "bob", Terms: []string{fmt.Sprintf("word%d", n-1)}, Limit: 10})
			if err != nil || len(res) != 1 || res[0].Seq != int64(n) {
				t.Fatalf("search for the last message: %+v, %v", res, err)
			}
		})
	}
}
