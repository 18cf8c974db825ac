// Package moderation is the client of the moderation hook: before a send or
// an edit is stored, the send pipeline POSTs it (signed like webhooks, see
// package signature) to an HTTP service that answers allow, reject or
// replace. docs/moderation.md is the contract.
//
// The call runs on the sender's path (the publishing client's goroutine or
// the REST request), so calls for different senders are in flight at once;
// nothing here serializes them.
package moderation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/internal/signature"
)

// DefaultTimeout bounds one moderation call unless Client.Timeout says
// otherwise.
const DefaultTimeout = 2 * time.Second

// Request types: the outbox event types of what is about to be stored.
const (
	TypeMessageCreated = "message.created"
	TypeMessageEdited  = "message.edited"
)

// Actions of a Verdict.
const (
	Allow   = "allow"
	Reject  = "reject"
	Replace = "replace"
)

// MaxReason bounds the reason of a reject that the sender is shown, in
// characters; a longer one is cut.
const MaxReason = 200

// Request is what the moderation service receives: a send or an edit that is
// about to be stored, as JSON.
type Request struct {
	// ID is the id the message (or the edit event) will be stored with.
	ID string `json:"id"`
	// Type is message.created (a send) or message.edited (an edit).
	Type string `json:"type"`
	// TS is the time the message will be stored with.
	TS time.Time `json:"ts"`
	// Conv is the conversation: dm:A:B or g:GROUP.
	Conv string `json:"conv"`
	// From is the sender (the author of an edit).
	From string `json:"from"`
	// CID is the sender's client id of the send, when it has one.
	CID string `json:"cid,omitempty"`
	// MsgType is the message's type ("text" by default; message.edited for an
	// edit).
	MsgType string `json:"msg_type"`
	// Body is the body as sent: for an edit, the new body.
	Body json.RawMessage `json:"body"`
	// Ephemeral is set for an ephemeral send (delivered, never stored).
	Ephemeral bool `json:"ephemeral,omitempty"`
	// ReplyTo and Mentions are a send's.
	ReplyTo  int64    `json:"reply_to,omitempty"`
	Mentions []string `json:"mentions,omitempty"`
	// Target is the seq of the message an edit changes.
	Target int64 `json:"target,omitempty"`
}

// Verdict is the moderation service's answer.
type Verdict struct {
	// Action is Allow, Reject or Replace.
	Action string `json:"action"`
	// Reason, for Reject, is shown to the sender.
	Reason string `json:"reason,omitempty"`
	// Body, for Replace, is the body to store instead: any JSON value other
	// than null.
	Body json.RawMessage `json:"body,omitempty"`
}

// Client calls the moderation service. Its zero value is not usable: set URL
// (and Secret), then call Check from any number of goroutines.
type Client struct {
	// URL receives the POSTs; required.
	URL string
	// Secret signs each request (header Parley-Signature); empty: requests
	// are not signed.
	Secret []byte
	// Timeout bounds one call, answer included; default DefaultTimeout.
	Timeout time.Duration
	// FailClosed refuses a message whose moderation failed (Check returns an
	// error); otherwise it is allowed as sent (fail open).
	FailClosed bool
	// MaxBody bounds the answer's size; default 1 MiB.
	MaxBody int64
	// HTTP defaults to a client of its own.
	HTTP *http.Client
	// Log defaults to slog.Default().
	Log *slog.Logger

	checks *prometheus.CounterVec
	now    func() time.Time
}

// New returns a Client for url with its counter
// parley_moderation_checks_total{result} registered on reg (nil: not
// registered).
func New(url string, secret []byte, timeout time.Duration, failClosed bool, log *slog.Logger, reg prometheus.Registerer) *Client {
	c := &Client{URL: url, Secret: secret, Timeout: timeout, FailClosed: failClosed, Log: log}
	c.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_moderation_checks_total",
		Help: "Moderation calls, by result: allow, reject, replace, failed_open (allowed as sent) or failed_closed (refused unavailable).",
	}, []string{"result"})
	for _, r := range []string{Allow, Reject, Replace, "failed_open", "failed_closed"} {
		c.checks.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(c.checks)
	}
	return c
}

// ErrFailed wraps every failure of a call: timeout, unreachable service,
// non-2xx status, an answer that is not a valid verdict.
var ErrFailed = errors.New("moderation failed")

// Check asks the moderation service about r. When the call fails it logs a
// warning and, failing open, returns an Allow verdict and no error; failing
// closed, an error wrapping ErrFailed. A Reject verdict's Reason is valid
// text of at most MaxReason characters; a Replace verdict's Body is valid
// JSON other than null.
func (c *Client) Check(ctx context.Context, r Request) (Verdict, error) {
	v, err := c.call(ctx, r)
	if err == nil {
		c.count(v.Action)
		return v, nil
	}
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	c.log().Warn("moderation failed", "url", c.URL, "conv", r.Conv, "from", r.From, "id", r.ID,
		"fail_closed", c.FailClosed, "error", err)
	if c.FailClosed {
		c.count("failed_closed")
		return Verdict{}, err
	}
	c.count("failed_open")
	return Verdict{Action: Allow}, nil
}

func (c *Client) call(ctx context.Context, r Request) (Verdict, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Verdict{}, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return Verdict{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "parley-moderation")
	if len(c.Secret) > 0 {
		now := time.Now
		if c.now != nil {
			now = c.now
		}
		req.Header.Set(signature.Header, signature.Sign(c.Secret, now(), body))
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Verdict{}, err
	}
	defer resp.Body.Close()
	max := c.MaxBody
	if max <= 0 {
		max = 1 << 20
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return Verdict{}, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Verdict{}, fmt.Errorf("status %s", resp.Status)
	}
	if int64(len(b)) > max {
		return Verdict{}, fmt.Errorf("answer larger than %d bytes", max)
	}
	return parseVerdict(b)
}

// parseVerdict decodes and checks an answer.
func parseVerdict(b []byte) (Verdict, error) {
	var v Verdict
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("answer is not a verdict: %w", err)
	}
	switch v.Action {
	case Allow:
		return Verdict{Action: Allow}, nil
	case Reject:
		reason := strings.ToValidUTF8(strings.ReplaceAll(v.Reason, "\x00", ""), "\uFFFD")
		if utf8.RuneCountInString(reason) > MaxReason {
			reason = string([]rune(reason)[:MaxReason])
		}
		return Verdict{Action: Reject, Reason: reason}, nil
	case Replace:
		if len(v.Body) == 0 || string(v.Body) == "null" {
			return v, errors.New(`answer "replace" without a body`)
		}
		return Verdict{Action: Replace, Body: v.Body}, nil
	default:
		return v, fmt.Errorf(`answer has action %q: want "allow", "reject" or "replace"`, v.Action)
	}
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:               http.ProxyFromEnvironment,
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256, // many calls in flight at once to one service
	IdleConnTimeout:     90 * time.Second,
	TLSHandshakeTimeout: 10 * time.Second,
	ForceAttemptHTTP2:   true,
}}

func (c *Client) count(result string) {
	if c.checks != nil {
		c.checks.WithLabelValues(result).Inc()
	}
}

func (c *Client) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}
