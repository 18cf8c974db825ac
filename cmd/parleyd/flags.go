package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/delivery"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

// envOr returns the value of environment variable key when set (even empty),
// else def.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// shownFlags are the flags each subcommand uses and lists in its -h; the
// server's other flags are accepted by every subcommand (scripts pass the
// same ones to all) and ignored. serve uses them all.
var shownFlags = map[string][]string{
	"migrate": {"data-dir", "database-url", "log-format", "log-level"},
	"token":   {"data-dir", "jwt-secret", "ttl"},
	"user":    {"data-dir", "database-url", "log-format", "log-level"},
}

// synopsis is the usage line of each subcommand.
var synopsis = map[string]string{
	"serve":   "parleyd [serve] [flags]",
	"migrate": "parleyd migrate [flags]",
	"token":   "parleyd token [flags] USER",
	"user":    "parleyd user delete [flags] USER",
}

// ParseFlags reads flags for subcommand cmd ("serve", "migrate", "token") and
// the PARLEY_* environment; flags win over the environment. -h prints the
// usage to Stdout and returns flag.ErrHelp; any other error is a mistake in
// the flags or the environment (exit status 2).
func (m *Main) ParseFlags(cmd string, args []string) error {
	fs := flag.NewFlagSet("parleyd "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := m.defineFlags(fs, cmd); err != nil {
		return err
	}
	parse := func(args []string) error {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			m.usage(fs, cmd)
			return err
		}
		if err != nil {
			help := "parleyd " + cmd + " -h"
			if cmd == "serve" {
				help = "parleyd -h"
			}
			return fmt.Errorf("%w (run '%s' for usage)", err, help)
		}
		return nil
	}
	if err := parse(args); err != nil {
		return err
	}
	m.Args = fs.Args()
	if cmd == "user" {
		// parleyd user delete [flags] USER [flags]
		if len(m.Args) > 0 && m.Args[0] == "delete" {
			if err := parse(m.Args[1:]); err != nil {
				return err
			}
			rest := fs.Args()
			if len(rest) > 1 {
				if err := parse(rest[1:]); err != nil {
					return err
				}
				rest = append(rest[:1], fs.Args()...)
			}
			m.Args = append([]string{"delete"}, rest...)
		}
		if len(m.Args) != 2 || m.Args[0] != "delete" {
			return fmt.Errorf("user: want delete USER (usage: %s)", synopsis[cmd])
		}
	} else if cmd == "token" {
		// Accept flags after USER too: parleyd token alice --ttl 1h.
		if len(m.Args) > 1 {
			if err := parse(m.Args[1:]); err != nil {
				return err
			}
			m.Args = append(m.Args[:1], fs.Args()...)
		}
		if len(m.Args) != 1 {
			return fmt.Errorf("token: want exactly one USER, got %d arguments (usage: %s)", len(m.Args), synopsis[cmd])
		}
		if m.Config.TokenTTL <= 0 {
			return fmt.Errorf("token: --ttl must be positive, got %s", m.Config.TokenTTL)
		}
	} else if len(m.Args) > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, m.Args)
	}
	if err := m.setupLogger(); err != nil {
		if cmd != "token" { // token does not log
			return err
		}
		m.Logger = slog.New(slog.NewTextHandler(m.Stderr, nil))
	}
	return nil
}

