package main

// The connections scenario: many idle devices on parleyd running as its own
// process, a few of them sending at a fixed rate; parleyd's memory per
// connection, the connect rate, and with --storm the reconnect storm after
// a kill -9.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
)

// perSource is how many connections dial from one source address:
// 127.0.0.2 for the first perSource devices, 127.0.0.3 for the next, and so
// on, each well within one address's ephemeral ports (28,232 by default).
const perSource = 10000

// reservedFiles are the descriptors the load generator keeps for itself
// (the runtime, HTTP probes, parleyd's log pipe) besides one per connection.
const reservedFiles = 100

// connsRun is the state of one connections-scenario run that the shared
// runner code consults (dialing, dropped connections, latency).
type connsRun struct {
	r        *runner
	d        *daemon
	ctx      context.Context
	progress io.Writer // nil: no progress lines

	// storming is set at the kill and stays set: from then on deliveries
	// no longer count in the idle phase's latency.
	storming  atomic.Bool
	killAt    int64          // Unix nanoseconds
	back      []atomic.Int64 // per user: when its device was connected again (0: not yet)
	backCount atomic.Int64
	gaveUp    atomic.Int64
	dials     atomic.Int64
	failed    atomic.Int64
	skipped   atomic.Int64 // sender ticks skipped because the sender was reconnecting
	redialLat *histogram
	// refusedBeforeStorm counts the refused sends before the kill.
	refusedBeforeStorm int

	redials   sync.WaitGroup // the redial goroutines
	redialing atomic.Int64   // devices redialing now
	fds       atomic.Int64   // parleyd's open descriptors, sampled during the storm
	maxFDs    atomic.Int64

	mu        sync.Mutex
	failures  map[string]int // failed redials by failKind
	stormOver bool           // set when storm returns: later drops are lost connections
}

// source is the address device i dials from.
func (cr *connsRun) source(i int) *net.TCPAddr {
	a := 2 + i/perSource
	return &net.TCPAddr{IP: net.IPv4(127, byte(a>>16), byte(a>>8), byte(a))}
}

// sendLoop is a sender's loop at a fixed rate until r.stop. A tick that
// finds the sender's own connection down (during a storm) is skipped and
// counted; sends go on on the new connection once it is back.
func (cr *connsRun) sendLoop(u *user, interval time.Duration, first time.Time) {
	r := cr.r
	qos := byte(r.cfg.QoS)
	dev := u.devices[0]
	next := first
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-r.stop:
			return
		}
		t := next.UnixNano()
		next = next.Add(interval)
		timer.Reset(time.Until(next))
		select {
		case u.slots <- struct{}{}:
		case <-r.stop:
			return
		}
		u.mu.Lock()
		c := dev.c
		if c == nil || c.closed() {
			u.mu.Unlock()
			<-u.slots
			cr.skipped.Add(1)
			continue
		}
		n := len(u.sent)
		u.buf = appendSend(u.buf[:0], r.tp.run, u.idx, n, t, r.cfg.Size)
		pid := u.newPID(r.cfg.PacketIDs == "cycle")
		u.pending[pid] = int32(n)
		u.sent = append(u.sent, msgRec{t: t})
		u.mu.Unlock()
		if c.publish(u.topic, qos, pid, u.buf) == nil {
			r.sent.Add(1)
		}
	}
}

