package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/migrations"
)

// TestDeleteErases: after a delete, the stored body of the message and of
// each of its edit events is JSON null: erased, not hidden.
func TestDeleteErases(t *testing.T) {
	s := open(t)
	conv, seqs := historytest.DeleteErases(t, s)
	rows, err := s.Pool().Query(context.Background(), `SELECT seq, json_typeof(body), deleted, type FROM messages WHERE conv = $1 AND seq = ANY($2) ORDER BY seq`, conv, seqs)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var seq int64
		var kind, typ string
		var deleted bool
		if err := rows.Scan(&seq, &kind, &deleted, &typ); err != nil {
			t.Fatal(err)
		}
		if kind != "null" {
			t.Fatalf("seq %d (%s): stored body is a JSON %s, want null", seq, typ, kind)
		}
		if deleted != (seq == seqs[0]) {
			t.Fatalf("seq %d (%s): deleted = %v", seq, typ, deleted)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != len(seqs) {
		t.Fatalf("%d rows of %d, %v", n, len(seqs), err)
	}
}

// TestMigrateEvents: migration 00006 marks the existing messages whose type
// is an event's (history.IsEvent) as events, and goes down again.
func TestMigrateEvents(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres(), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	types := []string{"text", "group.created", "member.added", "message.edited", "reaction.added", "system.notice", "Group.created", "groupie", "image"}
	if _, err := pool.Exec(ctx, `INSERT INTO conversations (id, kind) VALUES ('dm:a:b', 'direct')`); err != nil {
		t.Fatal(err)
	}
	for i, typ := range types {
		if _, err := pool.Exec(ctx, `INSERT INTO messages (conv, seq, id, sender, type, body, created_at) VALUES ('dm:a:b', $1, $2, 'a', $2, '1', now())`, i+1, typ); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for i, typ := range types {
		var event bool
		if err := pool.QueryRow(ctx, `SELECT event FROM messages WHERE conv = 'dm:a:b' AND seq = $1`, i+1).Scan(&event); err != nil {
			t.Fatal(err)
		}
		if event != history.IsEvent(typ) {
			t.Fatalf("type %s: event = %v, want %v", typ, event, history.IsEvent(typ))
		}
	}
	// The migration goes down and up again.
	if _, err := p.DownTo(ctx, 5); err != nil {
		t.Fatalf("down to 5: %v", err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
}
