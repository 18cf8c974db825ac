package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/parley-im/parley/internal/pgtest"
)

// The parleyd binary, built once for the package's tests (see TestMain).
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// parleydBin builds the real parleyd binary once and returns its path.
func parleydBin(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "parleyd-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "parleyd")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// result is how a run of the binary ended.
type result struct {
	stdout, stderr string
	code           int
}

// runBin runs parleyd with args in dir (a new empty directory when empty),
// with no PARLEY_* variable from the test's environment but env, on ports
// chosen by the system, and waits at most 60 s for it to exit.
func runBin(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, parleydBin(t), args...)
	cmd.Dir = dir
	cmd.Env = binEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("parleyd %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("parleyd %s: still running after 60s\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// binEnv is the test's environment without PARLEY_* variables, with
// listeners on system-chosen loopback ports, then env.
func binEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			out = append(out, kv)
		}
	}
	out = append(out, "PARLEY_MQTT_ADDR=127.0.0.1:0", "PARLEY_WS_ADDR=127.0.0.1:0", "PARLEY_HTTP_ADDR=127.0.0.1:0")
	return append(out, env...)
}

// oneLine fails unless s is exactly one line, not a panic, containing every
// string in want.
func oneLine(t *testing.T, s string, want ...string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || strings.Contains(s, "panic") || strings.Contains(s, "goroutine") {
		t.Fatalf("want one line, got:\n%s", s)
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("%q does not contain %q", s, w)
		}
	}
}

// fakePostgres listens like a PostgreSQL server that refuses every login
// with SQLSTATE 28P01, as a server does on a wrong password (the test
// clusters trust every login). It returns its address.
func fakePostgres(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go refuseLogin(c)
		}
	}()
	return ln.Addr().String()
}

func refuseLogin(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(c, c)
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.Write([]byte("N")); err != nil {
				return
			}
		case *pgproto3.StartupMessage:
			be.Send(&pgproto3.AuthenticationCleartextPassword{})
			if be.Flush() != nil || be.SetAuthType(pgproto3.AuthTypeCleartextPassword) != nil {
				return
			}
			if _, err := be.Receive(); err != nil {
				return
			}
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01",
				Message: fmt.Sprintf("password authentication failed for user %q", msg.Parameters["user"])})
			_ = be.Flush()
			return
		default:
			return
		}
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStoreErrors: every way the store can fail to open ends parleyd with
// one line naming the cause and the setting to check, exit status 1 (2 for
// a configuration that cannot work), never a panic, never the password.
func TestStoreErrors(t *testing.T) {
	const secret = "PARLEY_JWT_SECRET=store-errors-secret-store-errors"
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "parley.db"), bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  func(t *testing.T) []string
		code int
		want []string
	}{
		{"NotAURL", func(*testing.T) []string { return []string{secret, "PARLEY_DATABASE_URL=notaurl"} },
			2, []string{"PARLEY_DATABASE_URL", "postgres://user:password@host:5432/dbname"}},
		{"BadPort", func(*testing.T) []string {
			return []string{secret, "PARLEY_DATABASE_URL=postgres://parley:hunter2@localhost:port/parley"}
		}, 2, []string{"PARLEY_DATABASE_URL", "invalid port"}},
		{"PostgresDown", func(t *testing.T) []string {
			return []string{secret, "PARLEY_DATABASE_URL=postgres://parley:hunter2@" + closedAddr(t) + "/parley?sslmode=disable"}
		}, 1, []string{"connect to parley@127.0.0.1:", "connection refused", "PARLEY_DATABASE_URL"}},
		{"WrongPassword", func(t *testing.T) []string {
			return []string{secret, "PARLEY_DATABASE_URL=postgres://parley:hunter2@" + fakePostgres(t) + "/parley?sslmode=disable"}
		}, 1, []string{"wrong password", `"parley"`, "PARLEY_DATABASE_URL"}},
		{"MissingDatabase", func(t *testing.T) []string {
			url := strings.Replace(pgtest.DB(t), "?", "_missing?", 1)
			return []string{secret, "PARLEY_DATABASE_URL=" + strings.Replace(url, "postgres@", "postgres:hunter2@", 1)}
		}, 1, []string{"does not exist", "PARLEY_DATABASE_URL"}},
		{"NoSecretWithPostgres", func(*testing.T) []string {
			return []string{"PARLEY_DATABASE_URL=postgres://parley:hunter2@127.0.0.1:1/parley"}
		}, 2, []string{"PARLEY_JWT_SECRET", "PostgreSQL"}},
		{"DataDirUncreatable", func(*testing.T) []string { return []string{"PARLEY_DATA_DIR=/proc/nope"} },
			1, []string{"/proc/nope", "PARLEY_DATA_DIR"}},
		{"DataDirUncreatableWithSecret", func(*testing.T) []string { return []string{secret, "PARLEY_DATA_DIR=/proc/nope"} },
			1, []string{"/proc/nope", "PARLEY_DATA_DIR"}},
		{"CorruptDatabase", func(*testing.T) []string { return []string{secret, "PARLEY_DATA_DIR=" + corrupt} },
			1, []string{filepath.Join(corrupt, "parley.db"), "not a database", "PARLEY_DATA_DIR"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, "", tc.env(t))
			t.Log(r.stderr)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			oneLine(t, r.stderr, append([]string{"parleyd: "}, tc.want...)...)
			if strings.Contains(r.stderr, "hunter2") {
				t.Fatalf("the password leaks: %s", r.stderr)
			}
		})
	}
}
