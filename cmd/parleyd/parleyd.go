package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/cluster"
)

// Config is parleyd's configuration, from flags and PARLEY_* variables.
type Config struct {
	MQTTAddr     string
	WSAddr       string
	TLSAddr      string
	TLSCert      string
	TLSKey       string
	HTTPAddr     string
	DatabaseURL  string
	DataDir      string
	JWTSecret    string
	JWTPublicKey string
	LogLevel     string
	LogFormat    string
	TopicPrefix  string
	ACLFile      string
	CORSOrigins  string
	// WebhookURL is a comma-separated list of webhook receivers.
	WebhookURL               string
	WebhookSecret            string
	KafkaBrokers, KafkaTopic string
	// Push notifications.
	PushDelay                                                   time.Duration
	PushPreview                                                 bool
	FCMCredentials, FCMEndpoint                                 string
	APNsKeyFile, APNsKeyID, APNsTeamID, APNsTopic, APNsEndpoint string
	NATSURL                                                     string
	NATSCreds                                                   string
	NATSNKey                                                    string
	NATSTLSCA                                                   string
	NATSTLSCert                                                 string
	NATSTLSKey                                                  string
	NodeID                                                      string
	Anonymous                                                   bool
	MaxPayload                                                  int
	Rate                                                        float64
	EditWindow                                                  time.Duration
	Burst                                                       float64
	TokenTTL                                                    time.Duration
	// DeviceTTL is how long a device may go unseen before it is forgotten;
	// 0: never.
	DeviceTTL time.Duration
	// MQTTMaxExpiry bounds how long a plain MQTT message waits; 0: no
	// bound.
	MQTTMaxExpiry time.Duration

	// Attachments: BlobDir (default DATA_DIR/blobs) or S3Endpoint and
	// S3Bucket; MaxUpload in bytes; UploadDir holds resumable uploads in
	// progress; UploadQuota (bytes of a user's stored files) and
	// UploadRate (uploads a minute per user), 0 for no bound.
	BlobDir, S3Endpoint, S3Bucket, S3Region, UploadDir string
	MaxUpload, UploadQuota, UploadRate                 int
	// Retention, SearchLanguage and DMPolicy: see broker.Options and
	// postgres.Store.SetSearchLanguage.
	Retention      time.Duration
	SearchLanguage string
	DMPolicy       string

	NewDeviceBacklog int
	CatchupLimit     int
	ReceiptGroupMax  int
	MaxDevices       int
	MaxConnections   int
	MQTTWriteQueue   int

	// ModerationURL, ModerationTimeout and ModerationFail ("open" or
	// "closed") configure the moderation hook; WebhookSecret signs its
	// requests.
	ModerationURL     string
	ModerationTimeout time.Duration
	ModerationFail    string

	// Web serves the web client; DevLogin its development sign-in
	// (embedded store only).
	Web, DevLogin bool
	// WebMQTTURL is the web client's MQTT over WebSocket URL and PublicURL
	// the server's external base URL: see broker.Options.
	WebMQTTURL, PublicURL string
}

// Main is the parleyd program: ParseFlags, then Run (serve) and Close, or
// Migrate, or Token. Tests run it in-process on :0 ports.
type Main struct {
	Config Config
	Args   []string
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger

	store     history.Store
	storeDesc string         // the store, for messages: no password
	listeners []net.Listener // opened by Run before the broker takes them
	Broker    *broker.Broker
}

// NewMain returns a Main writing to the process's stdout and stderr.
func NewMain() *Main { return &Main{Stdout: os.Stdout, Stderr: os.Stderr} }

// Run checks the configuration, listens, opens the store and starts the
// broker; it returns once the server listens. Close stops it. A
// configuration that cannot work is a *ConfigError, found before anything
// else happens; an address in use is reported before any other output.
func (m *Main) Run(ctx context.Context) error {
	opts, err := m.options()
	if err != nil {
		return err
	}
	files := raiseOpenFiles(opts.Logger)
	if opts.MaxConnections == 0 {
		opts.MaxConnections = int(connectionCapacity(files))
	}
	if err := m.listen(&opts); err != nil {
		return err
	}
	if opts.JWTSecret, err = m.secret(); err != nil {
		return err
	}
	if m.store, err = m.openStore(ctx); err != nil {
		return err
	}
	if err := m.setSearchLanguage(ctx); err != nil {
		return err
	}
	opts.Store = m.store
	if m.Broker, err = broker.New(opts); err != nil {
		return err
	}
	if err := m.Broker.CheckBlobs(ctx); err != nil {
		return err
	}
	if err := m.Broker.Start(ctx); err != nil {
		return err
	}
	if opts.Logger != nil {
		opts.Logger.Info("open files limit", "limit", files, "connections", opts.MaxConnections)
	}
	m.banner()
	return nil
}

