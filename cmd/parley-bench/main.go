// Command parley-bench is Parley's load generator. It simulates users with
// one or more devices in direct pairs or groups, sends at a target rate or
// flat out, measures acknowledged sends, deliveries, end-to-end latency,
// connect rate and catch-up time, and checks at the end that every
// acknowledged message reached every device that should have it, exactly
// once and in order. It runs Parley in-process (SQLite or PostgreSQL store),
// and with --baseline plain the identical traffic through a bare mochi-mqtt
// broker in the same process, printing the ratios; --target runs the raw MQTT
// scenario against any broker. --scenario connections runs parleyd as its own
// process with many idle devices and measures memory per connection, connect
// rate and, with --storm, the reconnect storm after a kill -9. See
// docs/benchmarks.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served with --pprof
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "parley-bench:", err)
		return 2
	}
	var progress io.Writer
	if cfg.Progress == "on" || (cfg.Progress == "auto" && isTerminal(stderr)) {
		progress = stderr
	}
	defer startPprof(cfg.PprofAddr, stderr)()
	if cfg.Scenario == "connections" {
		return runConnsMain(ctx, cfg, progress, stdout, stderr)
	}

	type spec struct{ name, store string }
	var specs []spec
	if cfg.target != nil {
		specs = append(specs, spec{name: "target"})
	}
	for _, s := range cfg.Stores {
		specs = append(specs, spec{name: "parley-" + s, store: s})
	}
	if cfg.Baseline == "plain" {
		specs = append(specs, spec{name: "plain"})
	}
	id := newRunID()
	var runs []*result
	for i, sp := range specs {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			runtime.GC() // the previous run's records are garbage now
			time.Sleep(settle(cfg))
		}
		lc := newLogCounter(stderr, cfg.logLevel)
		var srv *server
		switch {
		case sp.name == "target":
			srv = externalTarget(cfg)
		case sp.name == "plain":
			srv, err = startPlain(lc)
		default:
			srv, err = startParley(ctx, cfg, sp.store, lc)
		}
		if err != nil {
			fmt.Fprintf(stderr, "parley-bench: %s: %v\n", sp.name, err)
			return 1
		}
		res, err := runOne(ctx, cfg, srv, id+strconv.Itoa(i), progress, stderr)
		srv.log.mute()
		srv.close()
		if err != nil {
			fmt.Fprintf(stderr, "parley-bench: %s: %v\n", sp.name, err)
			return 1
		}
		runs = append(runs, res)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "parley-bench: interrupted")
		return 1
	}
	// The plain baseline is a reference, not under test: its verdict is
	// printed but does not set the exit status.
	ok := true
	for _, r := range runs {
		ok = ok && (r.OK || r.Name == "plain")
	}
	return printResult(stdout, stderr, cfg.JSON, &report{Settings: cfg, Runs: runs, Ratios: ratios(runs), OK: ok},
		func() { printTable(stdout, cfg, runs) }, ok)
}

// runOne runs the scenario once against srv.
func runOne(ctx context.Context, cfg *config, srv *server, run string, progress, stderr io.Writer) (*result, error) {
	tp := newTopology(run, cfg.Users, cfg.Devices, cfg.Group)
	if srv.mode == modeParley && cfg.Group > 0 {
		if err := createGroups(ctx, srv, tp); err != nil {
			return nil, err
		}
	}
	r := newRunner(cfg, srv, tp)
	note := func(format string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, "\r\033[K%s: %s\n", srv.name, fmt.Sprintf(format, a...))
		}
	}
	note("connecting %d devices", len(r.users)*cfg.Devices)
	connect := r.connectAll(ctx)
	if r.connectFailures.Load() == int64(len(r.users)*cfg.Devices) {
		r.disconnectAll()
		return nil, fmt.Errorf("no device could connect: %s", strings.Join(r.problems, "; "))
	}
	// Let the first catch-ups (Parley reads every new device's state from
	// the store) finish before measuring.
	time.Sleep(settle(cfg))
	note("sending")
	stopProfile, err := startProfile(cfg.CPUProfile, srv.name)
	if err != nil {
		r.disconnectAll()
		return nil, err
	}
	r.sendPhase(ctx, progress)
	stopProfile()
	note("waiting for deliveries")
	r.drain(ctx)
	srv.log.mute() // what the disconnects cause is not the run's
	r.disconnectAll()
	return r.result(connect.Seconds()), nil
}

// startPprof serves net/http/pprof on addr ("" does nothing) until the
// returned function is called.
func startPprof(addr string, stderr io.Writer) func() {
	if addr == "" {
		return func() {}
	}
	srv := &http.Server{Addr: addr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "parley-bench: pprof:", err)
		}
	}()
	return func() { srv.Close() }
}

// settle is the pause before a send phase: a second, shorter for short runs.
func settle(cfg *config) time.Duration {
	return min(time.Second, max(cfg.Duration/10, 100*time.Millisecond))
}

// startProfile starts a CPU profile to path (with the run name inserted
// before the extension); path "" does nothing.
func startProfile(path, name string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	ext := filepath.Ext(path)
	f, err := os.Create(strings.TrimSuffix(path, ext) + "." + name + ext)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// newRunID returns a short random id that names this invocation's users.
func newRunID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
