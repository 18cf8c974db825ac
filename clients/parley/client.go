package parley

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Client is a connection of one device of a user to Parley: MQTT for
// sending and receiving, REST (the embedded *API) for history,
// conversations, sync and groups. It reconnects by itself and is safe for
// concurrent use. Make one with Dial; Close releases it.
type Client struct {
	*API

	opts     Options
	log      *slog.Logger
	clientID string
	inbox    string
	mq       mqtt.Client

	ctx    context.Context // done on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // dispatcher and fills

	events chan Event // nil with Options.Handler

	ready     chan struct{} // closed once the inbox subscription first succeeded (or failed)
	readyOnce sync.Once
	readyErr  error

	qmu   sync.Mutex
	queue []item
	qwake chan struct{}

	mu       sync.Mutex
	closed   bool
	pending  map[string][]*sendWaiter // by conv + "\x00" + cid
	presence map[string]bool          // users whose presence is watched

	convs map[string]*convState // dispatcher goroutine only
}

// Dial connects to Parley as the token's user with client id USER/DEVICE, a
// persistent session (clean session false) and automatic reconnection, and
// subscribes to the user's inbox (again after every reconnection). It
// returns once the inbox subscription is in place. Until then it retries
// connections that fail for network reasons (unless Options.FailFast); a
// refusal by the server (bad token, client id not allowed) is returned at
// once, as is the end of ctx.
// ctx bounds Dial only: the client lives until Close.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	api, err := NewAPI(ctx, opts)
	if err != nil {
		return nil, err
	}
	if !validDevice(opts.Device) {
		return nil, fmt.Errorf("parley: invalid device %q (1 to 64 of A-Z a-z 0-9 . _ -)", opts.Device)
	}
	c := &Client{
		API:      api,
		opts:     opts,
		log:      opts.Logger.With("client", api.user+"/"+opts.Device),
		clientID: api.user + "/" + opts.Device,
		inbox:    opts.TopicPrefix + "/inbox/" + api.user,
		ready:    make(chan struct{}),
		qwake:    make(chan struct{}, 1),
		pending:  map[string][]*sendWaiter{},
		presence: map[string]bool{},
		convs:    map[string]*convState{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if opts.Handler == nil {
		c.events = make(chan Event, opts.EventBuffer)
	}
	mo := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(c.clientID).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetKeepAlive(opts.KeepAlive).
		SetPingTimeout(opts.ConnectTimeout).
		SetConnectTimeout(opts.ConnectTimeout).
		SetWriteTimeout(opts.ConnectTimeout).
		SetMaxReconnectInterval(opts.MaxReconnectInterval).
		SetCredentialsProvider(c.credentials).
		SetDefaultPublishHandler(c.onPublish).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn("parley: connection lost, reconnecting", "error", err)
		})
	if opts.TLSConfig != nil {
		mo.SetTLSConfig(opts.TLSConfig)
	}
	c.mq = mqtt.NewClient(mo)
	c.wg.Add(1)
	go c.dispatch()

	if err := c.connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	select {
	case <-c.ready:
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("parley: subscribe to inbox: %w", ctx.Err())
	}
	if c.readyErr != nil {
		c.Close()
		return nil, c.readyErr
	}
	return c, nil
}

// connect makes the first connection, retrying network failures with
// backoff until ctx ends.
func (c *Client) connect(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for {
		tok := c.mq.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return fmt.Errorf("parley: connect to %s: %w", c.opts.Broker, ctx.Err())
		}
		err := tok.Error()
		if err == nil {
			return nil
		}
		if ct, ok := tok.(*mqtt.ConnectToken); ok && refused(ct.ReturnCode()) {
			return fmt.Errorf("parley: connect to %s as %s: refused: %w", c.opts.Broker, c.clientID, err)
		}
		if c.opts.FailFast {
			return fmt.Errorf("parley: connect to %s: %w", c.opts.Broker, err)
		}
		c.log.Warn("parley: connect failed, retrying", "broker", c.opts.Broker, "error", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("parley: connect to %s: %w (last error: %v)", c.opts.Broker, ctx.Err(), err)
		}
		backoff = min(2*backoff, c.opts.MaxReconnectInterval)
	}
}

// refused reports whether a CONNACK code is a refusal that retrying with the
// same credentials cannot fix: identifier rejected, bad user name or
// password, not authorized, unacceptable protocol version.
func refused(rc byte) bool { return rc >= 0x01 && rc <= 0x05 && rc != 0x03 }

// credentials gives paho the user name and a token on every connection
// attempt.
func (c *Client) credentials() (string, string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	defer cancel()
	tok, err := c.tokens.refresh(ctx)
	if err != nil {
		c.log.Error("parley: no token for connecting", "error", err)
		return c.user, ""
	}
	if sub, err := TokenSubject(tok); err != nil || sub != c.user {
		c.log.Error("parley: token source returned a token of another user", "want", c.user, "got", sub)
	}
	return c.user, tok
}