// options checks the configuration and returns the broker's options, without
// the listeners, the secret and the store. Every error is a *ConfigError.
func (m *Main) options() (broker.Options, error) {
	c := m.Config
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
		m.Config.NodeID = c.NodeID
	}
	opts := broker.Options{
		TopicPrefix: c.TopicPrefix, MaxPayload: c.MaxPayload, Rate: c.Rate, Burst: c.Burst, Logger: m.Logger,
		NewDeviceBacklog: c.NewDeviceBacklog, CatchupLimit: c.CatchupLimit, ReceiptGroupMax: c.ReceiptGroupMax,
		MaxDevices: c.MaxDevices, MaxConnections: c.MaxConnections, MQTTWriteQueue: c.MQTTWriteQueue, Anonymous: c.Anonymous, NATSURL: c.NATSURL, NodeID: c.NodeID, DeviceTTL: c.DeviceTTL,
		Web: c.Web,
	}
	if c.DevLogin {
		switch {
		case c.DatabaseURL != "":
			m.Logger.Warn("development sign-in (PARLEY_DEV_LOGIN) is off: it exists only on the embedded store")
		case c.JWTPublicKey != "" && c.JWTSecret == "":
			m.Logger.Warn("development sign-in (PARLEY_DEV_LOGIN) is off: it signs with the HS256 secret and only a public key is set")
		default:
			opts.DevLogin = true
		}
	}
	opts.DeviceTTL = offAtZero(c.DeviceTTL) // never forget
	opts.BlobDir, opts.S3Endpoint, opts.S3Bucket, opts.S3Region, opts.MaxUpload = c.BlobDir, c.S3Endpoint, c.S3Bucket, c.S3Region, int64(c.MaxUpload)
	opts.UploadDir = c.UploadDir
	if c.UploadQuota < 0 || c.UploadRate < 0 {
		return opts, configErrorf("upload quota (PARLEY_UPLOAD_QUOTA) %d and rate (PARLEY_UPLOAD_RATE) %d: neither may be negative (0 turns one off)", c.UploadQuota, c.UploadRate)
	}
	opts.UploadQuota, opts.UploadRate = offAtZero(int64(c.UploadQuota)), offAtZero(float64(c.UploadRate))
	if c.S3Endpoint != "" {
		opts.BlobDir = ""
		if opts.UploadDir == "" {
			opts.UploadDir = filepath.Join(c.DataDir, "partial")
		}
		if c.S3Bucket == "" {
			return opts, configErrorf("PARLEY_S3_BUCKET is required with PARLEY_S3_ENDPOINT")
		}
	} else if opts.BlobDir == "" {
		opts.BlobDir = filepath.Join(c.DataDir, "blobs")
	}
	opts.MQTTMaxExpiry = offAtZero(c.MQTTMaxExpiry) // no bound
	if c.EditWindow < 0 {
		return opts, configErrorf("edit window (PARLEY_EDIT_WINDOW) %s is negative: use 0 for no limit", c.EditWindow)
	}
	opts.EditWindow, opts.Rate = offAtZero(c.EditWindow), offAtZero(c.Rate) // no limit
	if c.Retention < 0 {
		return opts, configErrorf("retention (PARLEY_RETENTION) %s is negative: use 0 for none", c.Retention)
	}
	opts.Retention = c.Retention
	switch c.DMPolicy {
	case "open", "contacts":
		opts.DMPolicy = c.DMPolicy
	default:
		return opts, configErrorf("direct message policy (PARLEY_DM_POLICY) %q: want open or contacts", c.DMPolicy)
	}
	if err := moderationOptions(c, &opts); err != nil {
		return opts, err
	}
	var err error
	if m.storeDesc, err = describeStore(c); err != nil {
		return opts, err
	}
	if c.DatabaseURL != "" && c.JWTSecret == "" && c.JWTPublicKey == "" {
		return opts, configErrorf("PARLEY_JWT_SECRET or PARLEY_JWT_PUBLIC_KEY is required with PostgreSQL (every node must share it)")
	}
	if c.JWTPublicKey != "" {
		b, err := os.ReadFile(c.JWTPublicKey)
		if err != nil {
			return opts, configErrorf("read JWT public key (PARLEY_JWT_PUBLIC_KEY): %w", err)
		}
		if opts.JWTPublicKey, err = auth.ParsePublicKey(b); err != nil {
			return opts, configErrorf("JWT public key (PARLEY_JWT_PUBLIC_KEY) %s: %w", c.JWTPublicKey, err)
		}
	}
	if c.ACLFile != "" {
		f, err := os.Open(c.ACLFile)
		if err != nil {
			return opts, configErrorf("open ACL file (PARLEY_ACL_FILE): %w", err)
		}
		opts.ACL, err = auth.ParseACL(f)
		f.Close()
		if err != nil {
			return opts, configErrorf("%s: %w", c.ACLFile, err)
		}
	}
	if c.NATSURL != "" && c.DatabaseURL == "" {
		return opts, configErrorf("cluster mode (PARLEY_NATS_URL) needs the PostgreSQL store (PARLEY_DATABASE_URL)")
	}
	if c.NATSURL == "" && c.NATSCreds+c.NATSNKey+c.NATSTLSCA+c.NATSTLSCert+c.NATSTLSKey != "" {
		return opts, configErrorf("PARLEY_NATS_CREDS, PARLEY_NATS_NKEY and PARLEY_NATS_TLS_* need cluster mode (PARLEY_NATS_URL)")
	}
	if opts.NATSTLSConfig, err = natsTLS(c); err != nil {
		return opts, &ConfigError{err}
	}
	// Check the NATS credentials now, before the store opens.
	opts.NATSCredsFile, opts.NATSNKeyFile = c.NATSCreds, c.NATSNKey
	if _, err := (cluster.Auth{CredsFile: c.NATSCreds, NKeyFile: c.NATSNKey}).Options(); err != nil {
		return opts, configErrorf("NATS credentials (PARLEY_NATS_CREDS, PARLEY_NATS_NKEY): %w", err)
	}
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			opts.CORSOrigins = append(opts.CORSOrigins, o)
		}
	}
	for _, u := range strings.Split(c.WebhookURL, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := broker.ParseHookURL(u); err != nil {
			return opts, configErrorf("PARLEY_WEBHOOK_URL: %v", err)
		}
		opts.WebhookURLs = append(opts.WebhookURLs, u)
	}
	if len(opts.WebhookURLs) > 0 && c.WebhookSecret == "" {
		return opts, configErrorf("PARLEY_WEBHOOK_SECRET is required with PARLEY_WEBHOOK_URL: receivers verify the signature")
	}
	opts.WebhookSecret = []byte(c.WebhookSecret)
	if opts.PublicURL, err = broker.ParsePublicURL(c.PublicURL); err != nil {
		return opts, configErrorf("PARLEY_PUBLIC_URL: %v", err)
	}
	if opts.WebMQTTURL, err = broker.ParseWebMQTTURL(c.WebMQTTURL); err != nil {
		return opts, configErrorf("PARLEY_WEB_MQTT_URL: %v", err)
	}
	for _, b := range strings.Split(c.KafkaBrokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			opts.KafkaBrokers = append(opts.KafkaBrokers, b)
		}
	}
	opts.KafkaTopic = c.KafkaTopic
	if c.PushDelay < 0 {
		return opts, configErrorf("push delay (PARLEY_PUSH_DELAY) %s is negative", c.PushDelay)
	}
	opts.PushDelay, opts.PushHidePreview = c.PushDelay, !c.PushPreview
	opts.FCMCredentialsFile, opts.FCMEndpoint = c.FCMCredentials, c.FCMEndpoint
	opts.APNsKeyFile, opts.APNsKeyID, opts.APNsTeamID, opts.APNsTopic, opts.APNsEndpoint = c.APNsKeyFile, c.APNsKeyID, c.APNsTeamID, c.APNsTopic, c.APNsEndpoint
	if c.APNsKeyFile != "" && (c.APNsKeyID == "" || c.APNsTeamID == "" || c.APNsTopic == "") {
		return opts, configErrorf("APNs needs PARLEY_APNS_KEY_ID, PARLEY_APNS_TEAM_ID and PARLEY_APNS_TOPIC with PARLEY_APNS_KEY_FILE")
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return opts, configErrorf("load TLS certificate (PARLEY_TLS_CERT, PARLEY_TLS_KEY): %w", err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return opts, nil
}

// listen opens every configured listener for opts, so that an address in
// use stops parleyd with one line before anything else starts.
func (m *Main) listen(opts *broker.Options) error {
	c := m.Config
	tlsAddr := ""
	if opts.TLSConfig != nil {
		tlsAddr = c.TLSAddr
	}
	for _, l := range []struct {
		what, env, addr string
		ln              *net.Listener
	}{
		{"MQTT", "PARLEY_MQTT_ADDR", c.MQTTAddr, &opts.MQTTListener},
		{"MQTT over WebSocket", "PARLEY_WS_ADDR", c.WSAddr, &opts.WSListener},
		{"MQTT over TLS", "PARLEY_TLS_ADDR", tlsAddr, &opts.TLSListener},
		{"HTTP", "PARLEY_HTTP_ADDR", c.HTTPAddr, &opts.HTTPListener},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return listenError(l.what, l.env, l.addr, err)
		}
		m.listeners = append(m.listeners, ln)
		*l.ln = ln
	}
	return nil
}

