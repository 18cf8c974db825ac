package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-im/parley/history/historytest"
)

// TestOutboxConcurrent: under concurrent sends, group changes and read
// markers, outbox positions become visible in commit order (the advisory
// lock), and the lock deadlocks with none of the row locks.
func TestOutboxConcurrent(t *testing.T) {
	historytest.OutboxConcurrent(t, open(t), 12, 40)
}

// TestTryLead: one leader per name; release lets another lead; a leader
// whose connection is killed loses the lead, and another takes it.
func TestTryLead(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	ok, lost, release, err := s.TryLead(ctx, "sink:webhook")
	if err != nil || !ok || lost == nil || release == nil {
		t.Fatalf("first TryLead = %v, %v", ok, err)
	}
	if ok, _, _, err := s.TryLead(ctx, "sink:webhook"); err != nil || ok {
		t.Fatalf("second TryLead = %v, %v; want false", ok, err)
	}
	okK, _, releaseK, err := s.TryLead(ctx, "sink:kafka") // another name
	if err != nil || !okK {
		t.Fatalf("TryLead of another name = %v, %v", okK, err)
	}
	defer releaseK()
	release()
	release() // idempotent
	select {
	case <-lost:
		t.Fatal("release closed lost")
	default:
	}
	ok, lost, release, err = s.TryLead(ctx, "sink:webhook")
	if err != nil || !ok {
		t.Fatalf("TryLead after release = %v, %v", ok, err)
	}
	defer release()

	// Kill the connection that holds the lock: the leader finds out.
	rows, err := s.Pool().Query(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted`)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int32
	for rows.Next() {
		var p int32
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, p)
	}
	if rows.Err() != nil || len(pids) != 2 {
		t.Fatalf("advisory lock holders: %v, %v; want 2", pids, rows.Err())
	}
	// Release kafka's lock to tell the two apart.
	releaseK()
	var pid int32
	if err := s.Pool().QueryRow(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var killed bool
	if err := s.Pool().QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("lost not closed 10s after the connection was killed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, _, rel, err := s.TryLead(ctx, "sink:webhook")
		if err != nil {
			t.Fatalf("TryLead after the kill: %v", err)
		}
		if ok {
			rel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no TryLead succeeded after the leader's connection was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	release() // after the loss: fine
}
