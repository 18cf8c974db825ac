// Package migrate runs a store's embedded schema migrations with goose: the
// part of migrating that history/postgres and history/sqlite share.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"

	"github.com/parley-im/parley/migrations"
)

// Up applies the pending migrations in fsys to db, in goose's dialect, and
// says what it did: the migrations it applied and the schema version after
// them. log may be nil; opts are further goose options (such as a session
// locker). Errors start with store, such as "postgres".
func Up(ctx context.Context, store string, dialect goose.Dialect, db *sql.DB, fsys fs.FS, log *slog.Logger, opts ...goose.ProviderOption) (migrations.Report, error) {
	opts = append(opts, goose.WithDisableGlobalRegistry(true))
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return migrations.Report{}, fmt.Errorf("%s: migrations: %w", store, err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return migrations.Report{}, fmt.Errorf("%s: migrate: %w", store, err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return migrations.Report{}, fmt.Errorf("%s: migrate: %w", store, err)
	}
	r := migrations.Report{Version: v}
	for _, m := range res {
		r.Applied = append(r.Applied, m.Source.Version)
	}
	return r, nil
}