// onConnect runs after every (re)connection: it subscribes to the inbox
// and the watched presence topics and publishes pending sends again.
func (c *Client) onConnect(mqtt.Client) {
	c.log.Debug("parley: connected")
	var err error
	for {
		err = c.subscribe(c.ctx, c.inbox)
		var se *ServerError
		if err == nil || errors.As(err, &se) {
			break
		}
		if c.ctx.Err() != nil || !c.mq.IsConnectionOpen() {
			// The next connection subscribes again.
			c.log.Warn("parley: subscribe to inbox", "error", err)
			return
		}
		c.log.Warn("parley: subscribe to inbox, retrying", "error", err)
		select {
		case <-time.After(time.Second):
		case <-c.ctx.Done():
			return
		}
	}
	if err != nil {
		c.log.Error("parley: subscribe to inbox refused", "error", err)
	}
	c.readyOnce.Do(func() {
		c.readyErr = err
		close(c.ready)
	})
	c.mu.Lock()
	users := make([]string, 0, len(c.presence))
	for u := range c.presence {
		users = append(users, u)
	}
	c.mu.Unlock()
	for _, u := range users {
		if err := c.subscribe(c.ctx, c.presenceTopic(u)); err != nil {
			c.log.Warn("parley: subscribe to presence", "user", u, "error", err)
		}
	}
	c.resendAll()
}

// subscribe subscribes to topic at QoS 1 and waits for the SUBACK.
func (c *Client) subscribe(ctx context.Context, topic string) error {
	tok := c.mq.Subscribe(topic, 1, nil)
	t := time.NewTimer(c.opts.ConnectTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-t.C:
		return fmt.Errorf("parley: subscribe to %s: no SUBACK within %v", topic, c.opts.ConnectTimeout)
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("parley: subscribe to %s: %w", topic, err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code >= 0x80 {
				return &ServerError{Code: CodeForbidden, Message: "subscription to " + topic + " refused", Topic: topic}
			}
		}
	}
	return nil
}

func (c *Client) presenceTopic(user string) string {
	return c.opts.TopicPrefix + "/presence/" + user
}

// onPublish receives every PUBLISH from the server, on paho's goroutine: it
// must not block. It completes pending sends and queues the rest for the
// dispatcher.
func (c *Client) onPublish(_ mqtt.Client, m mqtt.Message) {
	topic, payload := m.Topic(), m.Payload()
	if topic == c.inbox {
		c.onInbox(payload)
		return
	}
	if user, ok := strings.CutPrefix(topic, c.opts.TopicPrefix+"/presence/"); ok && len(payload) > 0 {
		var p Presence
		if err := json.Unmarshal(payload, &p); err != nil {
			c.log.Warn("parley: malformed presence", "topic", topic, "error", err)
			return
		}
		if p.User == "" {
			p.User = user
		}
		c.enqueue(item{ev: Event{Kind: EventPresence, Presence: p}})
	}
}

func (c *Client) onInbox(payload []byte) {
	var k struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(payload, &k); err != nil {
		c.log.Warn("parley: malformed inbox event", "payload", string(payload), "error", err)
		return
	}
	var w wireEvent
	switch k.Kind {
	case "message", "ephemeral":
	default:
		if err := json.Unmarshal(payload, &w); err != nil {
			c.log.Warn("parley: malformed inbox event", "payload", string(payload), "error", err)
			return
		}
	}
	switch k.Kind {
	case "message", "ephemeral":
		var m Message
		if err := json.Unmarshal(payload, &m); err != nil {
			c.log.Warn("parley: malformed inbox message", "payload", string(payload), "error", err)
			return
		}
		if k.Kind == "ephemeral" {
			c.enqueue(item{ev: Event{Kind: EventEphemeral, Message: m}})
			return
		}
		c.matchEcho(m)
		c.enqueue(item{msg: &m})
	case "error":
		se := &ServerError{Code: w.Code, Message: w.ErrMessage, CID: w.CID, Topic: w.Topic}
		if !c.matchError(se) {
			c.enqueue(item{ev: Event{Kind: EventError, Err: se}})
		}
	case "read", "delivered":
		r := Receipt{Conv: w.Conv, User: w.User, Seq: w.Seq}
		if w.Unread != nil {
			r.HasCounts, r.Unread = true, *w.Unread
			if w.Mentions != nil {
				r.Mentions = *w.Mentions
			}
		}
		c.enqueue(item{ev: Event{Kind: EventKind(w.Kind), Receipt: r}})
	case "gap":
		c.enqueue(item{gap: &Gap{Conv: w.Conv, After: w.After, Before: w.Before}})
	case "settings":
		st := Settings{Conv: w.Conv, Archived: w.Archived, Pinned: w.Pinned}
		if w.MutedUntil != nil {
			st.MutedUntil = *w.MutedUntil
		}
		c.enqueue(item{ev: Event{Kind: EventSettings, Settings: st}})
	default:
		// Kinds added later are ignored, as the protocol asks.
	}
}

// Events returns the channel of events, or nil when Options.Handler is set.
// Messages arrive per conversation in seq order, each once. Close closes
// the channel. Read it continuously: while it is full, later events wait.
func (c *Client) Events() <-chan Event { return c.events }

// Close disconnects and releases everything: pending calls return
// ErrClosed, the Events channel is closed, no goroutine is left behind. It
// returns nil, also when called again. Do not call it from
// Options.Handler.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.mq.Disconnect(250)
	c.wg.Wait()
	if c.events != nil {
		close(c.events)
	}
	c.CloseIdleConnections()
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// ClientID returns the MQTT client id, USER/DEVICE.
func (c *Client) ClientID() string { return c.clientID }

// Connected reports whether the MQTT connection is up right now.
func (c *Client) Connected() bool { return c.mq.IsConnectionOpen() }

// wait waits for a paho token, ctx or Close.
func (c *Client) wait(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

func validDevice(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}
