package postgres_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/migrations"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open returns a store on a fresh database, closed when tb ends.
func open(tb testing.TB) *postgres.Store {
	tb.Helper()
	return historytest.Open(tb, func(ctx context.Context) (*postgres.Store, error) {
		return postgres.Open(ctx, pgtest.DB(tb), nil)
	})
}

// connect returns a pool on the database at url (see postgres.Connect),
// closed when t ends.
func connect(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestConformance(t *testing.T) {
	historytest.Run(t, func(t *testing.T) history.Store { return open(t) })
}

// TestReopenSeqs: seqs continue across restarts and never name a different
// message (historytest.Reopen).
func TestReopenSeqs(t *testing.T) {
	url := pgtest.DB(t)
	historytest.Reopen(t, func(t *testing.T) history.Store {
		s, err := postgres.Open(context.Background(), url, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestMigrateConcurrently starts several migrators on one empty database at
// once, as several nodes starting together would: all succeed, and each
// migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	url := pgtest.DB(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pool, err := pgxpool.New(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			errs[i] = postgres.Migrate(ctx, pool, nil)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
	}
	pool := connect(t, url)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id = 1`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 1 applied %d times (%v), want once", n, err)
	}
	if err := postgres.New(pool).Ping(ctx); err != nil {
		t.Fatalf("Ping after migrate: %v", err)
	}
}

func TestPingUnmigrated(t *testing.T) {
	pool := connect(t, pgtest.DB(t))
	if err := postgres.New(pool).Ping(context.Background()); err == nil {
		t.Fatal("Ping on an unmigrated database succeeded")
	}
}

// TestMigrateReport: MigrateReport reports every migration on a new
// database and none on the next run.
func TestMigrateReport(t *testing.T) {
	pool := connect(t, pgtest.DB(t))
	historytest.MigrateTwice(t, migrations.Postgres(), func() (migrations.Report, error) {
		return postgres.MigrateReport(context.Background(), pool, nil)
	})
}

// TestConnectErrors: Connect says in one line why it cannot connect, naming
// the database without the password.
func TestConnectErrors(t *testing.T) {
	ctx := context.Background()
	missing := strings.Replace(pgtest.DB(t), "?", "_missing?", 1)
	missing = strings.Replace(missing, "postgres@", "postgres:hunter2@", 1)
	for _, tc := range []struct{ name, url, want string }{
		{"NotAURL", "notaurl", "parse database url"},
		{"Refused", "postgres://parley:hunter2@127.0.0.1:1/parley?sslmode=disable", "connect to parley@127.0.0.1:1/parley: connection refused"},
		{"MissingDatabase", missing, "_missing\" does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := postgres.Connect(ctx, tc.url)
			if err == nil {
				pool.Close()
				t.Fatal("connected")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") {
				t.Fatalf("error %q: want one line containing %q and no password", msg, tc.want)
			}
		})
	}
}
