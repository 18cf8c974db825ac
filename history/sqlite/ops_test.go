package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/migrations"
)

// TestDeleteErases: after a delete, the stored body of the message and of
// each of its edit events is JSON null: erased, not hidden.
func TestDeleteErases(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conv, seqs := historytest.DeleteErases(t, s)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=query_only(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, seq := range seqs {
		var kind, typ string
		var deleted bool
		if err := db.QueryRowContext(ctx, `SELECT json_type(body), deleted, type FROM messages WHERE conv = ? AND seq = ?`, conv, seq).Scan(&kind, &deleted, &typ); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if kind != "null" {
			t.Fatalf("seq %d (%s): stored body is a JSON %s, want null", seq, typ, kind)
		}
		if deleted != (i == 0) {
			t.Fatalf("seq %d (%s): deleted = %v", seq, typ, deleted)
		}
	}
}

// TestMigrateEvents: migration 00006 marks the existing messages whose type
// is an event's (history.IsEvent) as events, and goes down again.
func TestMigrateEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.SQLite(), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	types := []string{"text", "group.created", "member.added", "message.edited", "reaction.added", "system.notice", "Group.created", "groupie", "image"}
	if _, err := db.ExecContext(ctx, `INSERT INTO conversations (id, kind, created_at, updated_at) VALUES ('dm:a:b', 'direct', '', '')`); err != nil {
		t.Fatal(err)
	}
	for i, typ := range types {
		if _, err := db.ExecContext(ctx, `INSERT INTO messages (conv, seq, id, sender, type, body, created_at) VALUES ('dm:a:b', ?, ?, 'a', ?, '1', '')`, i+1, typ, typ); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for i, typ := range types {
		var event bool
		if err := db.QueryRowContext(ctx, `SELECT event FROM messages WHERE conv = 'dm:a:b' AND seq = ?`, i+1).Scan(&event); err != nil {
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
