// Package migrations holds the numbered SQL schema migrations of each store,
// embedded in the binary: postgres/ for history/postgres and sqlite/ for
// history/sqlite. Files follow goose's format (NNNNN_name.sql with
// "-- +goose Up" and "-- +goose Down" sections).
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Postgres returns the PostgreSQL migrations.
func Postgres() fs.FS { return sub("postgres") }

// SQLite returns the SQLite migrations.
func SQLite() fs.FS { return sub("sqlite") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic("migrations: " + err.Error()) // dir is a constant embedded above
	}
	return f
}

// Latest returns the highest migration number in fsys (0 for none): a store
// is ready when its schema carries it.
func Latest(fsys fs.FS) int64 {
	var v int64
	entries, _ := fs.ReadDir(fsys, ".")
	for _, e := range entries {
		var n int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &n); err == nil && n > v {
			v = n
		}
	}
	return v
}

// AppliedQuery selects the highest migration applied to a database (0 for
// none): goose's version table, the same in every store's SQL.
const AppliedQuery = `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`

// Ping checks that the database of store (the prefix of its errors, such as
// "sqlite") answers and carries migration want (see Latest): queryRow runs
// query (AppliedQuery) on it and scans the one value into dest. The error
// wraps the query's error, or says the schema's version and want.
func Ping(ctx context.Context, store string, want int64, queryRow func(ctx context.Context, query string, dest *int64) error) error {
	var v int64
	if err := queryRow(ctx, AppliedQuery, &v); err != nil {
		return fmt.Errorf("%s: ping: %w", store, err)
	}
	if v < want {
		return fmt.Errorf("%s: schema at version %d, want %d", store, v, want)
	}
	return nil
}

// Report is what one migration run did: the versions it applied, in order,
// and the schema version after it.
type Report struct {
	Applied []int64
	Version int64
}

// String says what the run did, with versions as in the file names:
// "applied 00003..00005", "applied 00005" or "up to date at 00005".
func (r Report) String() string {
	switch n := len(r.Applied); n {
	case 0:
		return fmt.Sprintf("up to date at %05d", r.Version)
	case 1:
		return fmt.Sprintf("applied %05d", r.Applied[0])
	default:
		return fmt.Sprintf("applied %05d..%05d", r.Applied[0], r.Applied[n-1])
	}
}
