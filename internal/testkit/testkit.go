// Package testkit holds what the tests of several packages share: a store
// per test (SQLite in a temporary directory, or a fresh PostgreSQL database
// from pgtest), tokens signed with the test secret, a quiet logger, free
// loopback ports, an embedded NATS server and NATS account credentials, key
// pairs for signed tokens, the inbox event as a test decodes it, polling for
// a condition, files in a temporary directory and a buffer that goroutines
// may share.
//
// It is for tests only: nothing outside _test.go files imports it.
package testkit

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/auth"
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

// StableAddr returns a free loopback address whose port lies below the
// kernel's ephemeral range (Linux: 32768 and up), for a server that is
// killed and started again on the same port: no other test's listener on
// port 0, and no outgoing connection, can take the port while the server
// is down.
func StableAddr(tb testing.TB) string {
	tb.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return l.Addr().String()
	}
	tb.Fatal("no free port below the ephemeral range")
	return ""
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
