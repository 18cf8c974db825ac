// Package broker is Parley as a library: an embedded mochi-mqtt broker wired
// to the hooks, a history.Store and the HTTP API (health, readiness, metrics,
// REST). Another Go program runs Parley in-process with New, Start and Close,
// passing its own store and, if it likes, its own listeners.
package broker

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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

// DefaultDeviceTTL is the default Options.DeviceTTL.
const DefaultDeviceTTL = 90 * 24 * time.Hour

// Options configure a Broker. Zero values take the documented defaults; a
// listener is enabled when its net.Listener or its address is set.
type Options struct {
	// Store is the message store; required. The caller owns it: Close does
	// not close it.
	Store history.Store

	// MQTTListener, or else MQTTAddr (e.g. ":1883"), serves MQTT over TCP.
	MQTTListener net.Listener
	MQTTAddr     string
	// WSListener, or else WSAddr (e.g. ":8083"), serves MQTT over WebSocket
	// on path /mqtt.
	WSListener net.Listener
	WSAddr     string
	// TLSListener, or else TLSAddr (e.g. ":8883"), serves MQTT over TLS with
	// TLSConfig, which is then required.
	TLSListener net.Listener
	TLSAddr     string
	TLSConfig   *tls.Config
	// HTTPListener, or else HTTPAddr (e.g. ":8080"), serves /healthz,
	// /readyz, /metrics and the REST API.
	HTTPListener net.Listener
	HTTPAddr     string
	// CORSOrigins lists the browser origins allowed to call the REST API;
	// "*" allows any. Empty: no CORS headers.
	CORSOrigins []string
	// Web serves the web chat client (package web, docs/web.md) at "/" on
	// the HTTP listener; it speaks MQTT over the WebSocket listener's port on
	// the page's host. False: no client.
	Web bool
	// DevLogin serves POST /dev/login, which issues a token for any user
	// name: for development only, since anyone may then sign in as anyone.
	// It needs JWTSecret. False: no such route.
	DevLogin bool

	// JWTSecret verifies HS256 tokens; JWTPublicKey verifies RS256, ES256 or
	// EdDSA tokens. At least one is required.
	JWTSecret    []byte
	JWTPublicKey crypto.PublicKey

	// TopicPrefix is the first topic level of Parley's topics; default "im".
	TopicPrefix string
	// ACL governs plain MQTT topics outside the prefix; nil denies them
	// (or, with Anonymous, allows them).
	ACL *ACL
	// Anonymous enables open mode: clients without credentials may connect
	// and use topics outside the prefix as a plain MQTT broker; the prefix
	// stays closed to them.
	Anonymous bool
	// MaxKeepAlive caps the keep alive of MQTT 5 clients, who are told it
	// in the CONNACK; default DefaultMaxKeepAlive (60 s), negative: no cap.
	// MQTT 3.1.1 clients keep theirs.
	MaxKeepAlive time.Duration
	// MQTTMaxExpiry bounds how long a plain MQTT message may wait, queued
	// for a session or retained (a message's own expiry interval applies
	// when shorter); default DefaultMQTTMaxExpiry (24 h), negative: no bound.
	MQTTMaxExpiry time.Duration
	// MaxPayload bounds a send payload in bytes; default 64 KiB.
	MaxPayload int
	// NewDeviceBacklog is how many of each conversation's latest messages a
	// device that never connected before receives; default 50.
	NewDeviceBacklog int
	// CatchupLimit bounds the messages per conversation sent to a device in
	// one catch-up; beyond it the device gets a gap event; default 500.
	CatchupLimit int
	// ReceiptGroupMax is the largest group whose members get read receipts;
	// default 100.
	ReceiptGroupMax int
	// CommitPartitions is the number of concurrent group-commit
	// transactions (conversations are spread over them); default 4.
	CommitPartitions int
	// DeviceQueue bounds the live deliveries waiting for one device; beyond
	// it the device catches up from the store instead; default 1024.
	DeviceQueue int
	// MaxDevices bounds the connected sessions (client ids) of one user on
	// this node; beyond it a CONNECT is refused with 0x97 quota exceeded
	// (MQTT 3.1.1: 0x03); default 32.
	MaxDevices int
	// DeviceInflightBytes and UserInflightBytes bound the payload bytes of
	// unacknowledged inbox deliveries, per device (default 4 MiB) and per
	// user on this node (default 16 MiB); a device may always have one
	// delivery in flight.
	DeviceInflightBytes int64
	UserInflightBytes   int64

	// DeviceTTL is how long a device (client id) may go unseen before it is
	// forgotten with its session and cursors; it comes back as a new device.
	// Default DefaultDeviceTTL (90 days); negative: devices are never
	// forgotten. Devices connected to any node are never forgotten: each
	// node checks every DeviceTTL/4 (at most hourly) and marks its own
	// connected devices seen.
	DeviceTTL time.Duration

	// EditWindow is how long after sending a message its author may edit
	// it (0: default DefaultEditWindow, 48h; negative: no limit).
	EditWindow time.Duration

	// Rate is the per-user send rate per second (0: default 20, negative:
	// unlimited) with bursts of Burst (default 2×Rate).
	Rate  float64
	Burst float64

	// ModerationURL turns on the moderation hook: every send (ephemeral
	// included) and edit is POSTed there before it is stored, and the answer
	// allows, rejects or replaces it (see docs/moderation.md). Empty: off.
	ModerationURL string
	// ModerationTimeout bounds one moderation call; default
	// DefaultModerationTimeout (2s).
	ModerationTimeout time.Duration
	// ModerationFailClosed refuses a send or edit (code unavailable) when
	// the moderation call fails (timeout, unreachable, non-2xx, garbage);
	// false (the default) stores it as sent.
	ModerationFailClosed bool

	// NATSURL turns on cluster mode: nodes sharing one PostgreSQL deliver to
	// each other over NATS (see docs/architecture.md). Empty: one node.
	NATSURL string
	// NATSCredsFile (a .creds file: user JWT and NKey seed) or NATSNKeyFile
	// (an NKey user seed) authenticates this node to NATS; at most one.
	// NATSTLSConfig, when set, secures the NATS connection with TLS (RootCAs
	// to verify the server, Certificates for a client certificate). Every
	// node can publish on every Parley subject, so the NATS server must only
	// admit Parley's nodes: see docs/architecture.md.
	NATSCredsFile string
	NATSNKeyFile  string
	NATSTLSConfig *tls.Config
	// NodeID names this node in the cluster; default the hostname.
	NodeID string
	// ClusterSweep is how often every device is checked against the store
	// in cluster mode; default 30s.
	ClusterSweep time.Duration
	// clusterDropRate drops this share of deliveries received from other
	// nodes: a test knob (export_test.go) showing that losses are repaired.
	clusterDropRate float64

	// WebhookURLs receive every stored change (message, edit, delete,
	// reaction, membership change, read marker) as a signed POST, at least
	// once and in seq order per conversation (see docs/events.md).
	WebhookURLs []string
	// WebhookSecret signs webhook requests and those of the moderation hook
	// (header Parley-Signature, see docs/events.md); webhooks require it.
	WebhookSecret []byte
	// Push notifications reach devices that are not connected (see
	// docs/events.md). A device registers its token with PUT
	// /v1/devices/{device}/push for a configured provider: "fcm" with
	// FCMCredentialsFile (a service-account JSON), "apns" with the APNs*
	// fields, "webhook" with WebhookURLs (a push.notify event to the
	// webhooks). PushDelay (default 5s) is how long a message may go
	// unacknowledged by all of a user's devices before they are notified;
	// PushHidePreview leaves the message text out of notifications.
	PushDelay          time.Duration
	PushHidePreview    bool
	FCMCredentialsFile string
	// FCMEndpoint defaults to https://fcm.googleapis.com.
	FCMEndpoint string
	// APNsKeyFile is the .p8 token key; APNsKeyID and APNsTeamID identify
	// it, APNsTopic is the app's bundle id; APNsEndpoint defaults to
	// production (https://api.push.apple.com).
	APNsKeyFile, APNsKeyID, APNsTeamID, APNsTopic, APNsEndpoint string
	// PushHTTPClient, when set, is the HTTP client of the FCM and APNs
	// providers (tests point it at local servers).
	PushHTTPClient *http.Client

	// KafkaBrokers, when set, exports every event to the Kafka topic
	// KafkaTopic (default "parley.events"), keyed by conversation.
	KafkaBrokers []string
	KafkaTopic   string

	// OutboxPoll is how often an idle sink reads the outbox; default
	// 200ms. OutboxMinBackoff is the first wait after a failed delivery
	// (default 1s; it doubles up to 5 min). OutboxPruneEvery is the time
	// between outbox prunes (default 1 min).
	OutboxPoll       time.Duration
	OutboxMinBackoff time.Duration
	OutboxPruneEvery time.Duration

	// BlobDir, or else S3Endpoint, turns on attachments (POST /v1/uploads,
	// GET /v1/files/{id}): files are stored under BlobDir, or in bucket
	// S3Bucket of the S3-compatible server at S3Endpoint (credentials from
	// the standard AWS variables; S3Region default us-east-1). Both empty:
	// the file routes answer 404. In cluster mode use S3 or a shared
	// directory, so that any node serves any file.
	BlobDir    string
	S3Endpoint string
	S3Bucket   string
	S3Region   string
	// MaxUpload bounds an upload in bytes; default DefaultMaxUpload (25
	// MiB). MaxImagePixels bounds the pixels of an uploaded image (default
	// 50 million): bigger ones are refused before they are decoded.
	MaxUpload      int64
	MaxImagePixels int64
	// UploadTTL is how long an upload may wait for a message to refer to it
	// before it is deleted (default 24h); FileCollectEvery is the time
	// between two collections (default 10 min).
	UploadTTL        time.Duration
	FileCollectEvery time.Duration
	// UploadDir holds resumable uploads in progress (the tus protocol on
	// /v1/uploads, docs/api.md); default BlobDir/partial, or with S3 a
	// directory under the system's temporary directory. In cluster mode,
	// share it between the nodes or route an upload's requests to one node.
	UploadDir string
	// FileURLSecret signs file URLs (?sig=), valid FileURLTTL (default 1h);
	// default JWTSecret.
	FileURLSecret []byte
	FileURLTTL    time.Duration
	// Retention deletes messages older than this (PARLEY_RETENTION); a
	// conversation's own retention (PUT .../retention) applies when
	// shorter. 0: none. A background job deletes them every RetentionEvery
	// (default 1 min) in transactions of at most RetentionBatch messages
	// (default 500).
	Retention      time.Duration
	RetentionEvery time.Duration
	RetentionBatch int
	// DMPolicy is "open" (default: anyone may send a direct message to
	// anyone) or "contacts" (a direct conversation's first message between
	// users who share no group is refused with not_allowed).
	DMPolicy string

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives Parley's metrics; default a new registry served on
	// /metrics.
	Registry *prometheus.Registry
	// ConnectTimeout bounds the time from accepting a connection to its
	// CONNECT packet; default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ShutdownTimeout bounds Close when its context has no deadline; default
	// 10s.
	ShutdownTimeout time.Duration
	// HTTPReadHeaderTimeout bounds the time to read a request's headers on
	// the HTTP and WebSocket listeners; default DefaultHTTPReadHeaderTimeout.
	HTTPReadHeaderTimeout time.Duration
	// HTTPReadTimeout bounds the time to read a whole REST request, body
	// included; default DefaultHTTPReadTimeout. It does not apply to the
	// WebSocket listener, whose upgraded connections live on.
	HTTPReadTimeout time.Duration
	// HTTPIdleTimeout bounds how long a keep-alive connection of the HTTP or
	// WebSocket listener waits for its next request; default
	// DefaultHTTPIdleTimeout.
	HTTPIdleTimeout time.Duration
}

