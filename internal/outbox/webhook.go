package outbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// SignatureHeader is the header that signs webhook requests.
const SignatureHeader = "Parley-Signature"

// Signature returns the Parley-Signature value of body sent at t:
// "t=UNIX,v1=HEX", HEX being HMAC-SHA256(secret, "UNIX." + body).
func Signature(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

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

// Post sends one event.
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
		client = &http.Client{Timeout: timeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Parley-Webhook")
	req.Header.Set(SignatureHeader, Signature(w.Secret, time.Now(), body))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s answered %s", errStatus, w.URL, resp.Status)
	}
	return nil
}
