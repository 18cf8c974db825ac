package parley

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// SendOption changes how Send sends.
type SendOption func(*sendConfig)

type sendConfig struct {
	typ       string
	typSet    bool
	ephemeral bool
	cid       string
	replyTo   int64
	mentions  []string
	files     []AttachmentRef
}

// WithType sets the message type (at most 32 characters; default "text").
// Types starting with "group.", "member." or "system." are reserved for the
// server.
func WithType(t string) SendOption {
	return func(c *sendConfig) { c.typ, c.typSet = t, true }
}

// ReplyTo makes the message a reply to message seq of the same
// conversation (see Client.Reply). The server refuses, with
// ErrInvalidPayload, a seq that is not a message the user can see, or an
// event; ephemeral messages cannot reply.
func ReplyTo(seq int64) SendOption { return func(c *sendConfig) { c.replyTo = seq } }

// Mention mentions users in the message: they must be members of the
// conversation (at most 50 users; repeats count once), else the server
// refuses the send with ErrInvalidPayload. A mention counts in the
// mentioned user's Conversation.Mentions while unread. Ephemeral messages
// cannot mention. Mention adds to the users of earlier Mention options.
func Mention(users ...string) SendOption {
	return func(c *sendConfig) { c.mentions = append(c.mentions, users...) }
}

// Ephemeral sends the message without storing it: it gets no seq, goes only
// to the members connected at that moment, and not back to the sender.
// Typing indicators and call signalling are ephemeral.
func Ephemeral() SendOption { return func(c *sendConfig) { c.ephemeral = true } }

// WithCID sets the client message id (at most 64 characters) instead of a
// random one. A send with the (conversation, cid) of a stored message of the
// same user is not stored again: Send returns the original. Use it to retry
// a send across restarts of the program.
func WithCID(cid string) SendOption { return func(c *sendConfig) { c.cid = cid } }

// sendPayload is what a client publishes to a send topic (and POSTs for
// the ops, see API.Edit).
type sendPayload struct {
	Op        string          `json:"op,omitempty"`
	CID       string          `json:"cid"`
	Type      string          `json:"type,omitempty"`
	Body      json.RawMessage `json:"body,omitempty"`
	Ephemeral bool            `json:"ephemeral,omitempty"`
	ReplyTo   int64           `json:"reply_to,omitempty"`
	Mentions  []string        `json:"mentions,omitempty"`
	Target    int64           `json:"target,omitempty"`
	Emoji     string          `json:"emoji,omitempty"`
	// Attachments name uploads of the sender (see API.Upload).
	Attachments []AttachmentRef `json:"attachments,omitempty"`
}

// sendWaiter is a Send waiting for its echo or error.
type sendWaiter struct {
	key     string
	topic   string
	payload []byte
	result  chan sendResult
	resend  chan struct{}
}

type sendResult struct {
	msg Message
	err *ServerError
}

// Send sends body, any value that encodes to JSON (a json.RawMessage is sent
// as is), to a user or group, and returns the stored message with its
// conversation, seq and id once the server's echo arrives.
//
// Send publishes at QoS 1 with a random cid (see WithCID). It publishes
// again with the same cid, which the server stores only once, after a
// reconnection, when the server reports its store unavailable, and when no
// echo came within Options.ResendInterval; it gives up only when ctx ends
// (returning ctx.Err()) or the client is closed (ErrClosed). Refusals are
// returned as a *ServerError matching ErrNotMember, ErrNoSuchGroup,
// ErrInvalidPeer, ErrInvalidPayload (also for a ReplyTo or Mention the
// server refuses), ErrTooLarge or ErrRateLimited; a
// message larger than Options.MaxPayload is not sent and fails with a
// *TooLargeError (which matches ErrTooLarge).
//
// With Ephemeral, Send returns once the server acknowledged the publish; the
// returned message has no Seq and no ID. Errors the server reports after
// that acknowledgement arrive as EventError.
func (c *Client) Send(ctx context.Context, to Target, body any, opts ...SendOption) (Message, error) {
	cfg := sendConfig{typ: "text"}
	for _, o := range opts {
		o(&cfg)
	}
	if to.id == "" {
		return Message{}, fmt.Errorf("parley: send: empty target: %w", ErrInvalidPeer)
	}
	raw, err := encodeBody(body)
	if err != nil {
		return Message{}, fmt.Errorf("parley: send: %w", err)
	}
	if cfg.cid == "" {
		cfg.cid = newCID()
	}
	payload, err := json.Marshal(sendPayload{CID: cfg.cid, Type: cfg.typ, Body: raw, Ephemeral: cfg.ephemeral,
		ReplyTo: cfg.replyTo, Mentions: cfg.mentions, Attachments: cfg.files})
	if err != nil {
		return Message{}, fmt.Errorf("parley: send: encode body: %w", err)
	}
	if max := c.opts.MaxPayload; max > 0 && len(payload) > max {
		return Message{}, &TooLargeError{Size: len(payload), Limit: max}
	}
	kind := "u"
	if to.group {
		kind = "g"
	}
	conv := to.Conv(c.user)
	w := &sendWaiter{
		key:     conv + "\x00" + cfg.cid,
		topic:   c.opts.TopicPrefix + "/send/" + kind + "/" + to.id,
		payload: payload,
		result:  make(chan sendResult, 4),
		resend:  make(chan struct{}, 1),
	}
	if !c.register(w) {
		return Message{}, ErrClosed
	}
	defer c.unregister(w)

	if cfg.ephemeral {
		if err := c.wait(ctx, c.mq.Publish(w.topic, 1, false, w.payload)); err != nil {
			return Message{}, fmt.Errorf("parley: send: %w", err)
		}
		select {
		case r := <-w.result:
			if r.err != nil {
				return Message{}, r.err
			}
		default:
		}
		return Message{Conv: conv, CID: cfg.cid, From: c.user, TS: time.Now().UTC(), Type: cfg.typ, Body: raw}, nil
	}

	c.publish(w)
	timer := time.NewTimer(c.opts.ResendInterval)
	defer timer.Stop()
	backoff := 250 * time.Millisecond
	for {
		select {
		case r := <-w.result:
			if r.err == nil {
				return r.msg, nil
			}
			if r.err.permanent() {
				return Message{}, r.err
			}
			c.log.Warn("parley: server unavailable, sending again", "conv", conv, "cid", cfg.cid, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return Message{}, ctx.Err()
			case <-c.ctx.Done():
				return Message{}, ErrClosed
			}
			backoff = min(2*backoff, 5*time.Second)
			c.publish(w)
		case <-w.resend:
			c.publish(w)
		case <-timer.C:
			c.log.Debug("parley: no echo yet, sending again", "conv", conv, "cid", cfg.cid)
			c.publish(w)
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-c.ctx.Done():
			return Message{}, ErrClosed
		}
		timer.Reset(c.opts.ResendInterval)
	}
}

