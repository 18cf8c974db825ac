package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result holds the figures of one run.
type result struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`
	Store string `json:"store,omitempty"`
	// Nodes is the number of brokers the devices were spread over.
	Nodes int `json:"nodes"`

	Devices         int     `json:"devices"`
	ConnectFailures int64   `json:"connect_failures"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	ConnectRate     float64 `json:"connect_rate"`
	ConnectP50Ms    float64 `json:"connect_p50_ms"`
	ConnectP99Ms    float64 `json:"connect_p99_ms"`

	Seconds             float64   `json:"seconds"`
	Sent                int64     `json:"sent"`
	Acked               int64     `json:"acked"`
	AcksPerSecond       float64   `json:"acks_per_second"`
	Deliveries          int64     `json:"deliveries"`
	DeliveriesPerSecond float64   `json:"deliveries_per_second"`
	EchoesPerSecond     float64   `json:"echoes_per_second"`
	Latency             latencies `json:"latency_ms"`
	// CPUPercent is the process's CPU use during the send phase (100 is
	// one core); CPUPerSendUs divides it by the acknowledged sends. The
	// process holds the broker and the load generator, and the store
	// except an external PostgreSQL.
	CPUPercent   float64  `json:"cpu_percent"`
	CPUPerSendUs float64  `json:"cpu_per_send_us"`
	Catchup      *catchup `json:"catchup,omitempty"`

	// DrainSeconds is how long the load generator waited for outstanding
	// deliveries after the send phase; DrainCut is set when it gave up
	// (--drain) while deliveries were still arriving, so that losses
	// include deliveries that were merely late.
	DrainSeconds float64 `json:"drain_seconds"`
	DrainCut     bool    `json:"drain_cut"`

	Verify          verdict        `json:"verify"`
	Refused         map[string]int `json:"refused,omitempty"`
	Gaps            int64          `json:"gap_events"`
	LostConnections int64          `json:"lost_connections"`
	ServerLog       []logLine      `json:"server_log,omitempty"`
	Problems        []string       `json:"problems,omitempty"`
	OK              bool           `json:"ok"`
}

// latencies are end-to-end delivery latencies (send to arrival at another
// user's device) in milliseconds.
type latencies struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99_9"`
	Max     float64 `json:"max"`
}

// result computes the figures once the run is over.
func (r *runner) result(connect float64) *result {
	res := &result{Name: r.srv.name, Mode: r.mode, Nodes: len(r.srv.addrs), Devices: len(r.users) * r.tp.devices}
	if r.mode == modeParley {
		res.Store = strings.TrimPrefix(r.srv.name, "parley-")
	}
	res.ConnectFailures = r.connectFailures.Load()
	res.ConnectSeconds = connect
	if connect > 0 {
		res.ConnectRate = float64(r.connected.Load()) / connect
	}
	res.ConnectP50Ms = ms(r.connLat.quantile(0.5))
	res.ConnectP99Ms = ms(r.connLat.quantile(0.99))

	start, end := r.sendStart.Load(), r.sendEnd.Load()
	var acked int64
	for _, u := range r.users {
		for _, m := range u.sent {
			if m.ack != 0 && m.ack <= end {
				acked++
			}
		}
	}
	res.Sent, res.Acked = r.sent.Load(), r.acked.Load()
	res.Deliveries = r.delivered.Load()
	res.Seconds = float64(end-start) / 1e9
	res.AcksPerSecond = perSecond(acked, end-start)
	if r.cfg.Count > 0 {
		// The phase ends with the last acknowledgement; deliveries go on
		// until the last one arrives.
		last := max(r.lastDelivery.Load(), end)
		res.DeliveriesPerSecond = perSecond(res.Deliveries, last-start)
		res.EchoesPerSecond = perSecond(r.echoes.Load(), last-start)
	} else {
		res.DeliveriesPerSecond = perSecond(r.phaseDelivered.Load(), end-start)
		res.EchoesPerSecond = perSecond(r.phaseEchoes.Load(), end-start)
	}
	if end > start {
		res.CPUPercent = 100 * float64(r.cpu) / float64(end-start)
	}
	if acked > 0 {
		res.CPUPerSendUs = float64(r.cpu.Microseconds()) / float64(acked)
	}
	res.Latency = latencies{Samples: r.lat.count(), P50: ms(r.lat.quantile(0.5)), P90: ms(r.lat.quantile(0.9)),
		P99: ms(r.lat.quantile(0.99)), P999: ms(r.lat.quantile(0.999)), Max: ms(r.lat.max.Load())}
	res.DrainSeconds, res.DrainCut = r.drainTime.Seconds(), r.drainCut
	res.Catchup = r.catchup()
	res.Verify = r.verify()
	if len(r.refused) > 0 {
		res.Refused = r.refused
	}
	res.Gaps = r.gaps.Load()
	res.LostConnections = r.lostConns.Load()
	res.ServerLog = r.srv.log.summary()
	res.Problems = r.problems
	v := res.Verify
	res.OK = v.Losses == 0 && v.Mismatches == 0 && v.Refused == 0 && len(r.refused) == 0 &&
		res.ConnectFailures == 0 && res.LostConnections == 0 && res.Acked > 0 &&
		(r.mode != modeParley || v.Reorders == 0)
	return res
}

