// Package broker is Parley as a library: an embedded mochi-mqtt broker wired
// to the hooks, a history.Store and the HTTP API (health, readiness, metrics,
// REST). Another Go program runs Parley in-process with New, Start and Close,
// passing its own store and, if it likes, its own listeners.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/hooks"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/cluster"
	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/files"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/moderation"
	"github.com/parley-im/parley/internal/outbox"
	"github.com/parley-im/parley/internal/plain"
	"github.com/parley-im/parley/internal/rest"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// ACL holds the rules for plain MQTT topics outside Parley's prefix; see
// ParseACL for the file format.
type ACL = auth.ACL

// ParseACL reads ACL rules, one per line: USER ACCESS FILTER, where USER is
// a user id or *, ACCESS is read, write, readwrite or deny, and FILTER is an
// MQTT topic filter in which {user} stands for the connecting user. The
// first rule whose user matches and whose filter covers the topic decides;
// without one, access is denied. Errors name the offending line.
func ParseACL(r io.Reader) (*ACL, error) { return auth.ParseACL(r) }

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("broker: closed")

// Broker is a running Parley node.
type Broker struct {
	opts       Options
	log        *slog.Logger
	mqtt       *mqtt.Server
	store      history.Store
	tokens     *auth.Tokens
	messenger  *send.Service
	api        *rest.API
	privacy    history.Privacy // nil: the store has no search, retention, blocks
	authorizer *auth.Authorizer
	hub        *delivery.Hub
	committer  *send.Committer
	groups     *send.Groups
	bus        *cluster.Bus
	plain      *hooks.Plain // plain MQTT state and cluster; nil when neither applies
	metrics    *metrics.Metrics
	registry   *prometheus.Registry
	http       *http.Server
	httpLn     net.Listener

	events *events // the outbox's sinks; nil without an outbox

	files     *files.Service // attachments; nil when off
	stopFiles func()         // set by Start when files is set

	stopPruning context.CancelFunc // set by Start
	pruned      chan struct{}      // closed when the pruning loop ends
	stopExpiry  context.CancelFunc // stops the retention job
	expired     chan struct{}      // closed when the retention job ends

	mu        sync.Mutex
	addrs     map[string]net.Addr
	listeners []net.Listener
	started   bool
	closed    bool
}

