package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/migrations"
)

// describeStore names the configured store for messages, without a
// password: "embedded SQLite in ./data" or "PostgreSQL at
// user@host:5432/db". A database URL that does not parse is a *ConfigError.
func describeStore(c Config) (string, error) {
	if c.DatabaseURL == "" {
		return "embedded SQLite in " + c.DataDir, nil
	}
	cfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		// pgx's message shows the URL with the password masked.
		return "", configErrorf("PARLEY_DATABASE_URL: %w; want a URL such as postgres://user:password@host:5432/dbname", err)
	}
	return "PostgreSQL at " + postgres.Describe(cfg.ConnConfig), nil
}

// openStore opens the configured store, migrating it. On failure it returns
// a nil history.Store (never a typed nil inside one).
func (m *Main) openStore(ctx context.Context) (history.Store, error) {
	if m.Config.DatabaseURL != "" {
		s, err := postgres.Open(ctx, m.Config.DatabaseURL, m.Logger)
		if err != nil {
			return nil, storeError(err, "PARLEY_DATABASE_URL")
		}
		return s, nil
	}
	s, err := sqlite.Open(ctx, m.Config.DataDir, m.Logger)
	if err != nil {
		return nil, storeError(err, "PARLEY_DATA_DIR")
	}
	return s, nil
}

// storeError adds the setting to look at to a store's error.
func storeError(err error, env string) error {
	return fmt.Errorf("%w; check %s", err, env)
}

// Migrate applies the store's pending migrations and prints what it applied
// ("applied 00003..00005") or that the schema is up to date.
func (m *Main) Migrate(ctx context.Context) error {
	desc, err := describeStore(m.Config)
	if err != nil {
		return err
	}
	var r migrations.Report
	if m.Config.DatabaseURL != "" {
		pool, err := postgres.Connect(ctx, m.Config.DatabaseURL)
		if err != nil {
			return storeError(err, "PARLEY_DATABASE_URL")
		}
		defer pool.Close()
		if r, err = postgres.MigrateReport(ctx, pool, m.Logger); err != nil {
			return err
		}
	} else if r, err = sqlite.Migrate(ctx, m.Config.DataDir, m.Logger); err != nil {
		return storeError(err, "PARLEY_DATA_DIR")
	}
	_, err = fmt.Fprintf(m.Stdout, "%s: %s\n", desc, r)
	return err
}

// redactURLs returns the comma-separated URLs in s without their user
// information (credentials), for display.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			parts[i] = "(a URL that does not parse)"
			continue
		}
		if u.User != nil {
			u.User = nil
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
