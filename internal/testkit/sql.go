package testkit

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/pgtest"
)

// ForEachStoreSQL is ForEachStore with a read-only view of each store's
// database, for tests that assert what is stored: SQL that both stores
// understand (no placeholders, CAST(x AS TEXT) rather than ::text).
func ForEachStoreSQL(t *testing.T, fn func(t *testing.T, s history.Store, db *sql.DB)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		s, err := sqlite.Open(context.Background(), dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(10000)&_pragma=query_only(ON)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, s, db)
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.DB(t)
		s := OpenPostgres(t, url)
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, s, db)
	})
}

// QueryStrings runs q on db and returns the first column of every row as
// text (NULL as "<nil>").
func QueryStrings(t testing.TB, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if s.Valid {
			out = append(out, s.String)
		} else {
			out = append(out, "<nil>")
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}
