package testkit

import (
	"context"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/pgtest"
)

// ForEachStore runs fn in a subtest "sqlite" on a fresh SQLite store and in
// a subtest "postgres" on a fresh PostgreSQL database.
func ForEachStore(t *testing.T, fn func(t *testing.T, s history.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, OpenSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, OpenPostgres(t, pgtest.DB(t))) })
}

// OpenSQLite opens a SQLite store in a temporary directory, closed when tb
// ends.
func OpenSQLite(tb testing.TB) history.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// OpenPostgres opens a PostgreSQL store on the database at url, closed when
// tb ends.
func OpenPostgres(tb testing.TB, url string) history.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