// connsResult holds the figures of one connections-scenario run.
type connsResult struct {
	Name  string `json:"name"`
	Store string `json:"store"`

	Devices         int     `json:"devices"`
	Senders         int     `json:"senders"`
	SourceAddrs     int     `json:"source_addresses"`
	OpenFilesLimit  uint64  `json:"open_files_limit"`
	Connected       int64   `json:"connected"`
	ConnectFailures int64   `json:"connect_failures"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	ConnectRate     float64 `json:"connect_rate"`
	ConnectP50Ms    float64 `json:"connect_p50_ms"`
	ConnectP99Ms    float64 `json:"connect_p99_ms"`
	// CPUPerConnectMs is parleyd's CPU time (user and system) during the
	// connect phase divided by the devices connected.
	CPUPerConnectMs float64 `json:"parleyd_cpu_per_connect_ms"`
	// BenchCPUPerConnectMs is the same for the load generator: both share
	// the machine's cores.
	BenchCPUPerConnectMs float64 `json:"bench_cpu_per_connect_ms"`

	// Parleyd before any device connected and after all had (and had
	// settled); the per-connection figures divide the difference by the
	// devices connected.
	Before          procStats `json:"parleyd_before"`
	After           procStats `json:"parleyd_after"`
	RSSPerConnKiB   float64   `json:"rss_per_conn_kib"`
	HeapPerConnKiB  float64   `json:"heap_per_conn_kib"`
	StackPerConnKiB float64   `json:"stack_per_conn_kib"`
	GoroutinesPer   float64   `json:"goroutines_per_conn"`
	// AfterIdle is parleyd at the end of the idle phase: more garbage
	// collections have run by then (the Go heap in use and RSS include
	// garbage not yet collected).
	AfterIdle            procStats  `json:"parleyd_after_idle"`
	RSSPerConnAfterIdle  float64    `json:"rss_per_conn_after_idle_kib"`
	HeapPerConnAfterIdle float64    `json:"heap_per_conn_after_idle_kib"`
	AfterStorm           *procStats `json:"parleyd_after_storm,omitempty"`

	// The idle phase: --duration with the senders at --rate.
	IdleSeconds float64   `json:"idle_seconds"`
	Acked       int64     `json:"acked"`
	Latency     latencies `json:"latency_ms"`
	// AckedTotal counts the sends acknowledged in the whole run, the
	// storm included.
	AckedTotal int64 `json:"acked_total"`

	Storm *stormResult `json:"storm,omitempty"`

	DrainSeconds    float64 `json:"drain_seconds"`
	Verify          verdict `json:"verify"`
	Gaps            int64   `json:"gap_events"`
	LostConnections int64   `json:"lost_connections"`
	// Refused counts sends answered with an error event, by code.
	Refused   map[string]int `json:"refused,omitempty"`
	ServerLog []logLine      `json:"server_log,omitempty"`
	Problems  []string       `json:"problems,omitempty"`
	OK        bool           `json:"ok"`
}

// runConnsMain runs the connections scenario on each store and prints the
// results; it returns the exit status.
func runConnsMain(ctx context.Context, cfg *config, progress, stdout, stderr io.Writer) int {
	limit, err := raiseOpenFiles()
	if err != nil {
		fmt.Fprintln(stderr, "parley-bench:", err)
	}
	if need := uint64(cfg.Conns) + reservedFiles; limit < need {
		fmt.Fprintf(stderr, "parley-bench: --conns %d needs %d open files in this process, the limit is %d (ulimit -n)\n", cfg.Conns, need, limit)
		return 2
	}
	id := newRunID()
	var runs []*connsResult
	for i, store := range cfg.Stores {
		res, err := runConns(ctx, cfg, store, id+fmt.Sprint(i), limit, progress, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "parley-bench: parley-%s: %v\n", store, err)
			return 1
		}
		runs = append(runs, res)
	}
	ok := true
	for _, r := range runs {
		ok = ok && r.OK
	}
	return printResult(stdout, stderr, cfg.JSON, map[string]any{"settings": cfg, "runs": runs, "ok": ok},
		func() { printConns(stdout, cfg, runs) }, ok)
}

// runConns runs the connections scenario once, on store.
func runConns(ctx context.Context, cfg *config, store, run string, limit uint64, progress, stderr io.Writer) (*connsResult, error) {
	lc := newLogCounter(stderr, cfg.logLevel)
	dataDir, err := os.MkdirTemp(cfg.DataDir, "parley-bench-")
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	defer os.RemoveAll(dataDir)
	var dbURL string
	if store == "postgres" {
		if dbURL = os.Getenv("PARLEY_DATABASE_URL"); dbURL == "" {
			cluster, err := pgtest.StartCluster()
			if err != nil {
				return nil, fmt.Errorf("start a throwaway PostgreSQL (or set PARLEY_DATABASE_URL): %w", err)
			}
			defer cluster.Destroy()
			if dbURL, err = cluster.CreateDB(ctx, "parley_bench"); err != nil {
				return nil, fmt.Errorf("create database: %w", err)
			}
		}
	}
	d, err := newDaemon(cfg.Parleyd, dataDir, dbURL, lc)
	if err != nil {
		return nil, err
	}
	note := func(format string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, "\r\033[Kparley-%s: %s\n", store, fmt.Sprintf(format, a...))
		}
	}
	note("starting %s", cfg.Parleyd)
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	defer d.stop()
	srv := &server{name: "parley-" + store, mode: modeParley, addrs: []string{d.mqttAddr}, httpURL: "http://" + d.httpAddr,
		sign: d.sign, log: lc, close: func() {}}
	tp := newTopology(run, cfg.Conns, 1, 0)
	r := newRunner(cfg, srv, tp)
	cr := &connsRun{r: r, d: d, ctx: ctx, back: make([]atomic.Int64, cfg.Conns), redialLat: new(histogram), progress: progress}
	r.conns = cr
	res := &connsResult{Name: srv.name, Store: store, Devices: cfg.Conns, OpenFilesLimit: limit,
		SourceAddrs: (cfg.Conns + perSource - 1) / perSource}

	time.Sleep(time.Second) // parleyd's start-up work
	if res.Before, err = d.stats(ctx); err != nil {
		return nil, err
	}
	note("connecting %d devices", cfg.Conns)
	benchCPU := processCPU()
	connect := r.connectAll(ctx)
	benchCPU = processCPU() - benchCPU
	mid, err := d.stats(ctx)
	if err != nil {
		return nil, err
	}
	res.Connected, res.ConnectFailures = r.connected.Load(), r.connectFailures.Load()
	if res.Connected == 0 {
		r.disconnectAll()
		return nil, fmt.Errorf("no device could connect: %s", strings.Join(r.problems, "; "))
	}
	res.ConnectSeconds = connect.Seconds()
	res.ConnectRate = float64(res.Connected) / connect.Seconds()
	res.ConnectP50Ms, res.ConnectP99Ms = ms(r.connLat.quantile(0.5)), ms(r.connLat.quantile(0.99))
	res.CPUPerConnectMs = ms((mid.cpu - res.Before.cpu).Nanoseconds()) / float64(res.Connected)
	res.BenchCPUPerConnectMs = ms(benchCPU.Nanoseconds()) / float64(res.Connected)
	time.Sleep(2 * time.Second) // catch-ups and the first cursor writes
	if res.After, err = d.stats(ctx); err != nil {
		return nil, err
	}
	perConn := func(a, b int64) float64 { return float64(a-b) / 1024 / float64(res.Connected) }
	res.RSSPerConnKiB = perConn(res.After.RSSBytes, res.Before.RSSBytes)
	res.HeapPerConnKiB = perConn(res.After.HeapBytes, res.Before.HeapBytes)
	res.StackPerConnKiB = perConn(res.After.StackBytes, res.Before.StackBytes)
	res.GoroutinesPer = float64(res.After.Gorouts-res.Before.Gorouts) / float64(res.Connected)

	// The senders: a share of the users, spread over them.
	var senders []*user
	for _, u := range r.users {
		if int(float64(u.idx+1)*cfg.Senders) > int(float64(u.idx)*cfg.Senders) && u.devices[0].c != nil {
			senders = append(senders, u)
		}
	}
	res.Senders = len(senders)
	interval := time.Duration(float64(len(senders)) / cfg.Rate * float64(time.Second))
	note("idle for %s, %d senders at %.0f/s in all", cfg.Duration, len(senders), cfg.Rate)
	start := time.Now()
	r.sendStart.Store(start.UnixNano())
	r.measuring.Store(true)
	var wg sync.WaitGroup
	for i, u := range senders {
		first := start.Add(time.Duration(int64(interval) * int64(i) / int64(len(senders))))
		wg.Add(1)
		go func() { defer wg.Done(); cr.sendLoop(u, interval, first) }()
	}
	stopProgress := r.progress(progress, start)
	sleepUntil(ctx, start.Add(cfg.Duration))
	res.IdleSeconds = time.Since(start).Seconds()
	if res.AfterIdle, err = d.stats(ctx); err == nil {
		res.RSSPerConnAfterIdle = perConn(res.AfterIdle.RSSBytes, res.Before.RSSBytes)
		res.HeapPerConnAfterIdle = perConn(res.AfterIdle.HeapBytes, res.Before.HeapBytes)
	}
	res.Latency = latenciesOf(r.lat)
	res.Acked = r.acked.Load()
	if cfg.Storm && ctx.Err() == nil {
		stopProgress()
		note("storm: kill -9 parleyd (pid %d), start it again", d.pid())
		storm, err := cr.storm(ctx)
		if err != nil {
			close(r.stop)
			wg.Wait()
			r.disconnectAll()
			return nil, err
		}
		res.Storm = storm
		if s, err := d.stats(ctx); err == nil {
			res.AfterStorm = &s
		}
		stopProgress = func() {}
	}
	r.sendEnd.Store(time.Now().UnixNano())
	r.measuring.Store(false)
	close(r.stop)
	wg.Wait()
	stopProgress()
	for _, u := range senders {
		u.waitAcks(10 * time.Second)
	}
	note("waiting for deliveries")
	drainStart := time.Now()
	r.drain(ctx)
	res.DrainSeconds = time.Since(drainStart).Seconds()
	lc.mute() // what the disconnects cause is not the run's
	r.disconnectAll()
	if res.Storm != nil {
		cr.stormFigures(res.Storm)
	}
	res.AckedTotal = r.acked.Load()
	res.Verify = r.verify()
	res.Gaps = r.gaps.Load()
	res.LostConnections = r.lostConns.Load()
	res.ServerLog = lc.summary()
	res.Problems = r.problems
	v := res.Verify
	res.Refused = r.refused
	// A send refused during a storm (unavailable: the store could not take
	// it in time) is not lost, its sender knows; it is reported. Before
	// the storm, a refusal fails the run.
	refusedOK := len(r.refused) == 0 || (res.Storm != nil && res.Acked > 0 && cr.refusedBeforeStorm == 0)
	res.OK = v.Losses == 0 && v.Mismatches == 0 && v.Reorders == 0 && refusedOK &&
		res.ConnectFailures == 0 && res.LostConnections == 0 && res.Acked > 0 &&
		(res.Storm == nil || (res.Storm.Incomplete == 0 && res.Storm.NotBack == 0))
	return res, nil
}

func latenciesOf(h *histogram) latencies {
	return latencies{Samples: h.count(), P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)),
		P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)), Max: ms(h.max.Load())}
}

// printConns prints the connections scenario's figures, one column per run.
func printConns(w io.Writer, cfg *config, runs []*connsResult) {
	fmt.Fprintf(w, "connections: %d devices (one per user, direct pairs), connect rate %s, %d at a time; %.0f%% of them send %.0f msgs/s in all, %d-byte bodies, QoS %d, for %s",
		cfg.Conns, rateText(cfg.ConnectRate), cfg.ConnectConcurrency, cfg.Senders*100, cfg.Rate, cfg.Size, cfg.QoS, cfg.Duration)
	if cfg.Storm {
		backoff := "all at once"
		if cfg.StormBackoff > 0 {
			backoff = "backoff " + cfg.StormBackoff.String() + " with jitter"
		}
		fmt.Fprintf(w, "; then kill -9 and restart (%s)", backoff)
	}
	fmt.Fprintln(w)
	type row struct {
		label string
		get   func(*connsResult) string
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	n := func(v int64) string { return fmt.Sprint(v) }
	rows := []row{
		{"devices connected", func(r *connsResult) string { return n(r.Connected) }},
		{"source addresses", func(r *connsResult) string { return fmt.Sprint(r.SourceAddrs) }},
		{"connects/s", func(r *connsResult) string { return f0(r.ConnectRate) }},
		{"connect p50", func(r *connsResult) string { return fmtMsF(r.ConnectP50Ms) }},
		{"connect p99", func(r *connsResult) string { return fmtMsF(r.ConnectP99Ms) }},
		{"parleyd CPU per connect", func(r *connsResult) string { return fmt.Sprintf("%.2f ms", r.CPUPerConnectMs) }},
		{"bench CPU per connect", func(r *connsResult) string { return fmt.Sprintf("%.2f ms", r.BenchCPUPerConnectMs) }},
		{"parleyd RSS before", func(r *connsResult) string { return mib(r.Before.RSSBytes) }},
		{"parleyd RSS after", func(r *connsResult) string { return mib(r.After.RSSBytes) }},
		{"RSS per connection", func(r *connsResult) string { return f1(r.RSSPerConnKiB) + " KiB" }},
		{"Go heap per connection", func(r *connsResult) string { return f1(r.HeapPerConnKiB) + " KiB" }},
		{"… RSS after idle phase", func(r *connsResult) string { return f1(r.RSSPerConnAfterIdle) + " KiB" }},
		{"… Go heap after idle", func(r *connsResult) string { return f1(r.HeapPerConnAfterIdle) + " KiB" }},
		{"Go stacks per connection", func(r *connsResult) string { return f1(r.StackPerConnKiB) + " KiB" }},
		{"goroutines per connection", func(r *connsResult) string { return fmt.Sprintf("%.2f", r.GoroutinesPer) }},
		{"idle: senders", func(r *connsResult) string { return fmt.Sprint(r.Senders) }},
		{"idle: latency p50", func(r *connsResult) string { return fmtMsF(r.Latency.P50) }},
		{"idle: latency p99", func(r *connsResult) string { return fmtMsF(r.Latency.P99) }},
		{"idle: latency max", func(r *connsResult) string { return fmtMsF(r.Latency.Max) }},
	}
	if cfg.Storm {
		st := func(get func(*stormResult) string) func(*connsResult) string {
			return func(r *connsResult) string {
				if r.Storm == nil {
					return "-"
				}
				return get(r.Storm)
			}
		}
		sec := func(v float64) string { return fmt.Sprintf("%.2f s", v) }
		rows = append(rows,
			row{"storm: devices", st(func(s *stormResult) string { return fmt.Sprint(s.Devices) })},
			row{"storm: /readyz first 200", st(func(s *stormResult) string { return sec(s.RestartSeconds) })},
			row{"storm: first device back", st(func(s *stormResult) string { return sec(s.FirstBackSeconds) })},
			row{"storm: all connected", st(func(s *stormResult) string {
				if s.NotBack > 0 {
					return fmt.Sprintf("never (%d not)", s.NotBack)
				}
				return sec(s.AllConnectedSeconds)
			})},
			row{"storm: parleyd max fds", st(func(s *stormResult) string { return fmt.Sprint(s.MaxOpenFDs) })},
			row{"storm: all caught up", st(func(s *stormResult) string {
				if s.CaughtUpSeconds == 0 {
					return "never"
				}
				return sec(s.CaughtUpSeconds)
			})},
			row{"storm: dials (failed)", st(func(s *stormResult) string { return fmt.Sprintf("%d (%d)", s.Dials, s.FailedDials) })},
			row{"storm: redial p99", st(func(s *stormResult) string { return fmtMsF(s.RedialP99Ms) })},
			row{"storm: /readyz not 200", st(func(s *stormResult) string {
				return fmt.Sprintf("%d of %d", s.ReadyzFailed, s.ReadyzProbes)
			})},
			row{"storm: … after ready", st(func(s *stormResult) string { return fmt.Sprint(s.ReadyzFailedAfterReady) })},
			row{"storm: … timed out (1s)", st(func(s *stormResult) string { return fmt.Sprint(s.ReadyzTimeouts) })},
			row{"storm: live samples", st(func(s *stormResult) string { return fmt.Sprint(s.Latency.Samples) })},
			row{"storm: live p50", st(func(s *stormResult) string { return fmtMsF(s.Latency.P50) })},
			row{"storm: live p99", st(func(s *stormResult) string { return fmtMsF(s.Latency.P99) })},
			row{"storm: sends skipped", st(func(s *stormResult) string { return fmt.Sprint(s.SkippedSends) })},
			row{"parleyd RSS after storm", func(r *connsResult) string {
				if r.AfterStorm == nil {
					return "-"
				}
				return mib(r.AfterStorm.RSSBytes)
			}},
		)
	}
	rows = append(rows,
		row{"sends acked", func(r *connsResult) string { return n(r.AckedTotal) }},
		row{"deliveries expected", func(r *connsResult) string { return n(r.Verify.Expected) }},
		row{"losses", func(r *connsResult) string { return n(r.Verify.Losses) }},
		row{"duplicates", func(r *connsResult) string { return n(r.Verify.Duplicates) }},
		row{"reorders", func(r *connsResult) string { return n(r.Verify.Reorders) }},
		row{"mismatches", func(r *connsResult) string { return n(r.Verify.Mismatches) }},
		row{"refused sends", func(r *connsResult) string {
			k := 0
			for _, c := range r.Refused {
				k += c
			}
			return fmt.Sprint(k)
		}},
		row{"failed/lost connections", func(r *connsResult) string { return n(r.ConnectFailures + r.LostConnections) }},
	)
	header := fmt.Sprintf("%-*s", labelWidth+2, "")
	for _, r := range runs {
		header += fmt.Sprintf("%16s", r.Name)
	}
	fmt.Fprintln(w, header)
	for _, rw := range rows {
		line := fmt.Sprintf("%-*s", labelWidth+2, rw.label)
		for _, r := range runs {
			line += fmt.Sprintf("%16s", rw.get(r))
		}
		fmt.Fprintln(w, line)
	}
	for _, r := range runs {
		status := "OK"
		if !r.OK {
			status = "FAILED"
		}
		fmt.Fprintf(w, "%s: %s\n", r.Name, status)
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  ", p)
		}
		if r.Storm != nil {
			var kinds []string
			for k := range r.Storm.Failures {
				kinds = append(kinds, k)
			}
			sort.Slice(kinds, func(i, j int) bool { return r.Storm.Failures[kinds[i]] > r.Storm.Failures[kinds[j]] })
			for _, k := range kinds {
				fmt.Fprintf(w, "   storm: %d× redial failed: %s\n", r.Storm.Failures[k], k)
			}
		}
		lines := r.ServerLog
		sort.SliceStable(lines, func(i, j int) bool { return lines[i].Count > lines[j].Count })
		for i, l := range lines {
			if i == 8 {
				fmt.Fprintf(w, "   server log: %d more kinds of warnings\n", len(lines)-8)
				break
			}
			fmt.Fprintf(w, "   server log: %d× %s\n", l.Count, l.Message)
		}
	}
}

func rateText(r float64) string {
	if r == 0 {
		return "unpaced"
	}
	return fmt.Sprintf("%.0f/s", r)
}
