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
	"github.com/parley-im/parley/migrations"
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

// TestHelpAndVersion: -h lists the subcommands and serve's flags; each
// subcommand's -h lists only the flags it uses; version and --version print
// the build; an unknown command or a missing USER exits 2.
func TestHelpAndVersion(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		code    int
		want    []string
		notWant []string
	}{
		{"Help", []string{"-h"}, 0, []string{"parleyd [serve] [flags]", "parleyd migrate [flags]", "parleyd token [flags] USER", "parleyd version", "-mqtt-addr", "PARLEY_MQTT_ADDR", "Exit status"}, nil},
		{"HelpCommand", []string{"help"}, 0, []string{"parleyd token [flags] USER", "parleyd version"}, nil},
		{"ServeHelp", []string{"serve", "-h"}, 0, []string{"parleyd migrate", "-nats-url"}, nil},
		{"TokenHelp", []string{"token", "-h"}, 0, []string{"parleyd token [flags] USER", "-ttl", "-data-dir", "-jwt-secret", "never creates a secret"},
			[]string{"-mqtt-addr", "-nats-url", "-database-url", "-rate"}},
		{"MigrateHelp", []string{"migrate", "-h"}, 0, []string{"parleyd migrate [flags]", "-database-url", "-data-dir"}, []string{"-mqtt-addr", "-ttl", "-jwt-secret"}},
		{"Version", []string{"version"}, 0, []string{"parleyd ", "go1."}, nil},
		{"DashVersion", []string{"--version"}, 0, []string{"parleyd ", "go1."}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, "", nil, tc.args...)
			if r.code != tc.code || r.stderr != "" {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("output does not contain %q:\n%s", w, r.stdout)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(r.stdout, w) {
					t.Errorf("output contains %q:\n%s", w, r.stdout)
				}
			}
		})
	}
	errCases := []struct {
		name string
		args []string
		want []string
	}{
		{"UnknownCommand", []string{"tokn", "alice"}, []string{`unknown command "tokn"`, "parleyd -h"}},
		{"UnknownFlag", []string{"-bogus"}, []string{"-bogus", "parleyd -h"}},
		{"TokenWithoutUser", []string{"token"}, []string{"USER"}},
		{"TokenZeroTTL", []string{"token", "alice", "--ttl", "0"}, []string{"--ttl"}},
		{"VersionArgs", []string{"version", "extra"}, []string{"extra"}},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, "", nil, tc.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\n%s", r.code, r.stderr)
			}
			oneLine(t, r.stderr, tc.want...)
		})
	}
}

// TestTokenNeverCreatesSecret: parleyd token without a secret fails, saying
// where it looked and how to point it at the server's data dir, and creates
// nothing; with the server's data dir or secret it prints a token.
func TestTokenNeverCreatesSecret(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, "token", "alice")
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, want 1 and nothing", r.code, r.stdout)
	}
	oneLine(t, r.stderr, filepath.Join(dir, "data", secretFile), "-data-dir", "PARLEY_DATA_DIR", "PARLEY_JWT_SECRET")
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token created ./data: %v", err)
	}
	r = runBin(t, dir, []string{"PARLEY_DATABASE_URL=postgres://parley@127.0.0.1:1/parley"}, "token", "alice")
	if r.code != 1 {
		t.Fatalf("with PostgreSQL: exit %d, want 1", r.code)
	}
	oneLine(t, r.stderr, "PARLEY_JWT_SECRET")

	server := t.TempDir()
	if err := os.WriteFile(filepath.Join(server, secretFile), []byte("the-servers-secret-the-servers-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env  []string
		args []string
	}{
		"DataDirFlag":   {nil, []string{"token", "alice", "--data-dir", server}},
		"DataDirEnv":    {[]string{"PARLEY_DATA_DIR=" + server, "PARLEY_RATE=not-a-number"}, []string{"token", "alice"}},
		"SecretEnv":     {[]string{"PARLEY_JWT_SECRET=the-servers-secret-the-servers-secret"}, []string{"token", "alice"}},
		"FlagsAnyWhere": {[]string{"PARLEY_JWT_SECRET=s3cret-s3cret-s3cret-s3cret-s3cret"}, []string{"token", "-mqtt-addr", ":1", "alice", "-ttl", "1h"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := runBin(t, dir, tc.env, tc.args...)
			if r.code != 0 || strings.Count(r.stdout, ".") != 2 {
				t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("token created ./data: %v", err)
	}
}

// TestMigrateOutput: parleyd migrate says what it applied, then that the
// schema is up to date, on both stores.
func TestMigrateOutput(t *testing.T) {
	latest := fmt.Sprintf("%05d", migrations.Latest(migrations.SQLite()))
	dir := t.TempDir()
	pg := pgtest.DB(t)
	for _, tc := range []struct {
		name, env, store string
	}{
		{"SQLite", "PARLEY_DATA_DIR=" + dir, "embedded SQLite in " + dir},
		{"Postgres", "PARLEY_DATABASE_URL=" + pg, "PostgreSQL at postgres@127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, want := range []string{"applied 00001.." + latest, "up to date at " + latest} {
				r := runBin(t, "", []string{tc.env, "PARLEY_LOG_LEVEL=warn"}, "migrate")
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("run %d: exit %d\n%s", i+1, r.code, r.stderr)
				}
				oneLine(t, r.stdout, tc.store, ": "+want)
			}
		})
	}
}

// TestPortInUse: an address in use ends parleyd with one line naming it and
// its setting, exit 1, before anything else (no data dir, no secret); an
// address that cannot be one exits 2.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name, env string
		code      int
		want      []string
	}{
		{"MQTT", "PARLEY_MQTT_ADDR=" + ln.Addr().String(), 1, []string{ln.Addr().String(), "address already in use", "PARLEY_MQTT_ADDR"}},
		{"HTTP", "PARLEY_HTTP_ADDR=" + ln.Addr().String(), 1, []string{ln.Addr().String(), "address already in use", "PARLEY_HTTP_ADDR"}},
		{"NotAnAddress", "PARLEY_WS_ADDR=8083", 2, []string{`"8083"`, "PARLEY_WS_ADDR", "missing port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			r := runBin(t, "", []string{tc.env, "PARLEY_DATA_DIR=" + data})
			t.Log(r.stderr)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			oneLine(t, r.stderr, tc.want...)
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data dir was created before listening: %v", err)
			}
		})
	}
}