// usage prints the usage of cmd with the flags it uses.
func (m *Main) usage(fs *flag.FlagSet, cmd string) {
	w := m.Stdout
	show := fs
	if names, ok := shownFlags[cmd]; ok {
		show = flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		for _, name := range names {
			f := fs.Lookup(name)
			show.Var(f.Value, f.Name, f.Usage)
			show.Lookup(name).DefValue = f.DefValue
		}
	}
	switch cmd {
	case "serve":
		usage(w)
		fmt.Fprintln(w, "\nFlags of serve:")
	case "migrate":
		fmt.Fprintf(w, "Usage: %s\n\nApplies the pending schema migrations to the store that serve would use\nand says which, then exits.\n\nFlags:\n", synopsis[cmd])
	case "user":
		fmt.Fprintf(w, "Usage: %s\n\nDeletes USER's account in the store, as DELETE /v1/users/me does: its\nmessages become deleted events, its memberships, cursors, devices, push\ntokens and blocks go, and its tokens issued until now stop working. Devices\nconnected to a running server stay connected until they reconnect.\n\nFlags:\n", synopsis[cmd])
	case "token":
		fmt.Fprintf(w, "Usage: %s\n\nPrints a token for USER signed with the HS256 secret that the server uses:\nPARLEY_JWT_SECRET, or the secret the server generated in its data dir\n(embedded store). It never creates a secret. Flags may follow USER.\n\nFlags:\n", synopsis[cmd])
	}
	show.SetOutput(w)
	show.PrintDefaults()
}