// listenError says why listening on addr failed in a few words: an address
// that cannot be one is a *ConfigError.
func listenError(what, env, addr string, err error) error {
	var addrErr *net.AddrError
	if errors.As(err, &addrErr) {
		return configErrorf("%s address %q (%s): %s", what, addr, env, addrErr.Err)
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("cannot listen for %s on %s (%s): address already in use (is another parleyd running? set %s to another address)", what, addr, env, env)
	}
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) {
		return fmt.Errorf("cannot listen for %s on %s (%s): %v", what, addr, env, sysErr.Err)
	}
	return fmt.Errorf("cannot listen for %s on %s (%s): %w", what, addr, env, err)
}

// natsTLS returns the TLS configuration of the NATS connection from
// PARLEY_NATS_TLS_CA, _CERT and _KEY; nil when none is set.
func natsTLS(c Config) (*tls.Config, error) {
	if c.NATSTLSCA == "" && c.NATSTLSCert == "" && c.NATSTLSKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.NATSTLSCA != "" {
		b, err := os.ReadFile(c.NATSTLSCA)
		if err != nil {
			return nil, fmt.Errorf("read NATS TLS CA (PARLEY_NATS_TLS_CA): %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("NATS TLS CA (PARLEY_NATS_TLS_CA) %s: no PEM certificate found", c.NATSTLSCA)
		}
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		return nil, errors.New("PARLEY_NATS_TLS_CERT and PARLEY_NATS_TLS_KEY must be set together")
	}
	if c.NATSTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.NATSTLSCert, c.NATSTLSKey)
		if err != nil {
			return nil, fmt.Errorf("load NATS TLS client certificate (PARLEY_NATS_TLS_CERT, PARLEY_NATS_TLS_KEY): %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Close stops the broker (bounded) and closes the store and any listener
// that Run opened but the broker did not take.
func (m *Main) Close() error {
	var errs []error
	if m.Broker != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.Broker.Close(ctx))
		cancel()
		m.Broker = nil
	}
	for _, ln := range m.listeners {
		ln.Close() // already closed when the broker took it
	}
	m.listeners = nil
	if m.store != nil {
		errs = append(errs, m.store.Close())
		m.store = nil
	}
	return errors.Join(errs...)
}

// moderationOptions checks the moderation hook's settings and sets them in
// opts.
func moderationOptions(c Config, opts *broker.Options) error {
	switch c.ModerationFail {
	case "open", "":
	case "closed":
		opts.ModerationFailClosed = true
	default:
		return configErrorf("moderation fail mode (PARLEY_MODERATION_FAIL) %q: want open or closed", c.ModerationFail)
	}
	if c.ModerationTimeout < 0 {
		return configErrorf("moderation timeout (PARLEY_MODERATION_TIMEOUT) %s is negative", c.ModerationTimeout)
	}
	if err := broker.ParseHookURL(c.ModerationURL); c.ModerationURL != "" && err != nil {
		return configErrorf("PARLEY_MODERATION_URL: %v", err)
	}
	opts.ModerationURL, opts.ModerationTimeout = c.ModerationURL, c.ModerationTimeout
	if c.WebhookSecret != "" {
		opts.WebhookSecret = []byte(c.WebhookSecret)
	}
	return nil
}

// offAtZero maps a setting whose 0 means "off" on the command line (no
// limit, no bound, never) to the broker.Options convention, where 0 means
// the default and a negative value means off.
func offAtZero[T ~int | ~int64 | ~float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
