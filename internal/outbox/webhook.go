package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/parley-im/parley/internal/push"
	"github.com/parley-im/parley/internal/signature"
)

// Webhook is a sink that POSTs each event as JSON to URL, signed with
// Secret. A 2xx answer delivers the event; anything else (or no answer
// within Timeout) fails it, and the dispatcher retries.
type Webhook struct {
	URL    string
	Secret []byte
	// Client defaults to a client with Timeout (default 10 s).
	Client  *http.Client
	Timeout time.Duration
}

// Name implements Sink.
func (w *Webhook) Name() string { return "webhook:" + w.URL }

// Deliver implements Sink: one request per event, in order.
func (w *Webhook) Deliver(ctx context.Context, evs []Event) (int, error) {
	for i, ev := range evs {
		if err := w.Post(ctx, ev); err != nil {
			return i, err
		}
	}
	return len(evs), nil
}

// noRedirects refuses to follow a redirect: Go would turn the POST into a
// GET without the body, and a 2xx to that would count as delivered.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Post sends one event. A redirect is not followed: it fails the delivery
// (the receiver's URL must be the final one). A failure is a *push.Error
// (wrapped): push.Retryable and push.RetryAfter tell whether and when to
// try again.
func (w *Webhook) Post(ctx context.Context, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	client := w.Client
	if client == nil {
		timeout := w.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		client = &http.Client{Timeout: timeout, CheckRedirect: noRedirects}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Parley-Webhook")
	req.Header.Set(signature.Header, signature.Sign(w.Secret, time.Now(), body))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("outbox: post to %s: %w", w.URL, push.TransportError(ctx, "webhook", err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("outbox: %s refused the event: %w", w.URL, push.StatusError("webhook", resp, time.Now()))
	}
	return nil
}
