// Package migrations holds the numbered SQL schema migrations of each store,
// embedded in the binary: postgres/ for history/postgres and sqlite/ for
// history/sqlite. Files follow goose's format (NNNNN_name.sql with
// "-- +goose Up" and "-- +goose Down" sections).
package migrations

import (
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
