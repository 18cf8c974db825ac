// Package testkit holds what the tests of several packages share: a store
// per test (SQLite in a temporary directory, or a fresh PostgreSQL database
// from pgtest), tokens signed with the test secret, a quiet logger, free
// loopback ports, an embedded NATS server and polling for a condition.
//
// It is for tests only: nothing outside _test.go files imports it.
package testkit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/pgtest"
)

// Secret is the HS256 secret of the brokers that tests start; Token signs
// with it.
const Secret = "test-secret-0123456789abcdef0123"

// Token returns a token for user signed with Secret, valid for a day: longer
// than any test runs, the long fault runs included.
func Token(tb testing.TB, user string) string {
	tb.Helper()
	tok, err := (&auth.Tokens{Secret: []byte(Secret)}).Sign(user, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Logger returns a logger that discards everything, or logs at debug level
// to stderr when PARLEY_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

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

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// RunNATS starts an embedded NATS server with opts (nil for none) on
// 127.0.0.1, on opts.Port or a free port when it is 0, and shuts it down
// when tb ends.
func RunNATS(tb testing.TB, opts *natsserver.Options) *natsserver.Server {
	tb.Helper()
	if opts == nil {
		opts = &natsserver.Options{}
	}
	opts.Host, opts.NoLog, opts.NoSigs = "127.0.0.1", true, true
	if opts.Port == 0 {
		opts.Port = -1
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}

// Eventually polls cond every 10ms until it holds and fails the test if it
// does not within timeout.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
