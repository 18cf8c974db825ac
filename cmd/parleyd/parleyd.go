package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/history/sqlite"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/cluster"
	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
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
	NATSURL      string
	NATSCreds    string
	NATSNKey     string
	NATSTLSCA    string
	NATSTLSCert  string
	NATSTLSKey   string
	NodeID       string
	Anonymous    bool
	MaxPayload   int
	Rate         float64
	Burst        float64
	TokenTTL     time.Duration
	// DeviceTTL is how long a device may go unseen before it is forgotten;
	// 0: never.
	DeviceTTL time.Duration

	NewDeviceBacklog int
	CatchupLimit     int
	ReceiptGroupMax  int
	MaxDevices       int
}

// Main is the parleyd program: ParseFlags, then Run (serve) and Close, or
// Migrate, or Token. Tests run it in-process on :0 ports.
type Main struct {
	Config Config
	Args   []string
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger

	store  history.Store
	Broker *broker.Broker
}

// NewMain returns a Main writing to the process's stdout and stderr.
func NewMain() *Main { return &Main{Stdout: os.Stdout, Stderr: os.Stderr} }

// secretFile is the name of the generated HS256 secret in the data dir.
const secretFile = "jwt-secret"

// envOr returns the value of environment variable key when set (even empty),
// else def.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// envNum is envOr for numbers: an empty value means the default.
func envNum(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// ParseFlags reads flags for subcommand cmd ("serve", "migrate", "token") and
// the PARLEY_* environment; flags win over the environment.
func (m *Main) ParseFlags(cmd string, args []string) error {
	fs := flag.NewFlagSet("parleyd "+cmd, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	c := &m.Config
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, envOr(env, def), usage+" ($"+env+")")
	}
	str(&c.MQTTAddr, "mqtt-addr", "PARLEY_MQTT_ADDR", ":1883", "MQTT over TCP address; empty disables")
	str(&c.WSAddr, "ws-addr", "PARLEY_WS_ADDR", ":8083", "MQTT over WebSocket address (path /mqtt); empty disables")
	str(&c.TLSAddr, "tls-addr", "PARLEY_TLS_ADDR", ":8883", "MQTT over TLS address, used when a certificate and key are set; empty disables")
	str(&c.TLSCert, "tls-cert", "PARLEY_TLS_CERT", "", "TLS certificate file (PEM)")
	str(&c.TLSKey, "tls-key", "PARLEY_TLS_KEY", "", "TLS private key file (PEM)")
	str(&c.HTTPAddr, "http-addr", "PARLEY_HTTP_ADDR", ":8080", "HTTP address (health, metrics, REST API); empty disables")
	str(&c.DatabaseURL, "database-url", "PARLEY_DATABASE_URL", "", "PostgreSQL URL; empty uses the embedded SQLite store in the data dir")
	str(&c.DataDir, "data-dir", "PARLEY_DATA_DIR", "./data", "directory of the embedded store and the generated JWT secret")
	str(&c.JWTSecret, "jwt-secret", "PARLEY_JWT_SECRET", "", "HS256 secret for tokens; generated in the data dir when empty and no public key is set (embedded store only)")
	str(&c.JWTPublicKey, "jwt-public-key", "PARLEY_JWT_PUBLIC_KEY", "", "PEM public key file verifying RS256, ES256 or EdDSA tokens")
	str(&c.LogLevel, "log-level", "PARLEY_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	str(&c.LogFormat, "log-format", "PARLEY_LOG_FORMAT", "text", "log format: text or json")
	str(&c.TopicPrefix, "topic-prefix", "PARLEY_TOPIC_PREFIX", wire.DefaultPrefix, "first level of Parley's topics")
	str(&c.CORSOrigins, "cors-origins", "PARLEY_CORS_ORIGINS", "", "comma-separated browser origins allowed to call the REST API; * for any")
	str(&c.NATSURL, "nats-url", "PARLEY_NATS_URL", "", "NATS server(s) for cluster mode (needs PostgreSQL); empty: one node")
	str(&c.NATSCreds, "nats-creds", "PARLEY_NATS_CREDS", "", "NATS credentials file (.creds: user JWT and NKey seed) authenticating this node")
	str(&c.NATSNKey, "nats-nkey", "PARLEY_NATS_NKEY", "", "file with an NKey user seed authenticating this node to NATS")
	str(&c.NATSTLSCA, "nats-tls-ca", "PARLEY_NATS_TLS_CA", "", "CA certificates (PEM) verifying the NATS server; turns on TLS to NATS")
	str(&c.NATSTLSCert, "nats-tls-cert", "PARLEY_NATS_TLS_CERT", "", "client certificate (PEM) for TLS to NATS; set with -nats-tls-key")
	str(&c.NATSTLSKey, "nats-tls-key", "PARLEY_NATS_TLS_KEY", "", "client certificate's private key (PEM) for TLS to NATS")
	str(&c.NodeID, "node-id", "PARLEY_NODE_ID", "", "this node's id in the cluster; default the hostname")
	str(&c.ACLFile, "acl-file", "PARLEY_ACL_FILE", "", "ACL file for plain MQTT topics outside the prefix; none denies them")
	maxPayload, err := strconv.Atoi(envNum("PARLEY_MAX_PAYLOAD", strconv.Itoa(send.DefaultMaxPayload)))
	if err != nil {
		return fmt.Errorf("PARLEY_MAX_PAYLOAD: %w", err)
	}
	fs.IntVar(&c.MaxPayload, "max-payload", maxPayload, "maximum send payload in bytes ($PARLEY_MAX_PAYLOAD)")
	rate, err := strconv.ParseFloat(envNum("PARLEY_RATE", "20"), 64)
	if err != nil {
		return fmt.Errorf("PARLEY_RATE: %w", err)
	}
	fs.Float64Var(&c.Rate, "rate", rate, "messages per second per user; 0 disables the limit ($PARLEY_RATE)")
	burst, err := strconv.ParseFloat(envNum("PARLEY_BURST", "0"), 64)
	if err != nil {
		return fmt.Errorf("PARLEY_BURST: %w", err)
	}
	fs.Float64Var(&c.Burst, "burst", burst, "burst of the rate limit; 0 means twice the rate ($PARLEY_BURST)")
	anon, err := strconv.ParseBool(envNum("PARLEY_ANONYMOUS", "false"))
	if err != nil {
		return fmt.Errorf("PARLEY_ANONYMOUS: want true or false")
	}
	fs.BoolVar(&c.Anonymous, "anonymous", anon, "open mode: clients without credentials may use topics outside the prefix as a plain MQTT broker ($PARLEY_ANONYMOUS)")
	ints := []struct {
		p         *int
		name, env string
		def       int
		usage     string
	}{
		{&c.NewDeviceBacklog, "new-device-backlog", "PARLEY_NEW_DEVICE_BACKLOG", delivery.DefaultNewDeviceBacklog, "latest messages per conversation sent to a device on its first connect"},
		{&c.CatchupLimit, "catchup-limit", "PARLEY_CATCHUP_LIMIT", delivery.DefaultCatchupLimit, "most messages per conversation sent in one catch-up; beyond it a gap event"},
		{&c.ReceiptGroupMax, "receipt-group-max", "PARLEY_RECEIPT_GROUP_MAX", send.DefaultReceiptGroupMax, "largest group whose members get read receipts"},
		{&c.MaxDevices, "max-devices", "PARLEY_MAX_DEVICES", auth.DefaultMaxDevices, "most connected sessions (client ids) per user; beyond it a CONNECT is refused (0x97)"},
	}
	for _, f := range ints {
		v, err := strconv.Atoi(envNum(f.env, strconv.Itoa(f.def)))
		if err != nil || v < 0 {
			return fmt.Errorf("%s: want a non-negative integer, got %q", f.env, os.Getenv(f.env))
		}
		fs.IntVar(f.p, f.name, v, f.usage+" ($"+f.env+")")
	}
	ttl, err := parseTTL(envNum("PARLEY_DEVICE_TTL", "90d"))
	if err != nil {
		return fmt.Errorf("PARLEY_DEVICE_TTL: %w", err)
	}
	c.DeviceTTL = ttl
	fs.Var((*ttlValue)(&c.DeviceTTL), "device-ttl", "forget a device (client id) and its cursors after it goes unseen this long: a `duration` such as 2160h, or whole days such as 90d; 0: never ($PARLEY_DEVICE_TTL)")
	if cmd == "token" {
		fs.DurationVar(&c.TokenTTL, "ttl", 24*time.Hour, "token lifetime")
		fs.Usage = func() {
			fmt.Fprintln(m.Stderr, "usage: parleyd token [flags] USER")
			fs.PrintDefaults()
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.Args = fs.Args()
	if cmd == "token" {
		// Accept flags after USER too: parleyd token alice --ttl 1h.
		if len(m.Args) > 1 {
			if err := fs.Parse(m.Args[1:]); err != nil {
				return err
			}
			m.Args = append(m.Args[:1], fs.Args()...)
		}
		if len(m.Args) != 1 {
			fs.Usage()
			return errors.New("token: want exactly one USER")
		}
	} else if len(m.Args) > 0 {
		return fmt.Errorf("unexpected arguments %q", m.Args)
	}
	return m.setupLogger()
}

// parseTTL parses a non-negative time.ParseDuration string ("2160h") or a
// whole number of days ("90d").
func parseTTL(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > int64(math.MaxInt64/(24*time.Hour)) {
			return 0, fmt.Errorf("want a duration such as 90d or 2160h, got %q", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, fmt.Errorf("want a duration such as 90d or 2160h, got %q", s)
		}
	}
	return d, nil
}

// ttlValue is a flag.Value for parseTTL durations.
type ttlValue time.Duration

func (v *ttlValue) String() string {
	d := time.Duration(*v)
	if d != 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (v *ttlValue) Set(s string) error {
	d, err := parseTTL(s)
	*v = ttlValue(d)
	return err
}

func (m *Main) setupLogger() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.Config.LogLevel)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", m.Config.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch m.Config.LogFormat {
	case "text":
		m.Logger = slog.New(slog.NewTextHandler(m.Stderr, opts))
	case "json":
		m.Logger = slog.New(slog.NewJSONHandler(m.Stderr, opts))
	default:
		return fmt.Errorf("log format %q: want text or json", m.Config.LogFormat)
	}
	return nil
}

// openStore opens the configured store, migrating it.
func (m *Main) openStore(ctx context.Context) (history.Store, error) {
	if m.Config.DatabaseURL != "" {
		return postgres.Open(ctx, m.Config.DatabaseURL, m.Logger)
	}
	return sqlite.Open(ctx, m.Config.DataDir, m.Logger)
}

// Migrate applies the store's pending migrations.
func (m *Main) Migrate(ctx context.Context) error {
	if m.Config.DatabaseURL != "" {
		pool, err := pgxpool.New(ctx, m.Config.DatabaseURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		return postgres.Migrate(ctx, pool, m.Logger)
	}
	s, err := sqlite.Open(ctx, m.Config.DataDir, m.Logger)
	if err != nil {
		return err
	}
	return s.Close()
}

// secret returns the HS256 secret: configured, or (embedded store only)
// generated once and kept in the data dir with mode 0600.
func (m *Main) secret() ([]byte, error) {
	if m.Config.JWTSecret != "" {
		return []byte(m.Config.JWTSecret), nil
	}
	if m.Config.JWTPublicKey != "" {
		return nil, nil
	}
	if m.Config.DatabaseURL != "" {
		return nil, errors.New("PARLEY_JWT_SECRET or PARLEY_JWT_PUBLIC_KEY is required with PostgreSQL (every node must share it)")
	}
	path := filepath.Join(m.Config.DataDir, secretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return []byte(s), nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read JWT secret: %w", err)
	}
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return m.secret() // another process generated it first
	}
	if err != nil {
		return nil, fmt.Errorf("write JWT secret: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(s + "\n"); err != nil {
		return nil, fmt.Errorf("write JWT secret: %w", err)
	}
	return []byte(s), f.Sync()
}

// Token prints a token for the user in Args[0].
func (m *Main) Token() error {
	secret, err := m.secret()
	if err != nil {
		return err
	}
	if len(secret) == 0 {
		return errors.New("token: needs an HS256 secret (PARLEY_JWT_SECRET or the embedded default)")
	}
	tok, err := (&auth.Tokens{Secret: secret}).Sign(m.Args[0], m.Config.TokenTTL)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(m.Stdout, tok)
	return err
}

// Run opens the store and starts the broker; it returns once the server
// listens. Close stops it.
func (m *Main) Run(ctx context.Context) error {
	c := m.Config
	secret, err := m.secret()
	if err != nil {
		return err
	}
	var pub crypto.PublicKey
	if c.JWTPublicKey != "" {
		b, err := os.ReadFile(c.JWTPublicKey)
		if err != nil {
			return fmt.Errorf("read JWT public key: %w", err)
		}
		if pub, err = auth.ParsePublicKey(b); err != nil {
			return err
		}
	}
	var acl *auth.ACL
	if c.ACLFile != "" {
		f, err := os.Open(c.ACLFile)
		if err != nil {
			return fmt.Errorf("open ACL file: %w", err)
		}
		acl, err = auth.ParseACL(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", c.ACLFile, err)
		}
	}
	opts := broker.Options{
		MQTTAddr: c.MQTTAddr, WSAddr: c.WSAddr, HTTPAddr: c.HTTPAddr,
		JWTSecret: secret, JWTPublicKey: pub, TopicPrefix: c.TopicPrefix, ACL: acl,
		MaxPayload: c.MaxPayload, Rate: c.Rate, Burst: c.Burst, Logger: m.Logger,
		NewDeviceBacklog: c.NewDeviceBacklog, CatchupLimit: c.CatchupLimit, ReceiptGroupMax: c.ReceiptGroupMax,
		MaxDevices: c.MaxDevices, Anonymous: c.Anonymous, NATSURL: c.NATSURL, NodeID: c.NodeID, DeviceTTL: c.DeviceTTL,
	}
	if c.DeviceTTL == 0 {
		opts.DeviceTTL = -1 // 0 means never on the command line
	}
	if c.NATSURL != "" && c.DatabaseURL == "" {
		return errors.New("cluster mode (PARLEY_NATS_URL) needs the PostgreSQL store (PARLEY_DATABASE_URL)")
	}
	if c.NATSURL == "" && c.NATSCreds+c.NATSNKey+c.NATSTLSCA+c.NATSTLSCert+c.NATSTLSKey != "" {
		return errors.New("PARLEY_NATS_CREDS, PARLEY_NATS_NKEY and PARLEY_NATS_TLS_* need cluster mode (PARLEY_NATS_URL)")
	}
	if opts.NATSTLSConfig, err = natsTLS(c); err != nil {
		return err
	}
	// Check the NATS credentials now, before the store opens.
	opts.NATSCredsFile, opts.NATSNKeyFile = c.NATSCreds, c.NATSNKey
	if _, err := (cluster.Auth{CredsFile: c.NATSCreds, NKeyFile: c.NATSNKey}).Options(); err != nil {
		return fmt.Errorf("NATS credentials (PARLEY_NATS_CREDS, PARLEY_NATS_NKEY): %w", err)
	}
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			opts.CORSOrigins = append(opts.CORSOrigins, o)
		}
	}
	if c.Rate == 0 {
		opts.Rate = -1 // 0 disables the limit on the command line
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		opts.TLSAddr = c.TLSAddr
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if m.store, err = m.openStore(ctx); err != nil {
		return err
	}
	opts.Store = m.store
	if m.Broker, err = broker.New(opts); err != nil {
		return err
	}
	if err := m.Broker.Start(ctx); err != nil {
		return err
	}
	m.banner()
	return nil
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

func (m *Main) banner() {
	store := "embedded SQLite in " + m.Config.DataDir
	if m.Config.DatabaseURL != "" {
		store = "PostgreSQL"
	}
	w := m.Stderr
	fmt.Fprintf(w, "\nParley is running (store: %s)\n", store)
	for _, l := range []struct{ name, scheme, path string }{{"mqtt", "mqtt://", ""}, {"tls", "mqtts://", ""}, {"ws", "ws://", "/mqtt"}, {"http", "http://", ""}} {
		if a := m.Broker.Addr(l.name); a != nil {
			fmt.Fprintf(w, "  %-5s %s%s%s\n", l.name, l.scheme, hostPort(a), l.path)
		}
	}
	if m.Config.JWTSecret == "" && m.Config.JWTPublicKey == "" {
		fmt.Fprintf(w, "Get a token for a first user:  %s token --data-dir %s alice\n\n", self(), m.Config.DataDir)
	}
}

// self is how to invoke this binary again: ./bin/parleyd after make run.
func self() string {
	p := os.Args[0]
	if !strings.ContainsRune(p, '/') || strings.Contains(p, "go-build") {
		return "parleyd"
	}
	if rel, err := filepath.Rel(".", p); err == nil && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel) {
		return "./" + rel
	}
	return p
}

func hostPort(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && (ta.IP == nil || ta.IP.IsUnspecified()) {
		return net.JoinHostPort("localhost", strconv.Itoa(ta.Port))
	}
	return a.String()
}

// Close stops the broker (bounded) and closes the store.
func (m *Main) Close() error {
	var errs []error
	if m.Broker != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.Broker.Close(ctx))
		cancel()
		m.Broker = nil
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
		m.store = nil
	}
	return errors.Join(errs...)
}
