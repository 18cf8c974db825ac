package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source shared by a provider and its fake
// server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey returns one 2048-bit RSA key for all the tests of a run.
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func testP256Key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pkcs8PEM encodes key as a PEM "PRIVATE KEY" (what Google's service
// accounts and Apple's .p8 files hold).
func pkcs8PEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// startH2 starts a TLS server that speaks HTTP/2 and returns it with a
// client built on the providers' own transport that trusts its certificate.
func startH2(t *testing.T, h http.Handler, http2Only bool) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := newTransport(http2Only)
	tr.TLSClientConfig.RootCAs = x509.NewCertPool()
	tr.TLSClientConfig.RootCAs.AddCert(srv.Certificate())
	t.Cleanup(tr.CloseIdleConnections)
	return srv, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// decodeStrict decodes b into v, refusing fields v does not have and
// trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// jsonEqual fails t unless got is the JSON value want (a JSON text).
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		gi, _ := json.MarshalIndent(g, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("body:\n%s\nwant:\n%s", gi, wi)
	}
}

// sendError is an error answer of a fake server, chosen by the device
// token, and what Send must make of it.
type sendError struct {
	token      string
	invalid    bool
	retryable  bool
	status     int
	reason     string
	retryAfter time.Duration
}

// checkSendErrors sends through p to the token of each case and checks the
// *Error that Send returns.
func checkSendErrors(t *testing.T, p Provider, cases []sendError) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.token, func(t *testing.T) {
			err := p.Send(context.Background(), c.token, Notification{Title: "t", Conv: "c", Seq: 1})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v is not an *Error", err)
			}
			if errors.Is(err, ErrInvalidToken) != c.invalid || Retryable(err) != c.retryable ||
				e.Status != c.status || e.Reason != c.reason || RetryAfter(err) != c.retryAfter || e.Provider != p.Name() {
				t.Errorf("%v: invalid %v retryable %v status %d reason %q retry after %v; want %+v",
					err, errors.Is(err, ErrInvalidToken), Retryable(err), e.Status, e.Reason, RetryAfter(err), c)
			}
		})
	}
}

// checkTransportErrors checks that a send through p with a cancelled
// context fails for good, and that a send through unreachable, whose server
// does not answer, can be retried.
func checkTransportErrors(t *testing.T, p, unreachable Provider, token string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Send(ctx, token, Notification{Title: "t"}); err == nil || Retryable(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v, want a non-retryable context.Canceled", err)
	}
	if err := unreachable.Send(context.Background(), token, Notification{Title: "t"}); err == nil || !Retryable(err) || errors.Is(err, ErrInvalidToken) {
		t.Errorf("unreachable endpoint: %v, want retryable", err)
	}
}

// sendConcurrently makes n sends through p to token at the same time.
func sendConcurrently(t *testing.T, p Provider, token string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Send(context.Background(), token, Notification{Title: "t", Conv: "c"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestErrorClassification(t *testing.T) {
	if Retryable(nil) || RetryAfter(nil) != 0 {
		t.Error("nil is not retryable")
	}
	if Retryable(errors.New("x")) {
		t.Error("a foreign error is not retryable")
	}
	inv := &Error{Provider: "apns", Status: 410, Reason: "Unregistered", Err: ErrInvalidToken}
	if !errors.Is(inv, ErrInvalidToken) || Retryable(inv) {
		t.Errorf("%v: want an invalid token, not retryable", inv)
	}
	if got, want := inv.Error(), "push: apns 410 Unregistered: "+ErrInvalidToken.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	busy := &Error{Provider: "fcm", Status: 503, Reason: "UNAVAILABLE", Retryable: true, RetryAfter: 7 * time.Second}
	wrapped := errors.Join(errors.New("outer"), busy)
	if !Retryable(wrapped) || RetryAfter(wrapped) != 7*time.Second || errors.Is(wrapped, ErrInvalidToken) {
		t.Errorf("%v: want retryable after 7s", wrapped)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-3":                            0,
		"soon":                          0,
		"Wed, 01 Jan 2025 00:00:30 GMT": 30 * time.Second,
		"Tue, 31 Dec 2024 23:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(h, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestCollapseID(t *testing.T) {
	short := "conv-1"
	if got := apnsCollapseID(short); got != short {
		t.Errorf("apnsCollapseID(%q) = %q", short, got)
	}
	exact := string(bytes.Repeat([]byte("a"), 64))
	if got := apnsCollapseID(exact); got != exact {
		t.Errorf("a 64-byte key changed: %q", got)
	}
	long := string(bytes.Repeat([]byte("é"), 40)) // 80 bytes
	got := apnsCollapseID(long)
	if len(got) != 64 || got == long[:64] || apnsCollapseID(long) != got {
		t.Errorf("apnsCollapseID(80 bytes) = %q: want a stable 64-byte hash", got)
	}
	if apnsCollapseID(long+"x") == got {
		t.Error("different long keys collapse to the same id")
	}
}

var (
	_ Provider = (*FCM)(nil)
	_ Provider = (*APNs)(nil)
)
