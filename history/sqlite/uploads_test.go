package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/sqlite"
)

// TestUploadBytesCovering: the upload quota's sum of an owner's sizes (the
// query of UploadBytes) reads uploads_owner alone, which carries size
// (migration 00011), not a table row per stored file.
func TestUploadBytesCovering(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openIn(t, dir)
	defer s.Close()
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
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=query_only(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The query of UploadBytes.
	rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT coalesce(sum(size), 0) FROM uploads WHERE owner = ?`, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(plan, "\n"); !strings.Contains(text, "USING COVERING INDEX uploads_owner") {
		t.Fatalf("plan:\n%s\nwant a search of the covering index uploads_owner", text)
	}
}
