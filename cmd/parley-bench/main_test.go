package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// benchJSON runs the program with --json and decodes its report; it fails
// unless the exit status is want.
func benchJSON(t *testing.T, want int, args ...string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append(args, "--json", "--progress", "off"), &stdout, &stderr)
	if code != want {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, want, stdout.String(), stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	return rep
}

// checkRun asserts that a run moved messages, lost none, and that its
// figures agree with each other: the verdict adds up, the arrivals counted
// cover the deliveries reported, the rates match the counts, and the
// percentiles are ordered.
func checkRun(t *testing.T, r *result) {
	t.Helper()
	if !r.OK {
		t.Errorf("%s: not OK: %+v", r.Name, r)
	}
	if r.Acked <= 0 || r.Sent < r.Acked {
		t.Errorf("%s: sent %d, acked %d: want 0 < acked <= sent", r.Name, r.Sent, r.Acked)
	}
	if r.ConnectFailures != 0 || r.LostConnections != 0 || r.Gaps != 0 || r.DrainCut || len(r.Refused) != 0 {
		t.Errorf("%s: connect failures %d, lost connections %d, gap events %d, drain cut %v, refused %v",
			r.Name, r.ConnectFailures, r.LostConnections, r.Gaps, r.DrainCut, r.Refused)
	}
	v := r.Verify
	if v.Expected == 0 || v.Expected != v.Delivered+v.Losses+v.Missing {
		t.Errorf("%s: verify %+v: expected != delivered + losses + missing", r.Name, v)
	}
	if v.Losses != 0 || v.Missing != 0 || v.Mismatches != 0 || v.Refused != 0 || v.Delivered != v.Expected {
		t.Errorf("%s: verify %+v: want every expected delivery, no loss, no mismatch, no refusal", r.Name, v)
	}
	// Every delivery to another user's device (echoes excluded) is one of
	// the arrivals the verdict counted.
	if r.Deliveries <= 0 || r.Deliveries > v.Delivered+v.Duplicates+v.Unacked+v.Mismatches {
		t.Errorf("%s: %d deliveries, but the verdict counts %d arrivals (%+v)", r.Name, r.Deliveries,
			v.Delivered+v.Duplicates+v.Unacked+v.Mismatches, v)
	}
	// The rates are the counts over the send phase; acks/s counts only
	// the acks within it.
	if r.Seconds <= 0 || r.AcksPerSecond <= 0 || r.AcksPerSecond*r.Seconds > float64(r.Acked)+0.5 {
		t.Errorf("%s: %.0f acks/s over %.3fs for %d acked", r.Name, r.AcksPerSecond, r.Seconds, r.Acked)
	}
	if r.DeliveriesPerSecond <= 0 || r.ConnectRate <= 0 || r.CPUPercent < 0 {
		t.Errorf("%s: %.0f deliveries/s, %.0f connects/s, CPU %.0f%%", r.Name, r.DeliveriesPerSecond, r.ConnectRate, r.CPUPercent)
	}
	// Latencies: sampled from deliveries, ordered percentiles.
	l := r.Latency
	if l.Samples == 0 || l.Samples > uint64(r.Deliveries) || l.P50 <= 0 ||
		l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("%s: latency %+v (%d deliveries): want samples in (0, deliveries] and 0 < p50 <= p90 <= p99 <= p99.9 <= max",
			r.Name, l, r.Deliveries)
	}
	if r.ConnectP50Ms < 0 || r.ConnectP50Ms > r.ConnectP99Ms {
		t.Errorf("%s: connect p50 %.3fms, p99 %.3fms", r.Name, r.ConnectP50Ms, r.ConnectP99Ms)
	}
	if c := r.Catchup; c != nil {
		if c.Devices <= 0 || c.Incomplete != 0 || c.P50Ms > c.MaxMs || math.Abs(c.PerDevice*float64(c.Devices)-float64(c.Messages)) > 0.5*float64(c.Devices) {
			t.Errorf("%s: catch-up %+v", r.Name, c)
		}
	}
}

