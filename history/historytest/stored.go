package historytest

import (
	"context"
	"database/sql"
	"io/fs"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/parley-im/parley/history"
)

// DeleteErasesStored runs DeleteErases on s and checks, with stored (how
// the store keeps the message seq of conv: the JSON type of its body, its
// deleted flag, its type), that the body of the deleted message and of each
// of its edit events is stored as JSON null: erased, not hidden.
func DeleteErasesStored(t *testing.T, s history.Store, stored func(conv string, seq int64) (kind string, deleted bool, typ string, err error)) {
	t.Helper()
	conv, seqs := DeleteErases(t, s)
	for i, seq := range seqs {
		kind, deleted, typ, err := stored(conv, seq)
		if err != nil {
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

// EventsSQL is what MigrateEvents runs of a store's SQL dialect.
type EventsSQL struct {
	// Conv inserts the direct conversation 'dm:a:b'.
	Conv string
	// Message inserts into it, from 'a', the message of seq and id and type
	// typ (arguments seq, typ, typ).
	Message string
	// Event reads the event flag of the message of seq (argument seq).
	Event string
}

// MigrateEvents checks, on db, a new database that goose migrates in
// dialect from fsys, that migration 00006 marks the existing messages whose
// type is an event's (history.IsEvent) as events, and goes down again.
func MigrateEvents(t *testing.T, db *sql.DB, dialect goose.Dialect, fsys fs.FS, q EventsSQL) {
	t.Helper()
	ctx := context.Background()
	p, err := goose.NewProvider(dialect, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	types := []string{"text", "group.created", "member.added", "message.edited", "reaction.added", "system.notice", "Group.created", "groupie", "image"}
	if _, err := db.ExecContext(ctx, q.Conv); err != nil {
		t.Fatal(err)
	}
	for i, typ := range types {
		if _, err := db.ExecContext(ctx, q.Message, i+1, typ, typ); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for i, typ := range types {
		var event bool
		if err := db.QueryRowContext(ctx, q.Event, i+1).Scan(&event); err != nil {
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
