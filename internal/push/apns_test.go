package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/internal/testkit"
)

const (
	apnsKeyID  = "ABC123DEFG"
	apnsTeamID = "DEF123GHIJ"
	apnsTopic  = "im.parley.app"
	apnsToken  = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

// apnsServer implements the provider API of APNs ("Sending notification
// requests to APNs", "Establishing a token-based connection to APNs",
// "Handling notification responses from APNs") and checks each request as
// documented.
type apnsServer struct {
	t     *testing.T
	clock *clock
	pub   *ecdsa.PublicKey

	mu    sync.Mutex
	sends []apnsSeen
}

type apnsSeen struct {
	token  string
	jwt    string
	iat    int64
	header http.Header
	body   []byte
}

func newTestAPNs(t *testing.T) (*APNs, *apnsServer) {
	t.Helper()
	key := testP256Key(t)
	s := &apnsServer{t: t, clock: newClock(), pub: &key.PublicKey}
	srv, client := startH2(t, s, true)
	p := testkit.WriteFile(t, "AuthKey_"+apnsKeyID+".p8", pkcs8PEM(t, key))
	a, err := NewAPNs(APNsConfig{KeyFile: p, KeyID: apnsKeyID, TeamID: apnsTeamID, Topic: apnsTopic, Endpoint: srv.URL, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	a.now = s.clock.Now
	return a, s
}

func (s *apnsServer) reply(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5D")
	if status == http.StatusOK {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusGone {
		fmt.Fprintf(w, `{"reason":%q,"timestamp":%d}`, reason, s.clock.Now().UnixMilli())
		return
	}
	fmt.Fprintf(w, `{"reason":%q}`, reason)
}

func (s *apnsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.t
	if r.ProtoMajor != 2 {
		t.Errorf("%s %s over %s: APNs requires HTTP/2", r.Method, r.URL, r.Proto)
	}
	if r.Method != http.MethodPost {
		t.Errorf("method %s, want POST", r.Method)
		s.reply(w, 405, "MethodNotAllowed")
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok || token == "" || strings.Contains(token, "/") || r.URL.RawQuery != "" {
		t.Errorf("path %q, want /3/device/{token}", r.URL.RequestURI())
		s.reply(w, 404, "BadPath")
		return
	}
	h := r.Header
	for k := range h {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "apns-") && !slices.Contains([]string{"apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id"}, lk) {
			t.Errorf("unexpected header %s", k)
		}
	}
	if got := h.Get("apns-topic"); got != apnsTopic {
		t.Errorf("apns-topic %q", got)
		s.reply(w, 400, "BadTopic")
		return
	}
	if got := h.Get("apns-push-type"); got != "alert" {
		t.Errorf("apns-push-type %q, want alert", got)
	}
	if got := h.Get("apns-priority"); got != "10" {
		t.Errorf("apns-priority %q, want 10", got)
	}
	now := s.clock.Now()
	if exp, err := strconv.ParseInt(h.Get("apns-expiration"), 10, 64); err != nil || exp <= now.Unix() {
		t.Errorf("apns-expiration %q: want a UNIX time in the future", h.Get("apns-expiration"))
	}
	if cid := h.Get("apns-collapse-id"); len(cid) > 64 {
		t.Errorf("apns-collapse-id of %d bytes, at most 64 allowed", len(cid))
		s.reply(w, 400, "BadCollapseId")
		return
	}
	// authorization: bearer <ES256 JWT> with header {alg, kid} and claims
	// {iss: team id, iat}; a token older than an hour is refused.
	bearer, ok := strings.CutPrefix(h.Get("authorization"), "bearer ")
	if !ok {
		t.Errorf("authorization %q, want bearer <JWT>", h.Get("authorization"))
		s.reply(w, 403, "MissingProviderToken")
		return
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(bearer, claims, func(*jwt.Token) (any, error) { return s.pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(apnsTeamID), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		t.Errorf("provider token: %v", err)
		s.reply(w, 403, "InvalidProviderToken")
		return
	}
	if tok.Header["alg"] != "ES256" || tok.Header["kid"] != apnsKeyID || len(tok.Header) != 2 {
		t.Errorf("provider token header %v, want exactly alg ES256 and kid %s", tok.Header, apnsKeyID)
	}
	if len(claims) != 2 {
		t.Errorf("provider token claims %v, want iss and iat only", claims)
	}
	iat := int64(claims["iat"].(float64))
	if now.Unix()-iat >= 3600 {
		s.reply(w, 403, "ExpiredProviderToken")
		return
	}
	if ct := h.Get("content-type"); ct != "" && ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	b, _ := io.ReadAll(r.Body)
	if len(b) > 4096 {
		s.reply(w, 413, "PayloadTooLarge")
		return
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(b, &payload); err != nil {
		t.Errorf("payload %s: %v", b, err)
		s.reply(w, 400, "PayloadEmpty")
		return
	}
	var aps struct {
		Alert *struct {
			Title string `json:"title"`
			Body  string `json:"body"`
		} `json:"alert"`
		Badge    *int   `json:"badge"`
		Sound    string `json:"sound"`
		ThreadID string `json:"thread-id"`
	}
	if err := decodeStrict(payload["aps"], &aps); err != nil {
		t.Errorf("aps %s: %v", payload["aps"], err)
	}
	s.mu.Lock()
	s.sends = append(s.sends, apnsSeen{token: token, jwt: bearer, iat: iat, header: h.Clone(), body: b})
	s.mu.Unlock()

	for _, c := range apnsErrors {
		if c.token == token {
			if c.retryAfter != 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(c.retryAfter/time.Second)))
			}
			s.reply(w, c.status, c.reason)
			return
		}
	}
	s.reply(w, 200, "")
}

// apnsErrors are the device tokens that the fake server refuses after
// checking the request.
var apnsErrors = []sendError{
	{"gone", true, false, 410, "Unregistered", 0},
	{"expired", true, false, 410, "ExpiredToken", 0},
	{"baddevice", true, false, 400, "BadDeviceToken", 0},
	{"nottopic", true, false, 400, "DeviceTokenNotForTopic", 0},
	{"badexpiration", false, false, 400, "BadExpirationDate", 0},
	{"invalid-jwt", false, false, 403, "InvalidProviderToken", 0},
	{"refuse-jwt", false, true, 403, "ExpiredProviderToken", 0},
	{"many", false, true, 429, "TooManyRequests", 0},
	{"internal", false, true, 500, "InternalServerError", 0},
	{"busy", false, true, 503, "ServiceUnavailable", 5 * time.Second},
	{"shutdown", false, true, 503, "Shutdown", 0},
}

func (s *apnsServer) seen() []apnsSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sends)
}

func TestAPNsSend(t *testing.T) {
	a, s := newTestAPNs(t)
	if a.Name() != "apns" {
		t.Errorf("Name %q", a.Name())
	}
	n := Notification{
		Title: "Alice",
		Body:  "see you at 8?",
		Conv:  "dm:alice:bob",
		Seq:   42,
		Badge: 3,
		Data:  map[string]string{"sender": "alice", "aps": "ignored"},
	}
	if err := a.Send(context.Background(), apnsToken, n); err != nil {
		t.Fatal(err)
	}
	seen := s.seen()
	if len(seen) != 1 {
		t.Fatalf("%d requests, want 1", len(seen))
	}
	r := seen[0]
	if r.token != apnsToken {
		t.Errorf("token %q", r.token)
	}
	if got, want := r.header.Get("apns-expiration"), strconv.FormatInt(s.clock.Now().Add(24*time.Hour).Unix(), 10); got != want {
		t.Errorf("apns-expiration %s, want %s", got, want)
	}
	if got := r.header.Get("apns-collapse-id"); got != "dm:alice:bob" {
		t.Errorf("apns-collapse-id %q", got)
	}
	if r.iat != s.clock.Now().Unix() {
		t.Errorf("iat %d, want %d", r.iat, s.clock.Now().Unix())
	}
	jsonEqual(t, r.body, `{
		"aps":{"alert":{"title":"Alice","body":"see you at 8?"},"badge":3,"sound":"default","thread-id":"dm:alice:bob"},
		"conv":"dm:alice:bob","seq":42,"sender":"alice"}`)

	// No preview, an explicit collapse key longer than 64 bytes, a TTL.
	long := strings.Repeat("k", 100)
	n = Notification{Title: "Bob", Conv: "g:team", Seq: 7, CollapseKey: long, TTL: time.Minute}
	if err := a.Send(context.Background(), apnsToken, n); err != nil {
		t.Fatal(err)
	}
	r = s.seen()[1]
	if got := r.header.Get("apns-collapse-id"); got != apnsCollapseID(long) || len(got) != 64 {
		t.Errorf("apns-collapse-id %q", got)
	}
	if got, want := r.header.Get("apns-expiration"), strconv.FormatInt(s.clock.Now().Add(time.Minute).Unix(), 10); got != want {
		t.Errorf("apns-expiration %s, want %s", got, want)
	}
	jsonEqual(t, r.body, `{"aps":{"alert":{"title":"Bob"},"badge":0,"sound":"default","thread-id":"g:team"},"conv":"g:team","seq":7}`)
}

func TestAPNsErrors(t *testing.T) {
	a, _ := newTestAPNs(t)
	checkSendErrors(t, a, apnsErrors)
	payload := Notification{Title: "t", Body: strings.Repeat("x", 5000)}
	err := a.Send(context.Background(), apnsToken, payload)
	if var413 := (*Error)(nil); !errors.As(err, &var413) || var413.Status != 413 || var413.Reason != "PayloadTooLarge" || Retryable(err) {
		t.Errorf("oversized payload: %v", err)
	}
	if err := a.Send(context.Background(), "", Notification{}); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("empty token: %v", err)
	}
}

// sendOK sends a notification to apnsToken through a and returns the
// request that s saw.
func sendOK(t *testing.T, a *APNs, s *apnsServer) apnsSeen {
	t.Helper()
	if err := a.Send(context.Background(), apnsToken, Notification{Title: "t", Conv: "c"}); err != nil {
		t.Fatal(err)
	}
	seen := s.seen()
	return seen[len(seen)-1]
}

func TestAPNsProviderTokenReused(t *testing.T) {
	a, s := newTestAPNs(t)
	sendConcurrently(t, a, apnsToken, 8)
	first := sendOK(t, a, s)
	for _, r := range s.seen() {
		if r.jwt != first.jwt {
			t.Fatal("concurrent sends signed different provider tokens")
		}
	}
	s.clock.Advance(49 * time.Minute)
	if r := sendOK(t, a, s); r.jwt != first.jwt {
		t.Error("provider token replaced after 49 minutes")
	}
	s.clock.Advance(time.Minute)
	second := sendOK(t, a, s)
	if second.jwt == first.jwt || second.iat != s.clock.Now().Unix() {
		t.Errorf("provider token not renewed after 50 minutes (iat %d)", second.iat)
	}
	if r := sendOK(t, a, s); r.jwt != second.jwt {
		t.Error("renewed provider token not reused")
	}
}

func TestAPNsExpiredProviderToken(t *testing.T) {
	a, s := newTestAPNs(t)
	first := sendOK(t, a, s).jwt
	// refused has the provider token refused as expired, then returns the
	// one of the next send.
	refused := func() string {
		t.Helper()
		if err := a.Send(context.Background(), "refuse-jwt", Notification{Title: "t"}); !Retryable(err) {
			t.Fatalf("ExpiredProviderToken: %v, want retryable", err)
		}
		return sendOK(t, a, s).jwt
	}
	// Refused within 20 minutes of its issue: kept (a new one would be
	// refused as TooManyProviderTokenUpdates).
	s.clock.Advance(10 * time.Minute)
	if refused() != first {
		t.Error("provider token replaced within 20 minutes")
	}
	// Refused later: replaced by the next send.
	s.clock.Advance(15 * time.Minute)
	if refused() == first {
		t.Error("refused provider token not replaced after 25 minutes")
	}
}

func TestAPNsTransportErrors(t *testing.T) {
	a, _ := newTestAPNs(t)
	unreachable, _ := newTestAPNs(t)
	unreachable.endpoint = "https://127.0.0.1:1"
	checkTransportErrors(t, a, unreachable, apnsToken)
}

// TestAPNsHTTP2Only checks that the default APNs transport never falls
// back to HTTP/1.1 (APNs speaks only HTTP/2).
func TestAPNsHTTP2Only(t *testing.T) {
	var called atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called.Store(true) }))
	srv.StartTLS() // HTTP/1.1 only
	defer srv.Close()
	tr := newTransport(true)
	defer tr.CloseIdleConnections()
	tr.TLSClientConfig.RootCAs = x509.NewCertPool()
	tr.TLSClientConfig.RootCAs.AddCert(srv.Certificate())
	a, err := NewAPNs(APNsConfig{Key: pkcs8PEM(t, testP256Key(t)), KeyID: apnsKeyID, TeamID: apnsTeamID, Topic: apnsTopic,
		Endpoint: srv.URL, HTTPClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send(context.Background(), apnsToken, Notification{Title: "t"}); err == nil || called.Load() {
		t.Errorf("sent over HTTP/1.1 (err %v)", err)
	}
}

func TestNewAPNsConfig(t *testing.T) {
	dir := t.TempDir()
	p256 := pkcs8PEM(t, testP256Key(t))
	good := testkit.WriteFile(t, "good.p8", p256)
	rsaFile := testkit.WriteFile(t, "rsa.p8", pkcs8PEM(t, testRSAKey(t)))
	garbage := testkit.WriteFile(t, "garbage.p8", []byte("not a key"))
	base := APNsConfig{KeyFile: good, KeyID: apnsKeyID, TeamID: apnsTeamID, Topic: apnsTopic}
	for name, c := range map[string]struct {
		mod func(*APNsConfig)
		ok  bool
	}{
		"valid":      {func(*APNsConfig) {}, true},
		"key bytes":  {func(c *APNsConfig) { c.KeyFile, c.Key = "", p256 }, true},
		"sandbox":    {func(c *APNsConfig) { c.Endpoint = APNsSandbox }, true},
		"no key":     {func(c *APNsConfig) { c.KeyFile = "" }, false},
		"missing":    {func(c *APNsConfig) { c.KeyFile = filepath.Join(dir, "missing.p8") }, false},
		"rsa":        {func(c *APNsConfig) { c.KeyFile = rsaFile }, false},
		"garbage":    {func(c *APNsConfig) { c.KeyFile = garbage }, false},
		"no key id":  {func(c *APNsConfig) { c.KeyID = "" }, false},
		"no team id": {func(c *APNsConfig) { c.TeamID = "" }, false},
		"no topic":   {func(c *APNsConfig) { c.Topic = "" }, false},
		"bad url":    {func(c *APNsConfig) { c.Endpoint = "api.push.apple.com" }, false},
	} {
		cfg := base
		c.mod(&cfg)
		a, err := NewAPNs(cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", name, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		want := APNsProduction
		if cfg.Endpoint != "" {
			want = cfg.Endpoint
		}
		if a.endpoint != want || a.client == nil {
			t.Errorf("%s: endpoint %q", name, a.endpoint)
		}
	}
}