func TestRunParleyAndPlain(t *testing.T) {
	t.Parallel()
	rep := benchJSON(t, 0, "--users", "10", "--duration", "1500ms", "--store", "sqlite", "--baseline", "plain", "--connect-rate", "0")
	if len(rep.Runs) != 2 || rep.Runs[0].Name != "parley-sqlite" || rep.Runs[1].Name != "plain" || !rep.OK {
		t.Fatalf("runs %+v", rep.Runs)
	}
	for _, r := range rep.Runs {
		checkRun(t, r)
	}
	// Parley echoes every message to the sender; the raw scenario does not.
	if p := rep.Runs[0]; p.Verify.Expected != 2*p.Acked || p.EchoesPerSecond <= 0 || p.Verify.Reorders != 0 {
		t.Errorf("parley: expected %d deliveries for %d acked sends, %.0f echoes/s, %d reorders",
			p.Verify.Expected, p.Acked, p.EchoesPerSecond, p.Verify.Reorders)
	}
	if p := rep.Runs[1]; p.Verify.Expected != p.Acked {
		t.Errorf("plain: expected %d deliveries for %d acked sends", p.Verify.Expected, p.Acked)
	}
	q := rep.Ratios["parley-sqlite/plain"]["acks_per_second"]
	if q == nil || *q <= 0 {
		t.Errorf("ratios %+v", rep.Ratios)
	}
}

func TestRunGroupsOffline(t *testing.T) {
	t.Parallel()
	rep := benchJSON(t, 0, "--users", "12", "--group", "4", "--devices", "2", "--qos", "2", "--offline", "0.25",
		"--duration", "2s", "--rate", "300", "--connect-rate", "0")
	r := rep.Runs[0]
	checkRun(t, r)
	if r.Catchup == nil || r.Catchup.Devices != 6 || r.Catchup.Messages == 0 || r.Catchup.Incomplete != 0 {
		t.Errorf("catch-up %+v", r.Catchup)
	}
	// Every device of the four members gets each message, the sender's too.
	if r.Verify.Expected != 8*r.Acked {
		t.Errorf("expected %d deliveries for %d acked sends", r.Verify.Expected, r.Acked)
	}
}