func perSecond(n, nanos int64) float64 {
	if nanos <= 0 {
		return 0
	}
	return float64(n) / (float64(nanos) / 1e9)
}

// report is everything --json prints.
type report struct {
	Settings *config                        `json:"settings"`
	Runs     []*result                      `json:"runs"`
	Ratios   map[string]map[string]*float64 `json:"ratios,omitempty"`
	OK       bool                           `json:"ok"`
}

// ratioFigures are the figures compared with the plain baseline.
var ratioFigures = []struct {
	key string
	get func(*result) float64
}{
	{"acks_per_second", func(r *result) float64 { return r.AcksPerSecond }},
	{"deliveries_per_second", func(r *result) float64 { return r.DeliveriesPerSecond }},
	{"latency_p50", func(r *result) float64 { return r.Latency.P50 }},
	{"latency_p90", func(r *result) float64 { return r.Latency.P90 }},
	{"latency_p99", func(r *result) float64 { return r.Latency.P99 }},
	{"latency_p99_9", func(r *result) float64 { return r.Latency.P999 }},
	{"latency_max", func(r *result) float64 { return r.Latency.Max }},
	{"cpu_per_send", func(r *result) float64 { return r.CPUPerSendUs }},
	{"connect_rate", func(r *result) float64 { return r.ConnectRate }},
	{"connect_p99", func(r *result) float64 { return r.ConnectP99Ms }},
	{"catchup_max", func(r *result) float64 {
		if r.Catchup == nil {
			return 0
		}
		return r.Catchup.MaxMs
	}},
}

// ratios divides each run's figures by the plain run's.
func ratios(runs []*result) map[string]map[string]*float64 {
	var plain *result
	for _, r := range runs {
		if r.Name == "plain" {
			plain = r
		}
	}
	if plain == nil {
		return nil
	}
	out := map[string]map[string]*float64{}
	for _, r := range runs {
		if r == plain {
			continue
		}
		m := map[string]*float64{}
		for _, f := range ratioFigures {
			m[f.key] = ratio(f.get(r), f.get(plain))
		}
		out[r.Name+"/plain"] = m
	}
	return out
}

func ratio(a, b float64) *float64 {
	if b == 0 || math.IsNaN(a) {
		return nil
	}
	v := math.Round(a/b*1000) / 1000
	return &v
}

