package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// TestUploadBytesIndexOnly: the upload quota's sum of an owner's sizes (the
// query of UploadBytes) is an index-only scan of uploads_owner, which
// carries size (migration 00011). Sequential and bitmap scans are turned
// off so that the small table's plan is the one a large table would get;
// a plain index scan, which fetches every row from the heap, fails.
func TestUploadBytesIndexOnly(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	for i := range 50 {
		u := history.Upload{ID: fmt.Sprintf("u%02d", i), Owner: fmt.Sprintf("user%d", i%5), Size: int64(i + 1),
			ContentType: "text/plain", SHA256: "x", CreatedAt: time.Now()}
		if err := s.CreateUpload(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.UploadBytes(ctx, "user1"); err != nil || n != 2+7+12+17+22+27+32+37+42+47 {
		t.Fatalf("UploadBytes(user1) = %d, %v", n, err)
	}
	if _, err := s.Pool().Exec(ctx, `VACUUM ANALYZE uploads`); err != nil {
		t.Fatal(err)
	}
	var plan []string
	err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off`); err != nil {
			return err
		}
		// The query of UploadBytes.
		rows, err := tx.Query(ctx, `EXPLAIN SELECT coalesce(sum(size), 0)::bigint FROM uploads WHERE owner = $1`, "user1")
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(plan, "\n"); !strings.Contains(text, "Index Only Scan using uploads_owner") {
		t.Fatalf("plan:\n%s\nwant an index-only scan of uploads_owner", text)
	}
}