func TestRunTarget(t *testing.T) {
	t.Parallel()
	srv, err := startPlain(newLogCounter(nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	rep := benchJSON(t, 0, "--target", "mqtt://"+srv.addrs[0], "--users", "6", "--group", "3", "--count", "50")
	r := rep.Runs[0]
	checkRun(t, r)
	if r.Name != "target" || r.Sent != 300 || r.Verify.Expected != 3*300 {
		t.Errorf("target run: %s sent %d, expected %d", r.Name, r.Sent, r.Verify.Expected)
	}
}

// TestRunCluster runs three Parley nodes on one PostgreSQL database and an
// embedded NATS server: direct pairs split over two nodes, with devices that
// go away and come back on another node, then groups spread over the three
// nodes. Every acknowledged message must reach every device, once, in order.
// Without PostgreSQL it is skipped, or fails when CI is set (pgtest's rule).
// Not parallel: it sets PARLEY_DATABASE_URL, which the parallel tests, run
// after it, do not read.
func TestRunCluster(t *testing.T) {
	t.Setenv("PARLEY_DATABASE_URL", pgtest.DB(t))
	t.Run("Pairs", func(t *testing.T) {
		rep := benchJSON(t, 0, "--store", "postgres", "--nodes", "3", "--users", "12", "--devices", "2",
			"--offline", "0.25", "--duration", "2s", "--rate", "300", "--connect-rate", "0")
		r := rep.Runs[0]
		checkRun(t, r)
		if r.Name != "parley-postgres" || r.Nodes != 3 || rep.Settings.Nodes != 3 {
			t.Errorf("run %s on %d nodes (settings: %d)", r.Name, r.Nodes, rep.Settings.Nodes)
		}
		// Both devices of both users of a pair get each message.
		if r.Verify.Expected != 4*r.Acked || r.Verify.Reorders != 0 {
			t.Errorf("expected %d deliveries for %d acked sends, %d reorders", r.Verify.Expected, r.Acked, r.Verify.Reorders)
		}
		if r.Catchup == nil || r.Catchup.Devices != 6 || r.Catchup.Messages == 0 || r.Catchup.Incomplete != 0 {
			t.Errorf("catch-up %+v", r.Catchup)
		}
	})
	t.Run("Groups", func(t *testing.T) {
		rep := benchJSON(t, 0, "--store", "postgres", "--nodes", "3", "--users", "12", "--group", "3",
			"--duration", "2s", "--rate", "300", "--connect-rate", "0")
		r := rep.Runs[0]
		checkRun(t, r)
		if r.Nodes != 3 || r.Verify.Expected != 3*r.Acked || r.Verify.Reorders != 0 {
			t.Errorf("%d nodes, expected %d deliveries for %d acked sends, %d reorders",
				r.Nodes, r.Verify.Expected, r.Acked, r.Verify.Reorders)
		}
	})
}

func TestNodes(t *testing.T) {
	tp := newTopology("r", 12, 2, 0)
	for u := 0; u < 12; u += 2 {
		for d := range 2 {
			if a, b := tp.node(u, d, 3), tp.node(u+1, d, 3); a == b || a < 0 || a > 2 || b < 0 || b > 2 {
				t.Errorf("pair %d, device %d: nodes %d and %d", u/2, d, a, b)
			}
		}
	}
	if n := tp.node(5, 1, 1); n != 0 {
		t.Errorf("one node: %d", n)
	}
	g := newTopology("r", 12, 1, 3)
	for c := 0; c < 4; c++ {
		seen := map[int]bool{}
		for u := 3 * c; u < 3*c+3; u++ {
			seen[g.node(u, 0, 3)] = true
		}
		if len(seen) != 3 {
			t.Errorf("group %d on nodes %v", c, seen)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--users", "3"},
		{"--group", "1"},
		{"--qos", "3"},
		{"--store", "mysql"},
		{"--target", "localhost:1883"},
		{"--offline", "0.5", "--count", "10"},
		{"--nodes", "3"}, // the default store is SQLite
		{"--store", "sqlite,postgres", "--nodes", "2"},
		{"--store", "postgres", "--nodes", "0"},
		{"--nodes", "2", "--target", "mqtt://127.0.0.1:1883"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit status %d, want 2", args, code)
		}
	}
}

func TestAppendSend(t *testing.T) {
	for _, size := range []int{0, 50, 200, 1000} {
		b := appendSend(nil, "run1", 12, 345, time.Now().UnixNano(), size)
		var v struct {
			CID  string          `json:"cid"`
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("size %d: %v: %s", size, err, b)
		}
		if v.CID != "run1.12.345" || (size >= 50 && len(v.Body) != size) {
			t.Errorf("size %d: cid %q, body of %d bytes", size, v.CID, len(v.Body))
		}
	}
}

func TestParseDelivery(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
		want     delivery
	}{
		{"Message", `{"kind":"message","conv":"dm:a:b","seq":42,"id":"x","cid":"r.1.2","from":"a","ts":"t","type":"text","body":{"t":1700000000000000000,"n":7,"pad":"xx"}}`,
			true, delivery{kind: []byte("message"), conv: []byte("dm:a:b"), cid: []byte("r.1.2"), seq: 42, t: 1700000000000000000, n: 7, hasT: true}},
		{"RawSend", `{"cid":"r.1.2","body":{"pad":"a\"b}","n":3,"t":5}}`,
			true, delivery{cid: []byte("r.1.2"), t: 5, n: 3, hasT: true}},
		{"Error", `{"kind":"error","cid":"c","code":"rate_limited","message":"slow down, \"please\""}`,
			true, delivery{kind: []byte("error"), cid: []byte("c"), code: []byte("rate_limited")}},
		{"NestedBody", `{"kind":"message","seq":1,"body":{"name":"x","members":[{"user":"a","t":1}]},"cid":"z"}`,
			true, delivery{kind: []byte("message"), seq: 1, cid: []byte("z")}},
		{"Spaces", ` { "seq" : 3 , "body" : "text" } `, true, delivery{seq: 3}},
		{"NotObject", `[1,2]`, false, delivery{}},
		{"Truncated", `{"kind":"message","conv":"dm`, false, delivery{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d delivery
			ok := parseDelivery([]byte(tt.in), &d)
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if string(d.kind) != string(tt.want.kind) || string(d.conv) != string(tt.want.conv) || string(d.cid) != string(tt.want.cid) ||
				string(d.code) != string(tt.want.code) || d.seq != tt.want.seq || d.t != tt.want.t || d.n != tt.want.n || d.hasT != tt.want.hasT {
				t.Errorf("got %+v, want %+v", d, tt.want)
			}
		})
	}
}

func TestParseCID(t *testing.T) {
	tests := []struct {
		in      string
		s, n    int
		wantOK  bool
		comment string
	}{
		{"run.3.14", 3, 14, true, "ours"},
		{"other.3.14", 0, 0, false, "another run"},
		{"run.3", 0, 0, false, "no counter"},
		{"run.x.1", 0, 0, false, "not a number"},
		{"runx.3.1", 0, 0, false, "prefix only"},
	}
	for _, tt := range tests {
		s, n, ok := parseCID([]byte(tt.in), "run")
		if ok != tt.wantOK || s != tt.s || n != tt.n {
			t.Errorf("%s (%s): %d %d %v", tt.in, tt.comment, s, n, ok)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.record(v * 1000) // 1µs .. 100ms
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := float64(q * 100000 * 1000)
		got := float64(h.quantile(q))
		if got < want || got > want*1.01 {
			t.Errorf("quantile %.3f = %.0f, want %.0f within 1%%", q, got, want)
		}
	}
	if h.quantile(1) != 100000*1000 || h.max.Load() != 100000*1000 {
		t.Errorf("max %d, q1 %d", h.max.Load(), h.quantile(1))
	}
	var empty histogram
	if empty.quantile(0.99) != 0 {
		t.Error("empty histogram")
	}
	for _, v := range []int64{0, 127, 128, 255, 256, 1 << 40, 1<<62 + 12345} {
		if i := bucketOf(v); bucketHigh(i) < v || (i > 0 && bucketHigh(i-1) >= v) {
			t.Errorf("value %d in bucket %d [.., %d]", v, i, bucketHigh(i))
		}
	}
}

func TestTableOutput(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--users", "4", "--count", "20", "--progress", "off"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"sends acked/s", "latency p99.9", "losses", "parley-sqlite: OK"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}

// buildParleyd builds parleyd into a temporary directory.
func buildParleyd(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "parleyd")
	out, err := exec.Command("go", "build", "-o", path, "github.com/parley-im/parley/cmd/parleyd").CombinedOutput()
	if err != nil {
		t.Fatalf("build parleyd: %v\n%s", err, out)
	}
	return path
}

// connsJSON runs the connections scenario with --json and decodes its
// report; it fails unless the exit status is 0.
func connsJSON(t *testing.T, args ...string) []*connsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append([]string{"--scenario", "connections", "--json", "--progress", "off"}, args...), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var rep struct {
		Runs []*connsResult `json:"runs"`
		OK   bool           `json:"ok"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	if !rep.OK || len(rep.Runs) != 1 {
		t.Fatalf("ok %v, %d runs\n%s", rep.OK, len(rep.Runs), stdout.String())
	}
	return rep.Runs
}

// checkConns asserts that every device connected, nothing was lost and the
// memory figures were read.
func checkConns(t *testing.T, r *connsResult, devices int) {
	t.Helper()
	if !r.OK || r.Connected != int64(devices) || r.ConnectFailures != 0 || r.LostConnections != 0 || r.Gaps != 0 {
		t.Errorf("%s: ok %v, %d of %d connected, %d failed, %d lost, %d gap events; problems %v",
			r.Name, r.OK, r.Connected, devices, r.ConnectFailures, r.LostConnections, r.Gaps, r.Problems)
	}
	if r.Senders != devices/100 || r.Acked == 0 || r.Latency.Samples == 0 || r.ConnectRate <= 0 || r.ConnectP50Ms > r.ConnectP99Ms {
		t.Errorf("%s: %d senders, %d acked, %d latency samples, %.0f connects/s, connect p50 %.1fms p99 %.1fms",
			r.Name, r.Senders, r.Acked, r.Latency.Samples, r.ConnectRate, r.ConnectP50Ms, r.ConnectP99Ms)
	}
	v := r.Verify
	if v.Expected == 0 || v.Delivered != v.Expected || v.Losses != 0 || v.Missing != 0 || v.Mismatches != 0 || v.Reorders != 0 {
		t.Errorf("%s: verify %+v", r.Name, v)
	}
	// Each acknowledged send reaches both devices of the pair: the peer's
	// and the sender's own (the echo).
	if v.Expected != 2*r.AckedTotal {
		t.Errorf("%s: %d deliveries expected for %d acked sends", r.Name, v.Expected, r.AckedTotal)
	}
	if r.Before.RSSBytes <= 0 || r.After.RSSBytes <= r.Before.RSSBytes || r.RSSPerConnKiB <= 0 ||
		r.After.HeapBytes <= 0 || r.After.Gorouts <= r.Before.Gorouts || r.After.OpenFDs < int64(devices) {
		t.Errorf("%s: parleyd before %+v, after %+v, %.1f KiB RSS per connection", r.Name, r.Before, r.After, r.RSSPerConnKiB)
	}
}

// TestConnections runs the connections scenario against parleyd as its own
// process, built by the test: 200 idle devices, then a storm after a kill
// -9, on SQLite, and a storm on PostgreSQL (skipped without it, pgtest's
// rule). Not parallel: the PostgreSQL case sets PARLEY_DATABASE_URL.
func TestConnections(t *testing.T) {
	parleyd := buildParleyd(t)
	common := []string{"--parleyd", parleyd, "--conns", "200", "--senders", "0.01", "--rate", "200", "--connect-rate", "0"}
	t.Run("Idle", func(t *testing.T) {
		r := connsJSON(t, append(common, "--duration", "1s")...)[0]
		checkConns(t, r, 200)
		if r.Storm != nil || r.SourceAddrs != 1 {
			t.Errorf("storm %+v, %d source addresses", r.Storm, r.SourceAddrs)
		}
	})
	storm := func(t *testing.T, args ...string) {
		r := connsJSON(t, append(append(common, "--duration", "1s", "--storm"), args...)...)[0]
		checkConns(t, r, 200)
		s := r.Storm
		if s == nil {
			t.Fatal("no storm figures")
		}
		if s.Devices != 200 || s.Reconnected != 200 || s.GaveUp != 0 || s.NotBack != 0 || s.Incomplete != 0 || s.MaxOpenFDs < 200 || s.Dials < 200 ||
			s.CaughtUpSeconds < s.AllConnectedSeconds || s.AllConnectedSeconds < s.FirstBackSeconds || s.FirstBackSeconds <= 0 || s.RestartSeconds <= 0 || s.ReadyzProbes == 0 ||
			s.ReadyzFailedAfterReady > s.ReadyzFailed || s.ReadyzFailed > s.ReadyzProbes {
			t.Errorf("storm %+v", s)
		}
		if r.AfterStorm == nil || r.AfterStorm.RSSBytes <= 0 {
			t.Errorf("parleyd after the storm: %+v", r.AfterStorm)
		}
	}
	t.Run("StormAtOnce", func(t *testing.T) { storm(t) })
	t.Run("StormBackoff", func(t *testing.T) { storm(t, "--storm-backoff", "500ms") })
	t.Run("StormPostgres", func(t *testing.T) {
		t.Setenv("PARLEY_DATABASE_URL", pgtest.DB(t))
		storm(t, "--store", "postgres")
	})
}

func TestConnsFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--conns", "10"}, // without --scenario connections
		{"--storm"},
		{"--scenario", "connections", "--conns", "3"},
		{"--scenario", "connections", "--senders", "0"},
		{"--scenario", "connections", "--users", "10"},
		{"--scenario", "connections", "--qos", "0"},
		{"--scenario", "connections", "--rate", "0"},
		{"--scenario", "idle"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit status %d, want 2", args, code)
		}
	}
}