// New validates opts and builds a Broker; Start starts it.
func New(opts Options) (*Broker, error) {
	if opts.Store == nil {
		return nil, errors.New("broker: Options.Store is required")
	}
	if len(opts.JWTSecret) == 0 && opts.JWTPublicKey == nil {
		return nil, errors.New("broker: a JWT secret or public key is required")
	}
	if opts.MQTTWriteQueue > MaxMQTTWriteQueue {
		return nil, fmt.Errorf("broker: MQTTWriteQueue %d is above %d", opts.MQTTWriteQueue, MaxMQTTWriteQueue)
	}
	if (opts.TLSListener != nil || opts.TLSAddr != "") && opts.TLSConfig == nil {
		return nil, errors.New("broker: TLS listener needs TLSConfig")
	}
	natsAuth := cluster.Auth{CredsFile: opts.NATSCredsFile, NKeyFile: opts.NATSNKeyFile, TLS: opts.NATSTLSConfig}
	if opts.NATSURL == "" && natsAuth != (cluster.Auth{}) {
		return nil, errors.New("broker: NATS credentials or TLS set without NATSURL")
	}
	if _, err := natsAuth.Options(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	for _, u := range opts.WebhookURLs {
		if err := ParseHookURL(u); err != nil {
			return nil, fmt.Errorf("broker: WebhookURLs: %w", err)
		}
	}
	if err := ParseHookURL(opts.ModerationURL); opts.ModerationURL != "" && err != nil {
		return nil, fmt.Errorf("broker: ModerationURL: %w", err)
	}
	var err error
	if opts.PublicURL, err = ParsePublicURL(opts.PublicURL); err != nil {
		return nil, fmt.Errorf("broker: PublicURL: %w", err)
	}
	if opts.WebMQTTURL, err = ParseWebMQTTURL(opts.WebMQTTURL); err != nil {
		return nil, fmt.Errorf("broker: WebMQTTURL: %w", err)
	}
	if opts.TopicPrefix != "" && !history.ValidGroupID(opts.TopicPrefix) {
		return nil, fmt.Errorf("broker: topic prefix %q must be one topic level of A-Z a-z 0-9 . _ -", opts.TopicPrefix)
	}
	if len(opts.WebhookURLs) > 0 && len(opts.WebhookSecret) == 0 {
		return nil, errors.New("broker: webhooks need a WebhookSecret to sign their requests")
	}
	if opts.DevLogin && len(opts.JWTSecret) == 0 {
		return nil, errors.New("broker: DevLogin needs a JWTSecret to sign its tokens")
	}
	opts = opts.withDefaults()
	b := &Broker{opts: opts, log: opts.Logger, addrs: map[string]net.Addr{}}
	b.registry = opts.Registry
	if b.registry == nil {
		b.registry = prometheus.NewRegistry()
		b.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	b.metrics = metrics.NewMetrics(b.registry)
	b.store = metrics.InstrumentStore(opts.Store, b.metrics)
	b.tokens = &auth.Tokens{Secret: opts.JWTSecret, PublicKey: opts.JWTPublicKey}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = hooks.MaxPacketSize(opts.MaxPayload)
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	caps.MaximumMessageExpiryInterval = int64(max(b.opts.MQTTMaxExpiry, 0) / time.Second)
	// mochi's queue of packets waiting for a client's writer is a channel of
	// this many pointers, allocated with every connection: mochi's 8,192
	// cost 64 KiB per connection. Parley's own deliveries do not use it (the
	// delivery engine writes them, bounded by its window); it carries
	// presence, plain MQTT topics and mochi's acks.
	caps.MaximumClientWritesPending = int32(opts.MQTTWriteQueue)
	if opts.MaxConnections > 0 {
		caps.MaximumClients = int64(opts.MaxConnections)
	}
	b.mqtt = mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       opts.Logger.With("component", "mqtt"),
		Capabilities: caps,
	})
	topics := wire.Topics{Prefix: opts.TopicPrefix}
	b.authorizer = &auth.Authorizer{Tokens: b.tokens, Topics: topics, ACL: opts.ACL, Store: b.store, Anonymous: opts.Anonymous, MaxDevices: opts.MaxDevices}
	authHook := &hooks.Auth{Server: b.mqtt, Authorizer: b.authorizer, Metrics: b.metrics, Log: opts.Logger}
	// Delivery: the engine, and its mochi hook (added last, below).
	b.hub = &delivery.Hub{Store: b.store, NewDeviceBacklog: opts.NewDeviceBacklog,
		CatchupLimit: opts.CatchupLimit, DeviceQueue: opts.DeviceQueue, DeviceInflightBytes: opts.DeviceInflightBytes,
		UserInflightBytes: opts.UserInflightBytes, Metrics: b.metrics, Log: opts.Logger,
		PublishPresence: hooks.PresencePublisher(b.mqtt, topics)}
	deliveryHook := &hooks.Delivery{Hub: b.hub, Server: b.mqtt, Topics: topics, Log: b.log}
	var limiter *send.RateLimiter
	if opts.Rate > 0 {
		limiter = send.NewRateLimiter(opts.Rate, opts.Burst)
	}
	b.committer = &send.Committer{Store: b.store, Partitions: opts.CommitPartitions}
	b.groups = send.NewGroups(b.store)
	b.messenger = &send.Service{Store: b.store, Groups: b.groups,
		Deliver: b.hub, Committer: b.committer, ReceiptGroupMax: opts.ReceiptGroupMax, Limiter: limiter, MaxPayload: opts.MaxPayload, EditWindow: opts.EditWindow,
		Metrics: b.metrics, Log: opts.Logger}
	if opts.ModerationURL != "" {
		if len(opts.WebhookSecret) == 0 {
			b.log.Warn("moderation requests are not signed: set a webhook secret (PARLEY_WEBHOOK_SECRET)")
		}
		mod := moderation.New(opts.ModerationURL, opts.WebhookSecret, opts.ModerationTimeout, opts.ModerationFailClosed,
			opts.Logger, b.registry)
		b.messenger.Moderate = mod.Check
	}
	if opts.NATSURL != "" {
		// Cluster mode: the bus is wired into the engines here and connects
		// in Start.
		node := opts.NodeID
		if node == "" {
			node, _ = os.Hostname()
		}
		b.bus = &cluster.Bus{Node: node, Local: b.hub, ForgetGroup: b.groups.Forget, Log: b.log.With("node", node),
			Sweep: opts.ClusterSweep, DropRate: opts.clusterDropRate,
			Auth: cluster.Auth{CredsFile: opts.NATSCredsFile, NKeyFile: opts.NATSNKeyFile, TLS: opts.NATSTLSConfig}}
		b.hub.Remote = b.bus
		b.hub.OnClaim = b.bus.Kick
		b.messenger.Invalidate = b.bus.Invalidate
	}
	if err := b.messenger.Init(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if b.files, err = newFiles(opts, opts.Store, b.registry); err != nil {
		return nil, err
	}
	var imageURL func(string) string
	if b.files != nil {
		imageURL = b.files.URL
	}
	events, providers, err := newEvents(opts, outbox.NewMetrics(b.registry), b.groups.Users, imageURL)
	if err != nil {
		return nil, err
	}
	b.events = events
	if b.files != nil {
		b.messenger.Attach = b.files.Resolve
	}
	b.api = &rest.API{Store: b.store, Service: b.messenger, Tokens: b.tokens, MaxPayload: opts.MaxPayload, Log: opts.Logger,
		PushProviders: providers, Files: b.files}
	if ob, ok := opts.Store.(history.Outboxer); ok && len(providers) > 0 {
		b.api.Push = ob
	}
	if err := b.setupPrivacy(); err != nil {
		return nil, err
	}
	publish := &hooks.Publish{Service: b.messenger, Topics: topics, Acks: b.hub, Server: b.mqtt, Metrics: b.metrics, Log: opts.Logger}
	if err := b.mqtt.AddHook(authHook, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := b.mqtt.AddHook(publish, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := b.mqtt.AddHook(deliveryHook, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	// Plain MQTT: the state the store keeps (in cluster mode each session
	// is held by one node, plain.State.Node), and the cluster's publishes,
	// share groups and session moves.
	st, stater := opts.Store.(history.MQTTStater)
	switch {
	case b.bus != nil:
		b.plain = &hooks.Plain{Server: b.mqtt, Topics: topics, Bus: b.bus, Node: b.bus.Node, Log: b.bus.Log}
		b.bus.Plain = b.plain
	case stater:
		b.plain = &hooks.Plain{Server: b.mqtt, Topics: topics, Log: opts.Logger}
	}
	if stater {
		b.plain.State = &plain.State{Store: st} // Plain.Init gives it the hook's Topics, Node and Log
	}
	if b.plain != nil {
		if err := b.mqtt.AddHook(b.plain, nil); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	session := &hooks.Session{Topics: topics, MaxKeepAlive: uint16(min(max(opts.MaxKeepAlive/time.Second, 0), 65535))}
	if err := b.mqtt.AddHook(session, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_connections",
		Help: "MQTT clients currently connected.",
	}, func() float64 { return float64(atomic.LoadInt64(&b.mqtt.Info.ClientsConnected)) }))
	return b, nil
}

// SignToken returns a token for user valid for ttl, signed with
// Options.JWTSecret; it fails when the broker verifies tokens with a public
// key only (the issuer signs them then).
func (b *Broker) SignToken(user string, ttl time.Duration) (string, error) {
	return b.tokens.Sign(user, ttl)
}

// Addr returns the bound address of a started listener: "mqtt", "ws",
// "tls" or "http"; nil when that listener is disabled.
func (b *Broker) Addr(name string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[name]
}

func listen(ln net.Listener, addr string) (net.Listener, error) {
	if ln != nil || addr == "" {
		return ln, nil
	}
	return net.Listen("tcp", addr)
}

// Start opens the listeners, connects to NATS in cluster mode and starts
// serving. It returns once everything listens; serving goes on until Close.
// ctx bounds the start-up only: when it is done before the broker serves,
// Start closes what it opened and returns its error.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.started {
		return errors.New("broker: already started")
	}
	b.started = true
	var opened []net.Listener
	fail := func(err error) error {
		for _, l := range opened {
			l.Close()
		}
		return err
	}
	type spec struct {
		name string
		ln   net.Listener
		addr string
	}
	specs := []spec{{"mqtt", b.opts.MQTTListener, b.opts.MQTTAddr}, {"ws", b.opts.WSListener, b.opts.WSAddr},
		{"tls", b.opts.TLSListener, b.opts.TLSAddr}, {"http", b.opts.HTTPListener, b.opts.HTTPAddr}}
	lns := map[string]net.Listener{}
	for _, s := range specs {
		ln, err := listen(s.ln, s.addr)
		if err != nil {
			return fail(fmt.Errorf("broker: listen %s on %s: %w", s.name, s.addr, err))
		}
		if ln == nil {
			continue
		}
		opened = append(opened, ln)
		b.listeners = append(b.listeners, ln)
		lns[s.name] = ln
		b.addrs[s.name] = ln.Addr()
	}
	for _, name := range []string{"mqtt", "tls", "ws"} {
		if ln := lns[name]; ln != nil {
			lns[name] = deadlineListener{Listener: ln, d: b.opts.ConnectTimeout, log: b.log, linger: name == "mqtt"}
		}
	}
	if ln := lns["mqtt"]; ln != nil {
		if err := b.mqtt.AddListener(&netListener{Listener: listeners.NewNet("tcp", ln), log: b.log}); err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
	}
	if ln := lns["tls"]; ln != nil {
		if err := b.mqtt.AddListener(&netListener{Listener: listeners.NewNet("tls", tls.NewListener(ln, b.opts.TLSConfig)), log: b.log}); err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
	}
	if ln := lns["ws"]; ln != nil {
		ws := newWebsocket("ws", ln, b.log, b.opts.ConnectTimeout)
		ws.readHeaderTimeout, ws.idleTimeout = b.opts.HTTPReadHeaderTimeout, b.opts.HTTPIdleTimeout
		if err := b.mqtt.AddListener(ws); err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
	}
	if b.bus != nil {
		if err := b.bus.Connect(b.opts.NATSURL); err != nil {
			return fail(fmt.Errorf("broker: %w", err))
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("broker: start: %w", err))
	}
	if err := b.mqtt.Serve(); err != nil {
		return fail(fmt.Errorf("broker: serve mqtt: %w", err))
	}
	if b.plain != nil {
		if err := b.plain.Start(); err != nil {
			b.log.Error("plain mqtt state", "error", err)
		}
	}
	if ln := lns["http"]; ln != nil {
		b.httpLn = ln
		b.http = &http.Server{Handler: b.Handler(), ReadHeaderTimeout: b.opts.HTTPReadHeaderTimeout,
			ReadTimeout: b.opts.HTTPReadTimeout, IdleTimeout: b.opts.HTTPIdleTimeout}
		go func() {
			if err := b.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error("http server", "error", err)
			}
		}()
	}
	for name, a := range b.addrs {
		b.log.Info("listening", "listener", name, "addr", a.String())
	}
	if b.opts.DeviceTTL > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		b.stopPruning, b.pruned = cancel, make(chan struct{})
		go b.pruneDevices(ctx)
	}
	if b.privacy != nil {
		ctx, cancel := context.WithCancel(context.Background())
		b.stopExpiry, b.expired = cancel, make(chan struct{})
		go b.expireMessages(ctx)
	}
	b.events.start()
	b.startFiles()
	return nil
}

