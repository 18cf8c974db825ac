package sqlite_test

import (
	"context"
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