// encodeBody returns body as JSON: as it is if it is a json.RawMessage, else
// encoded. A body that is empty or null is refused with ErrInvalidPayload.
func encodeBody(body any) (json.RawMessage, error) {
	raw, ok := body.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("body is required: %w", ErrInvalidPayload)
	}
	return raw, nil
}

// publish publishes a pending send when the connection is up; otherwise the
// next connection publishes it (resendAll).
func (c *Client) publish(w *sendWaiter) {
	if !c.mq.IsConnectionOpen() {
		return
	}
	c.mq.Publish(w.topic, 1, false, w.payload)
}

// resendAll publishes every pending send again, after a reconnection.
func (c *Client) resendAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ws := range c.pending {
		for _, w := range ws {
			select {
			case w.resend <- struct{}{}:
			default:
			}
		}
	}
}

func (c *Client) register(w *sendWaiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.pending[w.key] = append(c.pending[w.key], w)
	return true
}

func (c *Client) unregister(w *sendWaiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.pending[w.key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(c.pending, w.key)
	} else {
		c.pending[w.key] = ws
	}
}

// matchEcho completes the sends waiting for m, the echo of a message of the
// user.
func (c *Client) matchEcho(m Message) {
	if m.From != c.user || m.CID == "" {
		return
	}
	c.deliverResult(m.Conv+"\x00"+m.CID, sendResult{msg: m})
}

// matchError hands an error event to the send it is about; it reports
// whether there was one.
func (c *Client) matchError(e *ServerError) bool {
	if e.CID == "" {
		// The server could not read the payload (too_large, malformed
		// JSON): the error names only the topic. It is the send's when
		// that send is the only one pending on the topic.
		c.mu.Lock()
		var only *sendWaiter
		n := 0
		for _, ws := range c.pending {
			for _, w := range ws {
				if w.topic == e.Topic {
					only = w
					n++
				}
			}
		}
		c.mu.Unlock()
		if n != 1 {
			return false
		}
		select {
		case only.result <- sendResult{err: e}:
		default:
		}
		return true
	}
	rest, ok := strings.CutPrefix(e.Topic, c.opts.TopicPrefix+"/send/")
	if !ok {
		return false
	}
	var conv string
	switch kind, id, _ := strings.Cut(rest, "/"); kind {
	case "u":
		conv = DirectConv(c.user, id)
	case "g":
		conv = GroupConv(id)
	default:
		return false
	}
	return c.deliverResult(conv+"\x00"+e.CID, sendResult{err: e})
}

func (c *Client) deliverResult(key string, r sendResult) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.pending[key]
	for _, w := range ws {
		select {
		case w.result <- r:
		default:
		}
	}
	return len(ws) > 0
}

func newCID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Typing tells the members of a conversation that the user is typing: an
// ephemeral message of type "typing" with body true.
func (c *Client) Typing(ctx context.Context, to Target) error {
	_, err := c.Send(ctx, to, true, WithType("typing"), Ephemeral())
	return err
}

// Reply sends body as a reply to message replyTo of the conversation with
// to: Send with the option ReplyTo(replyTo) (and opts, such as Mention).
// The server refuses with ErrInvalidPayload a replyTo that is not a message
// of that conversation the user can see.
func (c *Client) Reply(ctx context.Context, to Target, replyTo int64, body any, opts ...SendOption) (Message, error) {
	if replyTo < 1 {
		return Message{}, fmt.Errorf("parley: reply: the seq of a message is required: %w", ErrInvalidPayload)
	}
	return c.Send(ctx, to, body, append(slices.Clone(opts), ReplyTo(replyTo))...)
}
