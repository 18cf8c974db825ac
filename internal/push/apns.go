package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// APNs endpoints.
const (
	// APNsProduction is the base URL of the production APNs server.
	APNsProduction = "https://api.push.apple.com"
	// APNsSandbox is the base URL of the development APNs server (for
	// builds signed with a development profile).
	APNsSandbox = "https://api.sandbox.push.apple.com"
)

// Provider-token lifetimes: Apple refuses a token older than an hour and
// answers TooManyProviderTokenUpdates when a new one comes more often than
// every 20 minutes.
const (
	apnsTokenRefresh  = 50 * time.Minute
	apnsTokenMinAge   = 20 * time.Minute
	apnsMaxCollapseID = 64
)

// APNsConfig configures NewAPNs.
type APNsConfig struct {
	// KeyFile is the .p8 token-signing key downloaded from the Apple
	// developer account (a PEM PKCS#8 P-256 key).
	KeyFile string
	// Key is the contents of the .p8 file; used when KeyFile is empty.
	Key []byte
	// KeyID is the 10-character identifier of the key (the JWT's kid).
	KeyID string
	// TeamID is the 10-character team identifier (the JWT's iss).
	TeamID string
	// Topic is the app's bundle id (apns-topic).
	Topic string
	// Endpoint is the base URL of the APNs server; empty means
	// APNsProduction. Tokens of development builds need APNsSandbox:
	// production answers BadDeviceToken for them, which removes them.
	Endpoint string
	// HTTPClient sends the requests; it must speak HTTP/2. Nil means a
	// client with a 30 s timeout that uses only HTTP/2.
	HTTPClient *http.Client
}

// APNs sends notifications through the Apple Push Notification service
// with token-based authentication. The provider token (an ES256 JWT) is
// reused for about 50 minutes. It is safe for concurrent use.
type APNs struct {
	key      *ecdsa.PrivateKey
	keyID    string
	teamID   string
	topic    string
	endpoint string
	client   *http.Client
	now      func() time.Time

	mu       sync.Mutex
	jwt      string
	jwtIssue time.Time
}

// NewAPNs returns an APNs provider.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	pemKey := cfg.Key
	if cfg.KeyFile != "" {
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, errConfig("apns", "%v", err)
		}
		pemKey = b
	}
	if len(pemKey) == 0 {
		return nil, errConfig("apns", "a key file is required")
	}
	key, err := parseP256Key(pemKey)
	if err != nil {
		return nil, errConfig("apns", "key: %v", err)
	}
	if cfg.KeyID == "" || cfg.TeamID == "" || cfg.Topic == "" {
		return nil, errConfig("apns", "key id, team id and topic are required")
	}
	endpoint := strings.TrimSuffix(cfg.Endpoint, "/")
	if endpoint == "" {
		endpoint = APNsProduction
	}
	if u, err := url.Parse(endpoint); err != nil || u.Host == "" {
		return nil, errConfig("apns", "endpoint %q is not a URL", cfg.Endpoint)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Transport: newTransport(true), Timeout: defaultTimeout}
	}
	return &APNs{
		key:      key,
		keyID:    cfg.KeyID,
		teamID:   cfg.TeamID,
		topic:    cfg.Topic,
		endpoint: endpoint,
		client:   client,
		now:      time.Now,
	}, nil
}

// parseP256Key reads a PEM PKCS#8 P-256 private key (a .p8 file).
func parseP256Key(p []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%T is not a P-256 ECDSA key", k)
	}
	return ek, nil
}

// Name returns "apns".
func (a *APNs) Name() string { return "apns" }

// providerToken returns the current provider token, signing a new one when
// there is none or it is older than apnsTokenRefresh.
func (a *APNs) providerToken() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.jwt != "" && now.Sub(a.jwtIssue) < apnsTokenRefresh {
		return a.jwt, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": a.teamID,
		"iat": now.Unix(),
	})
	// Apple documents the header as exactly {"alg": "ES256", "kid": ...}.
	delete(t.Header, "typ")
	t.Header["kid"] = a.keyID
	s, err := t.SignedString(a.key)
	if err != nil {
		return "", err
	}
	a.jwt, a.jwtIssue = s, now
	return s, nil
}

// expireToken makes the next send sign a new provider token if tok is the
// current one and is old enough to be replaced.
func (a *APNs) expireToken(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.jwt == tok && a.now().Sub(a.jwtIssue) >= apnsTokenMinAge {
		a.jwt = ""
	}
}

// apnsAlert is aps.alert.
type apnsAlert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

// apnsAPS is the aps dictionary.
type apnsAPS struct {
	Alert    *apnsAlert `json:"alert,omitempty"`
	Badge    int        `json:"badge"`
	Sound    string     `json:"sound,omitempty"`
	ThreadID string     `json:"thread-id,omitempty"`
}

// apnsPayload builds the JSON payload of n: aps, then the custom keys conv,
// seq and n.Data.
func apnsPayload(n Notification) ([]byte, error) {
	aps := apnsAPS{Badge: n.Badge, ThreadID: n.Conv}
	if n.Title != "" || n.Body != "" {
		aps.Alert = &apnsAlert{Title: n.Title, Body: n.Body}
		aps.Sound = "default"
	}
	p := make(map[string]any, len(n.Data)+3)
	for k, v := range n.Data {
		p[k] = v
	}
	p["aps"] = aps
	p["conv"] = n.Conv
	p["seq"] = n.Seq
	return json.Marshal(p)
}

// Send sends n to the device with the APNs device token (hex).
func (a *APNs) Send(ctx context.Context, token string, n Notification) error {
	if token == "" {
		return &Error{Provider: "apns", Message: "empty token", Err: ErrInvalidToken}
	}
	body, err := apnsPayload(n)
	if err != nil {
		return &Error{Provider: "apns", Err: err}
	}
	bearer, err := a.providerToken()
	if err != nil {
		return &Error{Provider: "apns", Message: "signing the provider token", Err: err}
	}
	now := a.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint+"/3/device/"+url.PathEscape(token), bytes.NewReader(body))
	if err != nil {
		return &Error{Provider: "apns", Err: err}
	}
	h := req.Header
	h.Set("authorization", "bearer "+bearer)
	h.Set("apns-topic", a.topic)
	h.Set("apns-push-type", "alert")
	h.Set("apns-priority", "10")
	h.Set("apns-expiration", strconv.FormatInt(now.Add(n.ttl()).Unix(), 10))
	if key := n.collapseKey(); key != "" {
		h.Set("apns-collapse-id", apnsCollapseID(key))
	}
	h.Set("content-type", "application/json")
	rb, e, err := exchange(ctx, a.client, "apns", req, now)
	if e == nil {
		return err
	}
	var ae struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(rb, &ae)
	e.Reason = ae.Reason
	switch {
	case e.Status == http.StatusGone,
		e.Status == http.StatusBadRequest && (ae.Reason == "BadDeviceToken" || ae.Reason == "DeviceTokenNotForTopic"):
		e.Retryable = false
		e.Err = ErrInvalidToken
	case e.Status == http.StatusForbidden && ae.Reason == "ExpiredProviderToken":
		a.expireToken(bearer)
		e.Retryable = true
	}
	if e.Reason == "" {
		e.Message = strings.TrimSpace(string(rb[:min(len(rb), 200)]))
	}
	return e
}
