package broker

import (
	"crypto"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/defaults"
	"github.com/parley-im/parley/internal/moderation"
	"github.com/parley-im/parley/internal/send"
)

// DefaultDeviceTTL is the default Options.DeviceTTL.
const DefaultDeviceTTL = 90 * 24 * time.Hour

// DefaultMQTTWriteQueue is the default Options.MQTTWriteQueue.
const DefaultMQTTWriteQueue = 1024

// MaxMQTTWriteQueue is the largest Options.MQTTWriteQueue New accepts (512
// KiB a connection).
const MaxMQTTWriteQueue = 1 << 16

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
	// the page's host, or at WebMQTTURL. False: no client.
	Web bool
	// WebMQTTURL is where the web client connects for MQTT over WebSocket,
	// a ws:// or wss:// URL such as wss://chat.example.com/mqtt, for a
	// server behind a reverse proxy that forwards one public host and port;
	// New refuses another scheme, a URL without a host, or one with
	// credentials or a fragment (ParseWebMQTTURL). Empty: the page's host,
	// the WebSocket listener's port and path /mqtt (wss: on an https page).
	WebMQTTURL string
	// PublicURL is the server's external base URL, such as
	// https://chat.example.com (a path is allowed; a trailing slash is
	// dropped). When set, the signed file URLs that leave the server are
	// absolute: the "url" of the REST API's uploads and files and the
	// "image" of push notifications. New refuses anything but an absolute
	// http or https URL without query, fragment or credentials
	// (ParsePublicURL). Empty: those URLs are relative to the server
	// ("/v1/files/...").
	PublicURL string
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
	// MQTTWriteQueue bounds the packets the MQTT layer queues for one
	// client's writer: plain MQTT deliveries (Parley's own deliveries have
	// their own writer and DeviceQueue). Beyond it a delivery to that client
	// is dropped and counted (a Parley device catches up from the store
	// instead). The queue is allocated with every connection, 8 bytes an
	// entry: a fleet of idle devices that receive no plain MQTT may lower
	// it (64: about 7.5 KiB less per connection); default
	// DefaultMQTTWriteQueue, at most MaxMQTTWriteQueue (New refuses more).
	MQTTWriteQueue int
	// MaxConnections bounds the MQTT sessions connected to this node;
	// beyond it a CONNECT is refused with 0x89 server busy (MQTT 3.1.1:
	// 0x03 server unavailable), so that the node refuses cleanly before it
	// runs out of file descriptors. 0: no bound (parleyd sets it from the
	// open files limit).
	MaxConnections int
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
	// UploadQuota bounds the bytes of one user's stored uploads: an upload
	// that would take the user over it is refused with 413 quota_exceeded
	// before its body is stored (a resumable upload at its creation, with
	// its declared length, and again when complete). Files deleted by the
	// collector or with the account give their bytes back. Default
	// DefaultUploadQuota (1 GiB); negative: no quota.
	UploadQuota int64
	// UploadRate bounds the uploads (one-shot, and resumable ones at their
	// creation) each user may start per minute, with bursts of as many:
	// beyond it they are refused with 429 rate_limited and Retry-After.
	// Default DefaultUploadRate (60); negative: no limit.
	UploadRate float64
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
	defaults.Positive(&o.MaxPayload, send.DefaultMaxPayload)
	if o.EditWindow == 0 {
		o.EditWindow = DefaultEditWindow
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.UploadQuota == 0 {
		o.UploadQuota = DefaultUploadQuota
	}
	if o.UploadRate == 0 {
		o.UploadRate = DefaultUploadRate
	}
	defaults.Positive(&o.Burst, 2*o.Rate)
	defaults.Positive(&o.ConnectTimeout, DefaultConnectTimeout)
	defaults.Positive(&o.CommitPartitions, 4)
	defaults.Positive(&o.MQTTWriteQueue, DefaultMQTTWriteQueue)
	defaults.Positive(&o.ShutdownTimeout, 10*time.Second)
	defaults.Positive(&o.HTTPReadHeaderTimeout, DefaultHTTPReadHeaderTimeout)
	defaults.Positive(&o.HTTPReadTimeout, DefaultHTTPReadTimeout)
	defaults.Positive(&o.HTTPIdleTimeout, DefaultHTTPIdleTimeout)
	if o.DeviceTTL == 0 {
		o.DeviceTTL = DefaultDeviceTTL
	}
	defaults.Positive(&o.ModerationTimeout, DefaultModerationTimeout)
	defaults.Positive(&o.RetentionEvery, DefaultRetentionEvery)
	defaults.Positive(&o.RetentionBatch, DefaultRetentionBatch)
	if o.MQTTMaxExpiry == 0 {
		o.MQTTMaxExpiry = DefaultMQTTMaxExpiry
	}
	if o.MaxKeepAlive == 0 {
		o.MaxKeepAlive = DefaultMaxKeepAlive
	}
	return o
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

// parseURL parses s as an absolute URL of one of schemes with a host;
// what and example name the setting in the error. The Parse*URL functions'
// errors name the URL, not the option: callers add which option it is.
func parseURL(s, what, example string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%s %q: want an absolute %s URL such as %s", what, s, strings.Join(schemes, " or "), example)
	}
	return u, nil
}

// ParseHookURL checks s as an address Parley posts to (a webhook, the
// moderation hook): an absolute http or https URL with a host.
func ParseHookURL(s string) error {
	_, err := parseURL(s, "hook URL", "https://hooks.example.com/parley", "http", "https")
	return err
}

// ParsePublicURL checks s as Options.PublicURL and returns it without its
// trailing slashes; "" stays "". It refuses anything but an absolute http
// or https URL with a host and without query, fragment or credentials.
func ParsePublicURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := parseURL(s, "public URL", "https://chat.example.com", "http", "https")
	if err != nil {
		return "", err
	}
	if u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#") || u.User != nil {
		return "", fmt.Errorf("public URL %q: want no query, fragment or credentials", s)
	}
	// Rebuilt from its parts: escaped as a URL must be.
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/"), RawPath: strings.TrimRight(u.RawPath, "/")}).String(), nil
}

// ParseWebMQTTURL checks s as Options.WebMQTTURL and returns it; "" stays
// "". It refuses anything but a ws or wss URL with a host and without
// fragment or credentials (the web client's configuration is public).
func ParseWebMQTTURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := parseURL(s, "web MQTT URL", "wss://chat.example.com/mqtt", "ws", "wss")
	if err != nil {
		return "", err
	}
	if strings.Contains(s, "#") || u.User != nil {
		return "", fmt.Errorf("web MQTT URL %q: want no fragment or credentials", s)
	}
	return u.String(), nil
}
