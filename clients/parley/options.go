package parley

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of Options.
const (
	DefaultBroker               = "tcp://localhost:1883"
	DefaultHTTP                 = "http://localhost:8080"
	DefaultDevice               = "sdk"
	DefaultTopicPrefix          = "im"
	DefaultEventBuffer          = 256
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultMaxReconnectInterval = 10 * time.Second
	DefaultResendInterval       = 10 * time.Second
	DefaultMaxPayload           = 64 << 10
)

// Options configure a Client. The zero value of every field but the token
// takes the documented default.
type Options struct {
	// Broker is the MQTT server URL: tcp://host:1883, mqtt://, ssl:// or
	// tls:// (with TLSConfig), ws://host:8083/mqtt or wss://. Default
	// DefaultBroker.
	Broker string
	// HTTP is the base URL of the REST API, e.g. http://host:8080. Default
	// DefaultHTTP.
	HTTP string

	// Token is the JWT of the user, whose sub claim is the user id. Either
	// Token or TokenSource is required.
	Token string
	// TokenSource returns a fresh token. When set, it is called on every
	// connection attempt (so reconnects use a token that has not expired)
	// and when the REST API answers 401; Token is then ignored. Its user
	// must not change.
	TokenSource func(ctx context.Context) (string, error)

	// Device names this connection among the user's devices: the MQTT
	// client id is USER/DEVICE. Default DefaultDevice ("sdk"). The server
	// keeps a persistent session and delivery cursors per device; give each
	// running instance its own Device, since a second connection with the
	// same client id takes over the session of the first.
	Device string
	// TopicPrefix is the first level of Parley's topics; default "im".
	TopicPrefix string

	// Handler, when set, receives every event in order from a single
	// goroutine; Events then returns nil. The handler may call the Client
	// (Send, History, ...) but not Close; while it runs, later events wait.
	Handler func(Event)
	// EventBuffer is the capacity of the Events channel; default 256. When
	// the channel is full the client waits, holding later events.
	EventBuffer int
	// ReportGaps surfaces EventGap events. Gaps are filled whether or not
	// they are reported.
	ReportGaps bool

	// Logger receives connection and retry diagnostics; default
	// slog.Default().
	Logger *slog.Logger
	// HTTPClient makes the REST calls; default a client of its own with a
	// 30s timeout, whose idle connections Close releases.
	HTTPClient *http.Client
	// TLSConfig is used for ssl://, tls:// and wss:// brokers.
	TLSConfig *tls.Config

	// KeepAlive is the MQTT keepalive; default 30s.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt; default 10s.
	ConnectTimeout time.Duration
	// FailFast makes Dial return the error of the first connection attempt
	// that fails, for network reasons too, instead of retrying until its
	// context ends: for a command-line tool that should say at once that
	// the server is down. Reconnections after Dial are not affected.
	FailFast bool
	// MaxReconnectInterval caps the exponential backoff between reconnection
	// attempts (which starts at 1s); default 10s.
	MaxReconnectInterval time.Duration
	// ResendInterval is how long Send waits for the server's echo before it
	// publishes the message again (same cid, so it is stored once); default
	// 10s.
	ResendInterval time.Duration
	// MaxPayload is the largest send payload Send publishes; larger ones
	// fail with a *TooLargeError (ErrTooLarge) without being sent; set it
	// to the server's limit when that is not the default. Default 64 KiB, the server's
	// default; negative disables the check.
	MaxPayload int
}

func (o Options) withDefaults() Options {
	if o.Broker == "" {
		o.Broker = DefaultBroker
	}
	if o.HTTP == "" {
		o.HTTP = DefaultHTTP
	}
	if o.Device == "" {
		o.Device = DefaultDevice
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = DefaultTopicPrefix
	}
	orDefault(&o.EventBuffer, DefaultEventBuffer)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	orDefault(&o.KeepAlive, DefaultKeepAlive)
	orDefault(&o.ConnectTimeout, DefaultConnectTimeout)
	orDefault(&o.MaxReconnectInterval, DefaultMaxReconnectInterval)
	orDefault(&o.ResendInterval, DefaultResendInterval)
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	return o
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