// dropClients closes every client connection.
func (b *Broker) dropClients() {
	for _, cl := range b.mqtt.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() {
			cl.Stop(ErrClosed)
		}
	}
}

// Close stops accepting connections, closes client connections, lets sends in
// progress finish (bounded by ctx, or ShutdownTimeout without a deadline) and
// returns. It does not close the store.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	stopPruning, pruned, stopFiles := b.stopPruning, b.pruned, b.stopFiles
	stopExpiry, expired := b.stopExpiry, b.expired
	b.mu.Unlock()
	if stopFiles != nil {
		stopFiles()
	}
	if stopPruning != nil {
		stopPruning()
		<-pruned
	}
	if stopExpiry != nil {
		stopExpiry()
		<-expired
	}
	b.events.close()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.ShutdownTimeout)
		defer cancel()
	}
	var errs []error
	if b.http != nil {
		if err := b.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("broker: http shutdown: %w", err))
		}
	}
	if started {
		// Stop accepting first: mochi closes a listener's clients before the
		// listener itself, so a client accepted in between would never be
		// closed and its Close would wait forever.
		b.mu.Lock()
		for _, ln := range b.listeners {
			ln.Close()
		}
		b.mu.Unlock()
		// Then drop every connection and let their goroutines finish before
		// mochi's Close: its closeListenerClients takes the clients lock for
		// reading twice over, which deadlocks against a disconnecting client
		// removing itself meanwhile.
		b.dropClients()
		for atomic.LoadInt64(&b.mqtt.Info.ClientsConnected) > 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		closed := make(chan error, 1)
		go func() { closed <- b.mqtt.Close() }()
		tick := time.NewTicker(100 * time.Millisecond)
	wait:
		for {
			select {
			case err := <-closed:
				if err != nil {
					errs = append(errs, fmt.Errorf("broker: mqtt close: %w", err))
				}
				break wait
			case <-tick.C:
				// Any client still connected (one that was mid-CONNECT when
				// its listener closed) is dropped too.
				b.dropClients()
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("broker: mqtt close: %w", ctx.Err()))
				break wait
			}
		}
		tick.Stop()
	}
	if err := b.messenger.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("broker: waiting for sends in progress: %w", err))
	}
	b.committer.Close()
	if b.bus != nil {
		b.bus.Close()
	}
	return errors.Join(errs...)
}
