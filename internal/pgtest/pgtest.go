// Package pgtest gives tests a real PostgreSQL. DB returns the URL of a fresh,
// empty database for one test: on the server named by PARLEY_TEST_DATABASE_URL
// when it is set, otherwise on a throwaway cluster that the package starts
// from the local server binaries (initdb and pg_ctl on PATH or under
// /usr/lib/postgresql/*/bin, run as the postgres user when running as root).
// NewCluster starts a private cluster that a test may stop and start again.
//
// Without PostgreSQL binaries, tests fail when the CI environment variable is
// set and are skipped otherwise, with a message starting "pgtest:" that
// scripts/testsummary (make test) counts: make test fails on such skips
// unless PARLEY_ALLOW_SKIPS=1.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/internal/testport"
)

// Cluster is a PostgreSQL server started by this package.
type Cluster struct {
	dir   string
	bin   string
	port  int
	runAs string
	mu    sync.Mutex
}

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Main runs the tests of a package and then stops the shared cluster, if one
// was started. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.destroy()
	}
	return code
}

// DB returns the URL of a new empty database for tb, dropped when tb ends.
func DB(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("PARLEY_TEST_DATABASE_URL")
	if base == "" {
		sharedOnce.Do(func() { shared, sharedErr = start() })
		if sharedErr != nil {
			unavailable(tb, sharedErr)
		}
		base = shared.URL("postgres")
	}
	return createDB(tb, base)
}

// NewCluster starts a private cluster for tb, removed when tb ends. Use it for
// tests that stop and start the server.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := start()
	if err != nil {
		unavailable(tb, err)
	}
	tb.Cleanup(c.destroy)
	return c
}

// StartCluster starts a private cluster outside of a test (for benchmarks and
// tools); Destroy removes it.
func StartCluster() (*Cluster, error) { return start() }

// Destroy stops the cluster and removes its files.
func (c *Cluster) Destroy() { c.destroy() }

// CreateDB creates database name on c and returns its URL.
func (c *Cluster) CreateDB(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return c.URL(name), nil
}

// DB returns the URL of a new empty database on c, for tb.
func (c *Cluster) DB(tb testing.TB) string {
	tb.Helper()
	return createDB(tb, c.URL("postgres"))
}

// URL returns the connection URL of database db on c.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Stop stops the server immediately (as a crash would), keeping its data.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run(c.bin+"/pg_ctl", "-D", c.dir+"/data", "-m", "immediate", "-w", "stop")
}

// Start starts the server again on the same port and data.
//
// autovacuum_naptime=1 lets the tables of a new database be analyzed within
// a second of growing, as a long-running database's are: otherwise, for its
// first minute, statements that were prepared while a table was nearly empty
// can keep a plan that scans it whole (the load generator's PostgreSQL runs
// went from about 1.7 ms to 11-17 ms p50 at 3000 messages/s in some runs).
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run(c.bin+"/pg_ctl", "-D", c.dir+"/data", "-l", c.dir+"/log", "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c autovacuum_naptime=1", c.port, c.dir), "start")
}

func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("pgtest: PostgreSQL is required in CI: %v", err)
	}
	tb.Skipf("pgtest: SKIPPING, no PostgreSQL (set PARLEY_TEST_DATABASE_URL or install the server binaries): %v", err)
}

// Connect opens a connection to the database at url for a test's checks,
// failing tb when it cannot, and returns it with a context that gives them 30
// seconds. Call done when finished: it closes the connection.
func Connect(tb testing.TB, url string) (ctx context.Context, conn *pgx.Conn, done func()) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		cancel()
		tb.Fatalf("pgtest: connect: %v", err)
	}
	return ctx, conn, func() {
		conn.Close(ctx)
		cancel()
	}
}

func createDB(tb testing.TB, base string) string {
	tb.Helper()
	ctx, conn, done := Connect(tb, base)
	defer done()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "parley_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("pgtest: parse url: %v", err)
	}
	u.Path = "/" + name
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return // the server is gone (a stopped private cluster): nothing to drop
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return u.String()
}

// binDir finds the directory holding initdb and pg_ctl.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "pg_ctl")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb not found on PATH or under /usr/lib/postgresql/*/bin")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "parley-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		pg, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.runAs = "postgres"
	}
	if err := c.run(bin+"/initdb", "-D", dir+"/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if c.port, err = testport.Free(); err != nil {
			return nil, err
		}
		if err = c.Start(); err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) destroy() {
	_ = c.run(c.bin+"/pg_ctl", "-D", c.dir+"/data", "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.dir)
}

func (c *Cluster) run(name string, args ...string) error {
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return nil
}