// defineFlags defines the flags of cmd on fs, with defaults from the
// environment. Environment values that do not parse are errors for serve
// only: the other subcommands do not use them.
func (m *Main) defineFlags(fs *flag.FlagSet, cmd string) error {
	c := &m.Config
	jwtSecretUsage := "HS256 secret for tokens; generated in the data dir when empty and no public key is set (embedded store only)"
	if cmd == "token" {
		jwtSecretUsage = "HS256 secret to sign with; empty: the secret the server generated in the data dir"
	}
	strs := []struct {
		p                     *string
		name, env, def, usage string
	}{
		{&c.MQTTAddr, "mqtt-addr", "PARLEY_MQTT_ADDR", ":1883", "MQTT over TCP address; empty disables"},
		{&c.WSAddr, "ws-addr", "PARLEY_WS_ADDR", ":8083", "MQTT over WebSocket address (path /mqtt); empty disables"},
		{&c.TLSAddr, "tls-addr", "PARLEY_TLS_ADDR", ":8883", "MQTT over TLS address, used when a certificate and key are set; empty disables"},
		{&c.TLSCert, "tls-cert", "PARLEY_TLS_CERT", "", "TLS certificate file (PEM)"},
		{&c.TLSKey, "tls-key", "PARLEY_TLS_KEY", "", "TLS private key file (PEM)"},
		{&c.HTTPAddr, "http-addr", "PARLEY_HTTP_ADDR", ":8080", "HTTP address (health, metrics, REST API); empty disables"},
		{&c.DatabaseURL, "database-url", "PARLEY_DATABASE_URL", "", "PostgreSQL URL; empty uses the embedded SQLite store in the data dir"},
		{&c.DataDir, "data-dir", "PARLEY_DATA_DIR", "./data", "directory of the embedded store and the generated JWT secret"},
		{&c.JWTSecret, "jwt-secret", "PARLEY_JWT_SECRET", "", jwtSecretUsage},
		{&c.JWTPublicKey, "jwt-public-key", "PARLEY_JWT_PUBLIC_KEY", "", "PEM public key file verifying RS256, ES256 or EdDSA tokens"},
		{&c.LogLevel, "log-level", "PARLEY_LOG_LEVEL", "info", "log level: debug, info, warn or error"},
		{&c.LogFormat, "log-format", "PARLEY_LOG_FORMAT", "text", "log format: text or json"},
		{&c.TopicPrefix, "topic-prefix", "PARLEY_TOPIC_PREFIX", wire.DefaultPrefix, "first level of Parley's topics"},
		{&c.CORSOrigins, "cors-origins", "PARLEY_CORS_ORIGINS", "", "comma-separated browser origins allowed to call the REST API; * for any"},
		{&c.WebhookURL, "webhook-url", "PARLEY_WEBHOOK_URL", "", "comma-separated URLs that receive every stored change as a signed POST (docs/events.md)"},
		{&c.WebhookSecret, "webhook-secret", "PARLEY_WEBHOOK_SECRET", "", "secret that signs webhook and moderation requests (Parley-Signature)"},
		{&c.NATSURL, "nats-url", "PARLEY_NATS_URL", "", "NATS server(s) for cluster mode (needs PostgreSQL); empty: one node"},
		{&c.NATSCreds, "nats-creds", "PARLEY_NATS_CREDS", "", "NATS credentials file (.creds: user JWT and NKey seed) authenticating this node"},
		{&c.NATSNKey, "nats-nkey", "PARLEY_NATS_NKEY", "", "file with an NKey user seed authenticating this node to NATS"},
		{&c.NATSTLSCA, "nats-tls-ca", "PARLEY_NATS_TLS_CA", "", "CA certificates (PEM) verifying the NATS server; turns on TLS to NATS"},
		{&c.NATSTLSCert, "nats-tls-cert", "PARLEY_NATS_TLS_CERT", "", "client certificate (PEM) for TLS to NATS; set with -nats-tls-key"},
		{&c.NATSTLSKey, "nats-tls-key", "PARLEY_NATS_TLS_KEY", "", "client certificate's private key (PEM) for TLS to NATS"},
		{&c.NodeID, "node-id", "PARLEY_NODE_ID", "", "this node's id in the cluster; default the hostname"},
		{&c.ACLFile, "acl-file", "PARLEY_ACL_FILE", "", "ACL file for plain MQTT topics outside the prefix; none denies them"},
		{&c.KafkaBrokers, "kafka-brokers", "PARLEY_KAFKA_BROKERS", "", "comma-separated Kafka brokers (host:port): export every event to PARLEY_KAFKA_TOPIC"},
		{&c.KafkaTopic, "kafka-topic", "PARLEY_KAFKA_TOPIC", "parley.events", "Kafka topic of the event export"},
		{&c.FCMCredentials, "fcm-credentials", "PARLEY_FCM_CREDENTIALS", "", "Firebase service-account JSON file: push notifications over FCM"},
		{&c.FCMEndpoint, "fcm-endpoint", "PARLEY_FCM_ENDPOINT", "", "FCM endpoint; empty: https://fcm.googleapis.com"},
		{&c.APNsKeyFile, "apns-key-file", "PARLEY_APNS_KEY_FILE", "", "APNs token key (.p8): push notifications over APNs"},
		{&c.APNsKeyID, "apns-key-id", "PARLEY_APNS_KEY_ID", "", "the APNs key's id"},
		{&c.APNsTeamID, "apns-team-id", "PARLEY_APNS_TEAM_ID", "", "the Apple developer team id"},
		{&c.APNsTopic, "apns-topic", "PARLEY_APNS_TOPIC", "", "the app's bundle id"},
		{&c.APNsEndpoint, "apns-endpoint", "PARLEY_APNS_ENDPOINT", "", "APNs endpoint; empty: https://api.push.apple.com (https://api.sandbox.push.apple.com for development builds)"},
		{&c.ModerationURL, "moderation-url", "PARLEY_MODERATION_URL", "", "moderation hook: sends and edits are POSTed here before they are stored; empty disables"},
		{&c.BlobDir, "blob-dir", "PARLEY_BLOB_DIR", "", "directory of uploaded files; empty: DATA_DIR/blobs (unless PARLEY_S3_ENDPOINT is set)"},
		{&c.S3Endpoint, "s3-endpoint", "PARLEY_S3_ENDPOINT", "", "S3-compatible server URL for uploaded files (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); empty: PARLEY_BLOB_DIR"},
		{&c.S3Bucket, "s3-bucket", "PARLEY_S3_BUCKET", "", "S3 bucket of uploaded files (it must exist)"},
		{&c.S3Region, "s3-region", "PARLEY_S3_REGION", "", "S3 region; empty: us-east-1"},
		{&c.UploadDir, "upload-dir", "PARLEY_UPLOAD_DIR", "", "directory of resumable uploads in progress; empty: BLOB_DIR/partial, or DATA_DIR/partial with S3"},
		{&c.ModerationFail, "moderation-fail", "PARLEY_MODERATION_FAIL", "open", "when a moderation call fails: open (store as sent) or closed (refuse, code unavailable)"},
		{&c.SearchLanguage, "search-language", "PARLEY_SEARCH_LANGUAGE", "simple", "PostgreSQL text search configuration of message search (simple, english, ...); SQLite always uses its unicode61 tokenizer"},
		{&c.PublicURL, "public-url", "PARLEY_PUBLIC_URL", "", "the server's external base URL (https://chat.example.com): signed file URLs in the REST API and push notifications become absolute; empty: relative"},
		{&c.WebMQTTURL, "web-mqtt-url", "PARLEY_WEB_MQTT_URL", "", "ws:// or wss:// URL the web client connects to for MQTT (behind a reverse proxy); empty: the page's host, the WebSocket port, /mqtt"},
		{&c.DMPolicy, "dm-policy", "PARLEY_DM_POLICY", "open", "direct messages from strangers: open (anyone) or contacts (a first message needs a shared group, else not_allowed)"},
	}
	for _, f := range strs {
		fs.StringVar(f.p, f.name, envOr(f.env, f.def), f.usage+" ($"+f.env+")")
	}
	// envErr is the first environment value that does not parse.
	var envErr error
	fs.IntVar(&c.MaxPayload, "max-payload", envValue(&envErr, "PARLEY_MAX_PAYLOAD", send.DefaultMaxPayload, strconv.Atoi), "maximum send payload in bytes ($PARLEY_MAX_PAYLOAD)")
	fs.DurationVar(&c.EditWindow, "edit-window", envValue(&envErr, "PARLEY_EDIT_WINDOW", 48*time.Hour, time.ParseDuration), "how long authors may edit their messages; 0 means no limit ($PARLEY_EDIT_WINDOW)")
	fs.DurationVar(&c.Retention, "retention", envValue(&envErr, "PARLEY_RETENTION", 0, time.ParseDuration), "delete messages older than this, e.g. 720h; a conversation's own shorter retention wins; 0: keep forever ($PARLEY_RETENTION)")
	fs.DurationVar(&c.ModerationTimeout, "moderation-timeout", envValue(&envErr, "PARLEY_MODERATION_TIMEOUT", 2*time.Second, time.ParseDuration), "bound of one moderation call; 0 means the default ($PARLEY_MODERATION_TIMEOUT)")
	fs.Float64Var(&c.Rate, "rate", envValue(&envErr, "PARLEY_RATE", 20, parseFloat), "messages per second per user; 0 disables the limit ($PARLEY_RATE)")
	fs.Float64Var(&c.Burst, "burst", envValue(&envErr, "PARLEY_BURST", 0, parseFloat), "burst of the rate limit; 0 means twice the rate ($PARLEY_BURST)")
	fs.DurationVar(&c.PushDelay, "push-delay", envValue(&envErr, "PARLEY_PUSH_DELAY", 5*time.Second, time.ParseDuration), "how long a message may go unacknowledged by all of a user's devices before they get a push notification ($PARLEY_PUSH_DELAY)")
	fs.BoolVar(&c.PushPreview, "push-preview", envValue(&envErr, "PARLEY_PUSH_PREVIEW", true, parseBool), "show the message's text in push notifications ($PARLEY_PUSH_PREVIEW)")
	fs.BoolVar(&c.Web, "web", envValue(&envErr, "PARLEY_WEB", true, parseBool), "serve the web chat client at / on the HTTP address (docs/web.md) ($PARLEY_WEB)")
	fs.BoolVar(&c.DevLogin, "dev-login", envValue(&envErr, "PARLEY_DEV_LOGIN", false, parseBool), "development sign-in: POST /dev/login issues a token for any user name; embedded store only, never in production ($PARLEY_DEV_LOGIN)")
	fs.BoolVar(&c.Anonymous, "anonymous", envValue(&envErr, "PARLEY_ANONYMOUS", false, parseBool), "open mode: clients without credentials may use topics outside the prefix as a plain MQTT broker ($PARLEY_ANONYMOUS)")
	ints := []struct {
		p         *int
		name, env string
		def       int
		usage     string
	}{
		{&c.NewDeviceBacklog, "new-device-backlog", "PARLEY_NEW_DEVICE_BACKLOG", delivery.DefaultNewDeviceBacklog, "latest messages per conversation sent to a device on its first connect"},
		{&c.CatchupLimit, "catchup-limit", "PARLEY_CATCHUP_LIMIT", delivery.DefaultCatchupLimit, "most messages per conversation sent in one catch-up; beyond it a gap event"},
		{&c.ReceiptGroupMax, "receipt-group-max", "PARLEY_RECEIPT_GROUP_MAX", send.DefaultReceiptGroupMax, "largest group whose members get read receipts"},
		{&c.MaxUpload, "max-upload", "PARLEY_MAX_UPLOAD", broker.DefaultMaxUpload, "maximum size of an uploaded file in bytes; larger uploads get 413"},
		{&c.UploadQuota, "upload-quota", "PARLEY_UPLOAD_QUOTA", broker.DefaultUploadQuota, "most bytes of one user's stored files; an upload beyond it gets 413 quota_exceeded; 0 disables the quota"},
		{&c.UploadRate, "upload-rate", "PARLEY_UPLOAD_RATE", broker.DefaultUploadRate, "uploads per minute per user, with bursts of as many; beyond it 429 rate_limited; 0 disables the limit"},
		{&c.MaxDevices, "max-devices", "PARLEY_MAX_DEVICES", auth.DefaultMaxDevices, "most connected sessions (client ids) per user; beyond it a CONNECT is refused (0x97)"},
		{&c.MQTTWriteQueue, "mqtt-write-queue", "PARLEY_MQTT_WRITE_QUEUE", broker.DefaultMQTTWriteQueue, "plain MQTT packets queued for one client's writer (at most 65536), beyond which a delivery to it is dropped; 8 bytes per entry are allocated with every connection"},
		{&c.MaxConnections, "max-connections", "PARLEY_MAX_CONNECTIONS", 0, "most MQTT sessions connected to this node; beyond it a CONNECT is refused (0x89 server busy; 3.1.1: 0x03); 0: the open files limit less 100"},
	}
	for _, f := range ints {
		fs.IntVar(f.p, f.name, envValue(&envErr, f.env, f.def, parseNonNegative), f.usage+" ($"+f.env+")")
	}
	c.DeviceTTL = envValue(&envErr, "PARLEY_DEVICE_TTL", 90*24*time.Hour, parseTTL)
	fs.Var((*ttlValue)(&c.DeviceTTL), "device-ttl", "forget a device (client id) and its cursors after it goes unseen this long: a `duration` such as 2160h, or whole days such as 90d; 0: never ($PARLEY_DEVICE_TTL)")
	c.MQTTMaxExpiry = envValue(&envErr, "PARLEY_MQTT_MAX_EXPIRY", 24*time.Hour, parseTTL)
	fs.Var((*ttlValue)(&c.MQTTMaxExpiry), "mqtt-max-expiry", "longest a plain MQTT message waits, queued for a session or retained: a `duration` such as 24h, or whole days such as 7d; 0: no limit ($PARLEY_MQTT_MAX_EXPIRY)")
	if cmd == "token" {
		fs.DurationVar(&c.TokenTTL, "ttl", 24*time.Hour, "token lifetime")
	}
	if cmd != "serve" {
		return nil // the other subcommands do not use these values
	}
	return envErr
}

// envValue returns environment variable env read by parse, or def when it is
// unset or empty. When the value does not parse it returns def and records
// the error, named after env, in *errp unless *errp already holds one.
func envValue[T any](errp *error, env string, def T, parse func(string) (T, error)) T {
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	v, err := parse(s)
	if err != nil {
		if *errp == nil {
			*errp = fmt.Errorf("%s: %w", env, err)
		}
		return def
	}
	return v
}

func parseFloat(s string) (float64, error) { return strconv.ParseFloat(s, 64) }

func parseBool(s string) (bool, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, errors.New("want true or false")
	}
	return b, nil
}

func parseNonNegative(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("want a non-negative integer, got %q", s)
	}
	return v, nil
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
