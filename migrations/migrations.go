// Package migrations holds the numbered SQL schema migrations of each store,
// embedded in the binary: postgres/ for history/postgres and sqlite/ for
// history/sqlite. Files follow goose's format (NNNNN_name.sql with
// "-- +goose Up" and "-- +goose Down" sections).
package migrations

import (
	"embed"
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
