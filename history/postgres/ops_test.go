package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/migrations"
)

// TestDeleteErases: after a delete, the stored body of the message and of
// each of its edit events is JSON null: erased, not hidden.
func TestDeleteErases(t *testing.T) {
	s := open(t)
	historytest.DeleteErasesStored(t, s, func(conv string, seq int64) (kind string, deleted bool, typ string, err error) {
		err = s.Pool().QueryRow(context.Background(), `SELECT json_typeof(body), deleted, type FROM messages WHERE conv = $1 AND seq = $2`, conv, seq).Scan(&kind, &deleted, &typ)
		return kind, deleted, typ, err
	})
}

// TestMigrateEvents: migration 00006 marks the existing messages whose type
// is an event's (history.IsEvent) as events, and goes down again.
func TestMigrateEvents(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	historytest.MigrateEvents(t, db, goose.DialectPostgres, migrations.Postgres(), historytest.EventsSQL{
		Conv:    `INSERT INTO conversations (id, kind) VALUES ('dm:a:b', 'direct')`,
		Message: `INSERT INTO messages (conv, seq, id, sender, type, body, created_at) VALUES ('dm:a:b', $1, $2, 'a', $3, '1', now())`,
		Event:   `SELECT event FROM messages WHERE conv = 'dm:a:b' AND seq = $1`,
	})
}
