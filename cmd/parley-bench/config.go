package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
)

// config is the command line.
type config struct {
	Users       int           `json:"users"`
	Devices     int           `json:"devices"`
	Group       int           `json:"group"`
	Size        int           `json:"size"`
	QoS         int           `json:"qos"`
	Rate        float64       `json:"rate"`
	Duration    time.Duration `json:"-"`
	Count       int           `json:"count"`
	Inflight    int           `json:"inflight"`
	PacketIDs   string        `json:"packet_ids"`
	ConnectRate float64       `json:"connect_rate"`
	Offline     float64       `json:"offline"`
	Stores      []string      `json:"stores,omitempty"`
	Nodes       int           `json:"nodes"`
	Target      string        `json:"target,omitempty"`
	Baseline    string        `json:"baseline,omitempty"`
	DataDir     string        `json:"-"`
	JSON        bool          `json:"-"`
	Progress    string        `json:"-"`
	LogLevel    string        `json:"-"`
	PprofAddr   string        `json:"-"`
	CPUProfile  string        `json:"-"`
	DrainWait   time.Duration `json:"-"`

	// The connections scenario (--scenario connections).
	Scenario           string        `json:"scenario"`
	Parleyd            string        `json:"parleyd,omitempty"`
	Conns              int           `json:"conns,omitempty"`
	Senders            float64       `json:"senders,omitempty"`
	ConnectConcurrency int           `json:"connect_concurrency"`
	Storm              bool          `json:"storm,omitempty"`
	StormBackoff       time.Duration `json:"-"`
	StormTimeout       time.Duration `json:"-"`
	StormBackoffSecs   float64       `json:"storm_backoff_seconds,omitempty"`
	DialTimeout        time.Duration `json:"-"`
	DialTimeoutSecs    float64       `json:"dial_timeout_seconds"`

	DurationSeconds float64 `json:"duration_seconds"`
	logLevel        slog.Level
	target          *url.URL
}

const usage = `parley-bench drives MQTT load through Parley and checks every delivery.

Usage: parley-bench [flags]

By default it starts Parley in-process on 127.0.0.1 (--store sqlite in a
temporary directory, or --store postgres on PARLEY_DATABASE_URL or a throwaway
cluster), connects --users × --devices clients, and has every user send to its
peer (--group 0: direct pairs) or its group (--group G) for --duration or
--count messages. With --store postgres, --nodes N starts N Parley nodes in
cluster mode on the one database and an embedded NATS server and spreads the
devices over them, the two users of a direct pair on different nodes.
--baseline plain repeats the identical traffic through a bare mochi-mqtt
broker and prints Parley/plain ratios. --target mqtt://host:port runs the raw
MQTT scenario against another broker instead.

--scenario connections starts --parleyd as its own process instead, connects
--conns idle devices (each from 127.0.0.2, .3, ...: 10,000 per address) while
a share --senders of them send at --rate, and reports connects/s, connect
latency and parleyd's memory per connection; --storm then kills parleyd,
starts it again and measures the reconnect storm. See docs/benchmarks.md.

Exit status: 0 when every acknowledged message was delivered to every device
that should have it, in order; 1 on loss, reorder, refused sends or failed
connections; 2 on bad flags.

Flags:
`