// Defaults of the HTTP servers' timeouts.
const (
	DefaultHTTPReadHeaderTimeout = 10 * time.Second
	DefaultHTTPReadTimeout       = 30 * time.Second
	DefaultHTTPIdleTimeout       = 2 * time.Minute
)

// withDefaults returns o with the documented default of every zero field.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	orDefault(&o.MaxPayload, send.DefaultMaxPayload)
	if o.EditWindow == 0 {
		o.EditWindow = DefaultEditWindow
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	orDefault(&o.Burst, 2*o.Rate)
	orDefault(&o.ConnectTimeout, DefaultConnectTimeout)
	orDefault(&o.CommitPartitions, 4)
	orDefault(&o.ShutdownTimeout, 10*time.Second)
	orDefault(&o.HTTPReadHeaderTimeout, DefaultHTTPReadHeaderTimeout)
	orDefault(&o.HTTPReadTimeout, DefaultHTTPReadTimeout)
	orDefault(&o.HTTPIdleTimeout, DefaultHTTPIdleTimeout)
	if o.DeviceTTL == 0 {
		o.DeviceTTL = DefaultDeviceTTL
	}
	orDefault(&o.ModerationTimeout, DefaultModerationTimeout)
	orDefault(&o.RetentionEvery, DefaultRetentionEvery)
	orDefault(&o.RetentionBatch, DefaultRetentionBatch)
	if o.MQTTMaxExpiry == 0 {
		o.MQTTMaxExpiry = DefaultMQTTMaxExpiry
	}
	if o.MaxKeepAlive == 0 {
		o.MaxKeepAlive = DefaultMaxKeepAlive
	}
	return o
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T ~int | ~int64 | ~float64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// DefaultMQTTMaxExpiry is the default Options.MQTTMaxExpiry.
const DefaultMQTTMaxExpiry = 24 * time.Hour

// DefaultMaxKeepAlive is the default Options.MaxKeepAlive.
const DefaultMaxKeepAlive = 60 * time.Second

// DefaultModerationTimeout is the default Options.ModerationTimeout.
const DefaultModerationTimeout = moderation.DefaultTimeout

// DefaultEditWindow is how long authors may edit their messages unless
// Options.EditWindow says otherwise.
const DefaultEditWindow = 48 * time.Hour

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
	storage    *hooks.Storage // nil when the store keeps no MQTT state
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
	if u, err := url.Parse(opts.ModerationURL); opts.ModerationURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		return nil, fmt.Errorf("broker: moderation URL %q must be an http or https URL", opts.ModerationURL)
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
	deliveryHook := &hooks.Delivery{Hub: b.hub, Server: b.mqtt, Topics: topics}
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
	var err error
	if b.files, err = newFiles(opts, opts.Store, b.registry); err != nil {
		return nil, err
	}
	var imageURL func(string) string
	if b.files != nil {
		imageURL = func(id string) string { return "/v1/files/" + id + "?" + b.files.Sign(id, time.Now()) }
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
	// Plain MQTT state is stored on a single node only: nodes sharing one
	// store would restore each other's sessions (and publish the wills of
	// clients connected elsewhere).
	if st, ok := opts.Store.(history.MQTTStater); ok && opts.NATSURL == "" {
		b.storage = &hooks.Storage{Store: st, Server: b.mqtt, Topics: topics, Log: opts.Logger}
		if err := b.mqtt.AddHook(b.storage, nil); err != nil {
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
			lns[name] = deadlineListener{ln, b.opts.ConnectTimeout}
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
	if b.storage != nil {
		if err := b.storage.Replay(); err != nil {
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
