package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/pgtest"
)

// server is the broker of one run.
type server struct {
	name     string
	mode     string
	addrs    []string // MQTT over TCP, host:port, of each node
	httpURL  string   // Parley's HTTP API (node 0's)
	sign     func(user string, ttl time.Duration) (string, error)
	username string // raw scenario credentials (from the --target URL)
	password string
	log      *logCounter
	close    func()
}

// credentials returns the CONNECT username and password of user.
func (s *server) credentials(user string) (string, string, error) {
	if s.sign == nil {
		return s.username, s.password, nil
	}
	tok, err := s.sign(user, 24*time.Hour)
	return user, tok, err
}

// catchupLimit replaces Parley's default of 500 messages per conversation in
// one catch-up: users who were offline for a long flat-out stretch would
// otherwise get a gap event and have to page the rest over REST, which this
// load generator does not do.
const catchupLimit = 1 << 20

// startParley starts Parley in-process on 127.0.0.1 with store kind: one
// node, or with --nodes N (PostgreSQL only) N nodes in cluster mode, each
// with its own store pool on the one database, joined by an embedded NATS
// server.
func startParley(ctx context.Context, cfg *config, kind string, lc *logCounter) (*server, error) {
	var cleanup []func()
	closeAll := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	logger := slog.New(lc)
	var open func() (history.Store, error)
	switch kind {
	case "sqlite":
		if cfg.Nodes > 1 {
			return nil, fmt.Errorf("cluster mode needs the PostgreSQL store")
		}
		dir, err := os.MkdirTemp(cfg.DataDir, "parley-bench-")
		if err != nil {
			return nil, fmt.Errorf("sqlite data dir: %w", err)
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		open = func() (history.Store, error) { return sqlite.Open(ctx, filepath.Join(dir, "data"), logger) }
	case "postgres":
		url := os.Getenv("PARLEY_DATABASE_URL")
		if url == "" {
			cluster, err := pgtest.StartCluster()
			if err != nil {
				return nil, fmt.Errorf("start a throwaway PostgreSQL (or set PARLEY_DATABASE_URL): %w", err)
			}
			cleanup = append(cleanup, cluster.Destroy)
			if url, err = cluster.CreateDB(ctx, "parley_bench"); err != nil {
				closeAll()
				return nil, fmt.Errorf("create database: %w", err)
			}
		}
		open = func() (history.Store, error) { return postgres.Open(ctx, url, logger) }
	default:
		return nil, fmt.Errorf("unknown store %q", kind)
	}
	var natsURL string
	if cfg.Nodes > 1 {
		ns, err := startNATS()
		if err != nil {
			closeAll()
			return nil, err
		}
		cleanup = append(cleanup, ns.Shutdown)
		natsURL = ns.ClientURL()
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	srv := &server{name: "parley-" + kind, mode: modeParley, log: lc}
	for i := range cfg.Nodes {
		store, err := open()
		if err != nil {
			closeAll()
			return nil, err
		}
		cleanup = append(cleanup, func() { store.Close() })
		opts := broker.Options{
			Store: store, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			JWTSecret: secret, Rate: -1, CatchupLimit: catchupLimit, Logger: logger,
		}
		if natsURL != "" {
			opts.NATSURL, opts.NodeID = natsURL, "node"+strconv.Itoa(i)
			opts.Logger = logger.With("node", opts.NodeID)
		}
		b, err := broker.New(opts)
		if err != nil {
			closeAll()
			return nil, err
		}
		if err := b.Start(ctx); err != nil {
			closeAll()
			return nil, err
		}
		cleanup = append(cleanup, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = b.Close(ctx)
		})
		srv.addrs = append(srv.addrs, b.Addr("mqtt").String())
		if i == 0 {
			// Tokens signed by node 0 are good on every node: they
			// share the secret. REST calls go to node 0.
			srv.httpURL, srv.sign = "http://"+b.Addr("http").String(), b.SignToken
		}
	}
	srv.close = closeAll
	return srv, nil
}

// startNATS starts an embedded NATS server on a free port of 127.0.0.1: the
// bus of a cluster run.
func startNATS() (*natsserver.Server, error) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server: not ready after 10s")
	}
	return ns, nil
}

// allowAll lets every client connect, publish and subscribe. It is mochi's
// hooks/auth.AllowHook, written out because that package pulls in a YAML
// module that Parley's go.mod does not carry.
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "allow-all-auth" }