// parseFlags parses args into a config; errors are usage errors (exit 2).
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("parley-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var stores string
	fs.IntVar(&c.Users, "users", 1000, "number of users")
	fs.IntVar(&c.Devices, "devices", 1, "devices (connections) per user; device 0 sends, all receive")
	fs.IntVar(&c.Group, "group", 0, "0: users talk in direct pairs; G: groups of G users")
	fs.IntVar(&c.Size, "size", 200, "message body size in bytes")
	fs.IntVar(&c.QoS, "qos", 1, "QoS of sends: 0, 1 or 2 (inbox subscriptions are QoS 1)")
	fs.Float64Var(&c.Rate, "rate", 0, "target total send rate in messages/s; 0: flat out")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "length of the send phase")
	fs.IntVar(&c.Count, "count", 0, "messages per sender; when set, the run ends once all are sent")
	fs.IntVar(&c.Inflight, "inflight", 8, "unacknowledged sends per sender (QoS 1 and 2)")
	fs.StringVar(&c.PacketIDs, "packet-ids", "lowest", "packet ids of sends: lowest (the lowest free one, like paho) or cycle (1 to 65535 and around, like libmosquitto)")
	fs.Float64Var(&c.ConnectRate, "connect-rate", 500, "new connections per second while ramping up; 0: as fast as possible")
	fs.Float64Var(&c.Offline, "offline", 0, "share of users (0..1) whose devices disconnect at 20% of the run and reconnect at 75%")
	fs.StringVar(&stores, "store", "sqlite", "Parley's store: sqlite, postgres, or both as sqlite,postgres (one run each)")
	fs.IntVar(&c.Nodes, "nodes", 1, "Parley nodes in cluster mode on one PostgreSQL database and an embedded NATS server (needs --store postgres); devices are spread over them, the peers of a direct pair on different nodes")
	fs.StringVar(&c.Target, "target", "", "mqtt://[user:pass@]host:port: run the raw MQTT scenario against this broker instead of Parley")
	fs.StringVar(&c.Baseline, "baseline", "", "plain: also run the same traffic through a bare embedded mochi-mqtt and print ratios")
	fs.StringVar(&c.DataDir, "data-dir", "", "parent directory of the SQLite store (default: the system temp dir)")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&c.Progress, "progress", "auto", "live progress line on stderr: auto (when a terminal), on, off")
	fs.StringVar(&c.LogLevel, "log-level", "error", "level of the embedded servers' log shown on stderr (warnings are always counted)")
	fs.StringVar(&c.PprofAddr, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of each run's send phase to this file (run name added before the extension)")
	fs.DurationVar(&c.DrainWait, "drain", 30*time.Second, "how long to wait after the send phase for outstanding deliveries")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 64, "connects in progress at most while ramping up")
	fs.StringVar(&c.Scenario, "scenario", "traffic", "traffic: every user sends (the default); connections: --conns idle devices on parleyd as its own process, --senders of them sending at --rate")
	fs.StringVar(&c.Parleyd, "parleyd", "bin/parleyd", "connections scenario: the parleyd binary to start")
	fs.IntVar(&c.Conns, "conns", 2000, "connections scenario: devices (one per user, users in direct pairs)")
	fs.Float64Var(&c.Senders, "senders", 0.01, "connections scenario: share of the devices that send, together at --rate (default 1000/s here)")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 10*time.Second, "bound of one connect, from dialing to SUBACK (the Go SDK's ConnectTimeout is 10s)")
	fs.BoolVar(&c.Storm, "storm", false, "connections scenario: after the idle phase, kill -9 parleyd, start it again and measure the reconnect storm")
	fs.DurationVar(&c.StormBackoff, "storm-backoff", 0, "storm: 0: every device redials at once, retries after 1s, 2s, 4s ... 10s; D: first redial after a random delay in [0, D), retries in [0, min(10s, D×2^k))")
	fs.DurationVar(&c.StormTimeout, "storm-timeout", 2*time.Minute, "storm: give up on devices not connected and caught up this long after the kill")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch c.Scenario {
	case "traffic":
		for _, name := range []string{"parleyd", "conns", "senders", "storm", "storm-backoff", "storm-timeout"} {
			if set[name] {
				bad("--%s needs --scenario connections", name)
			}
		}
	case "connections":
		for _, name := range []string{"users", "devices", "group", "offline", "count", "nodes", "target", "baseline", "cpuprofile"} {
			if set[name] {
				bad("--%s does not apply to --scenario connections", name)
			}
		}
		if !set["rate"] {
			c.Rate = 1000
		}
		if c.Rate <= 0 {
			bad("--scenario connections needs a positive --rate")
		}
		if c.Conns < 2 || c.Conns%2 != 0 {
			bad("--conns must be even and at least 2")
		}
		if c.Senders <= 0 || c.Senders > 1 {
			bad("--senders must be in (0, 1]")
		}
		if c.QoS == 0 {
			bad("--scenario connections needs --qos 1 or 2 (acknowledged sends)")
		}
		if c.StormBackoff < 0 || c.StormTimeout <= 0 {
			bad("--storm-backoff must not be negative and --storm-timeout must be positive")
		}
		c.Users = c.Conns // the checks below hold for the devices too
		c.StormBackoffSecs = c.StormBackoff.Seconds()
	default:
		bad("--scenario %q: want traffic or connections", c.Scenario)
	}
	if c.DialTimeout <= 0 {
		bad("--dial-timeout must be positive")
	}
	c.DialTimeoutSecs = c.DialTimeout.Seconds()
	if c.ConnectConcurrency < 1 {
		bad("--connect-concurrency must be at least 1")
	}
	if c.Users < 2 {
		bad("--users must be at least 2")
	}
	if c.Devices < 1 {
		bad("--devices must be at least 1")
	}
	switch {
	case c.Group < 0 || c.Group == 1:
		bad("--group must be 0 (direct pairs) or at least 2")
	case c.Group == 0 && c.Users%2 != 0:
		bad("--users must be even for direct pairs")
	}
	if c.Size < 0 || c.Size > 60000 {
		bad("--size must be between 0 and 60000")
	}
	if c.QoS < 0 || c.QoS > 2 {
		bad("--qos must be 0, 1 or 2")
	}
	if c.Rate < 0 || c.ConnectRate < 0 || c.Count < 0 {
		bad("--rate, --connect-rate and --count must not be negative")
	}
	if c.Inflight < 1 || c.Inflight > 60000 {
		bad("--inflight must be between 1 and 60000")
	}
	if c.PacketIDs != "lowest" && c.PacketIDs != "cycle" {
		bad("--packet-ids must be lowest or cycle")
	}
	if c.Duration <= 0 && c.Count == 0 {
		bad("--duration must be positive (or set --count)")
	}
	if c.Offline < 0 || c.Offline >= 1 {
		bad("--offline must be in [0, 1)")
	}
	if c.Offline > 0 && c.Count > 0 {
		bad("--offline needs a --duration run, not --count")
	}
	for _, s := range strings.Split(stores, ",") {
		switch s = strings.TrimSpace(s); s {
		case "sqlite", "postgres":
			c.Stores = append(c.Stores, s)
		default:
			bad("--store %q: want sqlite, postgres or sqlite,postgres", s)
		}
	}
	if c.Nodes < 1 || c.Nodes > 64 {
		bad("--nodes must be between 1 and 64")
	}
	if c.Nodes > 1 {
		if slices.Contains(c.Stores, "sqlite") {
			bad("--nodes %d: cluster mode needs the PostgreSQL store (--store postgres)", c.Nodes)
		}
		if c.Target != "" {
			bad("--nodes and --target exclude each other")
		}
	}
	if c.Baseline != "" && c.Baseline != "plain" {
		bad("--baseline %q: the only baseline is plain", c.Baseline)
	}
	if c.Target != "" {
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "mqtt" && u.Scheme != "tcp") || u.Host == "" || u.Port() == "" {
			bad("--target %q: want mqtt://host:port", c.Target)
		}
		c.target = u
		c.Stores = nil
	}
	switch c.Progress {
	case "auto", "on", "off":
	default:
		bad("--progress must be auto, on or off")
	}
	if err := c.logLevel.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Count > 0 {
		c.Duration = 0
	}
	c.DurationSeconds = c.Duration.Seconds()
	return c, errors.Join(errs...)
}