// printTable prints the runs side by side, then the ratios to plain.
func printTable(w io.Writer, cfg *config, runs []*result) {
	fmt.Fprintln(w, describe(cfg))
	var plain *result
	for _, r := range runs {
		if r.Name == "plain" {
			plain = r
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := fmt.Sprintf("%-*s\t", labelWidth, "")
	for _, r := range runs {
		header += r.Name + "\t"
	}
	if plain != nil {
		for _, r := range runs {
			if r != plain {
				header += strings.TrimPrefix(r.Name, "parley-") + "/plain\t"
			}
		}
	}
	fmt.Fprintln(tw, header)
	row := func(label string, get func(*result) float64, format func(float64) string, ratioed bool) {
		line := fmt.Sprintf("%-*s\t", labelWidth, label)
		for _, r := range runs {
			line += format(get(r)) + "\t"
		}
		if plain != nil {
			for _, r := range runs {
				if r == plain {
					continue
				}
				if q := ratio(get(r), get(plain)); ratioed && q != nil {
					line += strconv.FormatFloat(*q, 'f', 2, 64) + "\t"
				} else {
					line += "\t"
				}
			}
		}
		fmt.Fprintln(tw, line)
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	msf := func(v float64) string { return fmtMsF(v) }
	cnt := func(v float64) string { return strconv.FormatInt(int64(v), 10) }
	if cfg.Nodes > 1 {
		row("nodes", func(r *result) float64 { return float64(r.Nodes) }, cnt, false)
	}
	row("sends acked/s", func(r *result) float64 { return r.AcksPerSecond }, num, true)
	row("deliveries/s", func(r *result) float64 { return r.DeliveriesPerSecond }, num, true)
	row("echoes/s", func(r *result) float64 { return r.EchoesPerSecond }, num, false)
	row("latency p50", func(r *result) float64 { return r.Latency.P50 }, msf, true)
	row("latency p90", func(r *result) float64 { return r.Latency.P90 }, msf, true)
	row("latency p99", func(r *result) float64 { return r.Latency.P99 }, msf, true)
	row("latency p99.9", func(r *result) float64 { return r.Latency.P999 }, msf, true)
	row("latency max", func(r *result) float64 { return r.Latency.Max }, msf, true)
	row("process CPU", func(r *result) float64 { return r.CPUPercent }, func(v float64) string { return num(v) + "%" }, false)
	row("CPU µs per send", func(r *result) float64 { return r.CPUPerSendUs }, num, true)
	row("connects/s", func(r *result) float64 { return r.ConnectRate }, num, true)
	row("connect p99", func(r *result) float64 { return r.ConnectP99Ms }, msf, true)
	if runs[0].Catchup != nil {
		row("catch-up devices", func(r *result) float64 { return float64(catchupOf(r).Devices) }, cnt, false)
		row("catch-up msgs/device", func(r *result) float64 { return catchupOf(r).PerDevice }, num, false)
		row("catch-up p50", func(r *result) float64 { return catchupOf(r).P50Ms }, msf, true)
		row("catch-up max", func(r *result) float64 { return catchupOf(r).MaxMs }, msf, true)
	}
	row("sent", func(r *result) float64 { return float64(r.Sent) }, cnt, false)
	row("acked", func(r *result) float64 { return float64(r.Acked) }, cnt, false)
	row("deliveries expected", func(r *result) float64 { return float64(r.Verify.Expected) }, cnt, false)
	row("losses", func(r *result) float64 { return float64(r.Verify.Losses) }, cnt, false)
	row("missing (lost conns)", func(r *result) float64 { return float64(r.Verify.Missing) }, cnt, false)
	row("duplicates", func(r *result) float64 { return float64(r.Verify.Duplicates) }, cnt, false)
	row("reorders", func(r *result) float64 { return float64(r.Verify.Reorders) }, cnt, false)
	row("mismatches", func(r *result) float64 { return float64(r.Verify.Mismatches) }, cnt, false)
	row("refused sends", func(r *result) float64 { return float64(r.Verify.Refused) }, cnt, false)
	row("failed/lost connections", func(r *result) float64 { return float64(r.ConnectFailures + r.LostConnections) }, cnt, false)
	tw.Flush()
	for _, r := range runs {
		status := "OK"
		switch {
		case !r.OK && r.Name == "plain":
			status = "FAILED (the baseline's verdict does not set the exit status)"
		case !r.OK:
			status = "FAILED"
		}
		fmt.Fprintf(w, "%s: %s", r.Name, status)
		if len(r.Refused) > 0 {
			fmt.Fprintf(w, "; error events %v", r.Refused)
		}
		if r.DrainCut {
			fmt.Fprintf(w, "; deliveries were still arriving when the drain gave up after %.0fs (--drain): the losses include late deliveries", r.DrainSeconds)
		}
		if r.Gaps > 0 {
			fmt.Fprintf(w, "; %d gap events", r.Gaps)
		}
		fmt.Fprintln(w)
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  ", p)
		}
		for i, l := range r.ServerLog {
			if i == 5 {
				fmt.Fprintf(w, "   server log: %d more kinds of warnings\n", len(r.ServerLog)-5)
				break
			}
			fmt.Fprintf(w, "   server log: %d× %s\n", l.Count, l.Message)
		}
	}
}

// labelWidth pads the first column: tabwriter aligns every column right.
const labelWidth = 24

func catchupOf(r *result) *catchup {
	if r.Catchup == nil {
		return &catchup{}
	}
	return r.Catchup
}

// describe is the settings line above the table.
func describe(cfg *config) string {
	users := fmt.Sprintf("%d users × %d device", cfg.Users, cfg.Devices)
	if cfg.Devices != 1 {
		users += "s"
	}
	topo := fmt.Sprintf("%d direct pairs", cfg.Users/2)
	if cfg.Group > 0 {
		topo = fmt.Sprintf("groups of %d", cfg.Group)
	}
	rate := "flat out"
	if cfg.Rate > 0 {
		rate = fmt.Sprintf("%.0f msgs/s", cfg.Rate)
	}
	length := cfg.Duration.String()
	if cfg.Count > 0 {
		length = fmt.Sprintf("%d msgs per sender", cfg.Count)
	}
	s := fmt.Sprintf("%s, %s, QoS %d, %d-byte bodies, %s (%d in flight per sender), %s", users, topo, cfg.QoS, cfg.Size, rate, cfg.Inflight, length)
	if cfg.Nodes > 1 && len(cfg.Stores) > 0 {
		spread := "direct peers on different nodes"
		if cfg.Group > 0 {
			spread = "group members spread over the nodes"
		}
		s += fmt.Sprintf(", Parley on %d nodes (cluster mode: one PostgreSQL, embedded NATS; %s)", cfg.Nodes, spread)
	}
	if cfg.Offline > 0 {
		s += fmt.Sprintf(", %.0f%% of users offline from %.0f%% to %.0f%% of the run", cfg.Offline*100, offlineFrom*100, offlineTo*100)
	}
	return s
}

// printResult prints rep as JSON on stdout when asJSON is set, else calls
// table, and returns the exit status: 1 when printing failed or not ok, 0
// otherwise.
func printResult(stdout, stderr io.Writer, asJSON bool, rep any, table func(), ok bool) int {
	if asJSON {
		if err := printJSON(stdout, rep); err != nil {
			fmt.Fprintln(stderr, "parley-bench:", err)
			return 1
		}
	} else {
		table()
	}
	if !ok {
		return 1
	}
	return 0
}

func printJSON(w io.Writer, rep any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// fmtMs formats nanoseconds as milliseconds.
func fmtMs(ns int64) string { return fmtMsF(ms(ns)) }

func fmtMsF(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	default:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	}
}