func (allowAll) Provides(b byte) bool { return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck }

func (allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// startPlain starts a bare mochi-mqtt broker on 127.0.0.1: default
// capabilities, an allow-all auth hook, no Parley hooks, no store.
func startPlain(lc *logCounter) (*server, error) {
	ms := mqtt.New(&mqtt.Options{Logger: slog.New(lc)})
	if err := ms.AddHook(new(allowAll), nil); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := ms.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		ln.Close()
		return nil, err
	}
	if err := ms.Serve(); err != nil {
		ln.Close()
		return nil, err
	}
	return &server{name: "plain", mode: modeRaw, addrs: []string{ln.Addr().String()}, log: lc, close: func() { _ = ms.Close() }}, nil
}

// externalTarget is the broker named by --target.
func externalTarget(cfg *config) *server {
	u := cfg.target
	s := &server{name: "target", mode: modeRaw, addrs: []string{u.Host}, log: newLogCounter(nil, slog.LevelError), close: func() {}}
	if u.User != nil {
		s.username = u.User.Username()
		s.password, _ = u.User.Password()
	}
	return s
}

// createGroups creates the groups of tp over Parley's REST API, each owned by
// its first member.
func createGroups(ctx context.Context, s *server, tp *topology) error {
	client := &http.Client{Timeout: 30 * time.Second}
	for _, c := range tp.convs {
		if c.group == "" {
			continue
		}
		owner := tp.users[c.members[0]]
		var members []string
		for _, m := range c.members[1:] {
			members = append(members, tp.users[m])
		}
		body, _ := json.Marshal(map[string]any{"id": c.group, "name": c.group, "members": members})
		_, tok, err := s.credentials(owner)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.httpURL+"/v1/groups", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("create group %s: %w", c.group, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("create group %s: %s: %s", c.group, resp.Status, strings.TrimSpace(string(msg)))
		}
	}
	return nil
}

// logCounter is the embedded servers' slog handler: it counts every warning
// and error by message (they belong in the report), and passes records at or
// above level to next.
type logCounter struct {
	next  slog.Handler
	level slog.Level
	state *logState
}

type logState struct {
	mu     sync.Mutex
	counts map[string]int
	muted  bool
}

func newLogCounter(w io.Writer, level slog.Level) *logCounter {
	lc := &logCounter{level: level, state: &logState{counts: map[string]int{}}}
	if w != nil {
		lc.next = slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	}
	return lc
}

func (l *logCounter) Enabled(_ context.Context, lv slog.Level) bool {
	return lv >= slog.LevelWarn || (l.next != nil && lv >= l.level)
}

func (l *logCounter) Handle(ctx context.Context, r slog.Record) error {
	st := l.state
	st.mu.Lock()
	muted := st.muted
	if r.Level >= slog.LevelWarn && !muted {
		key := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" {
				key += " (" + a.Value.String() + ")"
				return false
			}
			return true
		})
		st.counts[key]++
	}
	st.mu.Unlock()
	if l.next != nil && r.Level >= l.level && !muted {
		return l.next.Handle(ctx, r)
	}
	return nil
}

func (l *logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	if l.next != nil {
		c.next = l.next.WithAttrs(as)
	}
	return &c
}

func (l *logCounter) WithGroup(name string) slog.Handler {
	c := *l
	if l.next != nil {
		c.next = l.next.WithGroup(name)
	}
	return &c
}

// count handles a record read from another process's log: level, message
// and its error attribute ("" for none).
func (l *logCounter) count(lv slog.Level, msg, errText string) {
	r := slog.NewRecord(time.Now(), lv, msg, 0)
	if errText != "" {
		r.AddAttrs(slog.String("error", errText))
	}
	if l.Enabled(context.Background(), lv) {
		_ = l.Handle(context.Background(), r)
	}
}

// mute stops counting and passing records: shutdown noise is not the run's.
func (l *logCounter) mute() {
	l.state.mu.Lock()
	l.state.muted = true
	l.state.mu.Unlock()
}

// summary returns the counted records, most frequent first.
func (l *logCounter) summary() []logLine {
	l.state.mu.Lock()
	defer l.state.mu.Unlock()
	var out []logLine
	for k, n := range l.state.counts {
		out = append(out, logLine{Message: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Message < out[j].Message
	})
	return out
}

// logLine is a server log message and how often it was seen.
type logLine struct {
	Message string `json:"message"`
	Count   int    `json:"count"`
}
