package sqlite_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/migrations"
)

// open returns a store in a fresh directory, closed when tb ends.
func open(tb testing.TB) history.Store {
	tb.Helper()
	return historytest.Open(tb, func(ctx context.Context) (*sqlite.Store, error) {
		return sqlite.Open(ctx, tb.TempDir(), nil)
	})
}

// openIn opens the store of dir; the caller closes it.
func openIn(tb testing.TB, dir string) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), dir, nil)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	historytest.Run(t, func(t *testing.T) history.Store { return open(t) })
}

// TestReopen shows that data survives closing and reopening the data dir.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openIn(t, dir)
	conv := history.DirectConvID("alice", "bob")
	if _, _, err := s.Append(ctx, historytest.NewMsg(conv, "alice", "c1", `"hi"`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openIn(t, dir)
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
	historytest.Reopen(t, func(t *testing.T) history.Store { return openIn(t, dir) })
}

// BenchmarkAppend stores one message per transaction, and 64 per
// transaction (group commit); compare the per-message figures.
func BenchmarkAppend(b *testing.B) { historytest.BenchAppend(b, open) }

// TestMigrate: Migrate reports every migration on a new data dir, none on
// the next run; a file that is not a database is an error naming it.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	historytest.MigrateTwice(t, migrations.SQLite(), func() (migrations.Report, error) {
		return sqlite.Migrate(ctx, dir, nil)
	})
	bad := t.TempDir()
	path := filepath.Join(bad, sqlite.FileName)
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.Open(ctx, bad, nil); err == nil || s != nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open on garbage: %v, %v", s, err)
	}
}

// TestOutboxConcurrent: concurrent writers and a polling reader see the
// outbox in commit order (SQLite's single writer).
func TestOutboxConcurrent(t *testing.T) {
	historytest.OutboxConcurrent(t, open(t), 8, 30)
}
