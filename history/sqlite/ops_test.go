package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/migrations"
)

// TestDeleteErases: after a delete, the stored body of the message and of
// each of its edit events is JSON null: erased, not hidden.
func TestDeleteErases(t *testing.T) {
	dir := t.TempDir()
	s := openIn(t, dir)
	defer s.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=query_only(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	historytest.DeleteErasesStored(t, s, func(conv string, seq int64) (kind string, deleted bool, typ string, err error) {
		err = db.QueryRowContext(context.Background(), `SELECT json_type(body), deleted, type FROM messages WHERE conv = ? AND seq = ?`, conv, seq).Scan(&kind, &deleted, &typ)
		return kind, deleted, typ, err
	})
}

// TestMigrateEvents: migration 00006 marks the existing messages whose type
// is an event's (history.IsEvent) as events, and goes down again.
func TestMigrateEvents(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	historytest.MigrateEvents(t, db, goose.DialectSQLite3, migrations.SQLite(), historytest.EventsSQL{
		Conv:    `INSERT INTO conversations (id, kind, created_at, updated_at) VALUES ('dm:a:b', 'direct', '', '')`,
		Message: `INSERT INTO messages (conv, seq, id, sender, type, body, created_at) VALUES ('dm:a:b', ?, ?, 'a', ?, '1', '')`,
		Event:   `SELECT event FROM messages WHERE conv = 'dm:a:b' AND seq = ?`,
	})
}
