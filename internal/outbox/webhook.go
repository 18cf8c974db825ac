package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

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
// (the receiver's URL must be the final one).
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
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &statusError{url: w.URL, status: resp.Status, code: resp.StatusCode}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			e.retryAfter = time.Duration(min(secs, 3600)) * time.Second
		}
		return e
	}
	return nil
}

// statusError is a non-2xx answer to Post; it wraps errStatus.
type statusError struct {
	url, status string
	code        int
	retryAfter  time.Duration // the answer's Retry-After, in whole seconds
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%v: %s answered %s", errStatus, e.url, e.status)
}

func (e *statusError) Unwrap() error { return errStatus }

// postRetryable reports whether a failed Post may succeed if tried again
// soon, and after how long the receiver asked to wait (0: it did not say):
// no answer (unless ctx is done or the request timed out: a receiver that
// does not answer in time would only hold the batch again), 408, 429 and
// 5xx answers. Other answers are the receiver's final word.
func postRetryable(ctx context.Context, err error) (bool, time.Duration) {
	var se *statusError
	if !errors.As(err, &se) {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return false, 0
		}
		return ctx.Err() == nil, 0
	}
	switch {
	case se.code == http.StatusRequestTimeout, se.code == http.StatusTooManyRequests, se.code >= 500:
		return true, se.retryAfter
	}
	return false, 0
}
