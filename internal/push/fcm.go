package push

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FCM endpoints and scope.
const (
	// FCMEndpoint is the default base URL of the FCM HTTP v1 API.
	FCMEndpoint = "https://fcm.googleapis.com"
	// FCMScope is the OAuth 2.0 scope that allows sending messages.
	FCMScope = "https://www.googleapis.com/auth/firebase.messaging"
	// GoogleTokenURI is the OAuth 2.0 token endpoint used when the service
	// account file names none.
	GoogleTokenURI = "https://oauth2.googleapis.com/token"
)

// jwtBearerGrant is the grant_type of the OAuth 2.0 JWT-bearer flow (RFC
// 7523) that Google's service accounts use.
const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// assertionLifetime is the lifetime of the JWT assertion (Google accepts
// at most one hour).
const assertionLifetime = time.Hour

// accessTokenMargin is how long before its expiry a cached access token is
// replaced.
const accessTokenMargin = 5 * time.Minute

// FCMOptions are the optional settings of NewFCM.
type FCMOptions struct {
	// Endpoint is the base URL of the FCM API; empty means FCMEndpoint.
	Endpoint string
	// HTTPClient sends the requests (to the API and the token endpoint);
	// nil means a client with a 30 s timeout that prefers HTTP/2.
	HTTPClient *http.Client
}

// serviceAccount is the part of a Google service-account JSON key file
// that FCM needs.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// FCM sends notifications through the Firebase Cloud Messaging HTTP v1 API.
// It obtains OAuth 2.0 access tokens with the service account's key (the
// JWT-bearer grant) and caches each until shortly before it expires. It is
// safe for concurrent use.
type FCM struct {
	projectID   string
	clientEmail string
	keyID       string
	key         *rsa.PrivateKey
	tokenURI    string
	sendURL     string
	client      *http.Client
	now         func() time.Time

	// lock guards access and accessExp; a channel so that waiting for a
	// token request in flight honours the context.
	lock      chan struct{}
	access    string
	accessExp time.Time
}

// NewFCM returns an FCM provider configured by the service-account JSON key
// file at credentialsFile (as downloaded from the Firebase console).
func NewFCM(credentialsFile string, opts FCMOptions) (*FCM, error) {
	b, err := os.ReadFile(credentialsFile)
	if err != nil {
		return nil, errConfig("fcm", "%v", err)
	}
	return NewFCMFromJSON(b, opts)
}

// NewFCMFromJSON returns an FCM provider configured by the contents of a
// service-account JSON key file.
func NewFCMFromJSON(credentials []byte, opts FCMOptions) (*FCM, error) {
	var sa serviceAccount
	if err := json.Unmarshal(credentials, &sa); err != nil {
		return nil, errConfig("fcm", "service account: %v", err)
	}
	if sa.Type != "service_account" {
		return nil, errConfig("fcm", "service account: type is %q, not \"service_account\"", sa.Type)
	}
	if sa.ProjectID == "" || sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errConfig("fcm", "service account: project_id, client_email and private_key are required")
	}
	key, err := parseRSAKey([]byte(sa.PrivateKey))
	if err != nil {
		return nil, errConfig("fcm", "service account: private_key: %v", err)
	}
	if sa.TokenURI == "" {
		sa.TokenURI = GoogleTokenURI
	}
	if u, err := url.Parse(sa.TokenURI); err != nil || u.Host == "" {
		return nil, errConfig("fcm", "service account: token_uri %q is not a URL", sa.TokenURI)
	}
	endpoint := strings.TrimSuffix(opts.Endpoint, "/")
	if endpoint == "" {
		endpoint = FCMEndpoint
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Transport: newTransport(false), Timeout: defaultTimeout}
	}
	return &FCM{
		projectID:   sa.ProjectID,
		clientEmail: sa.ClientEmail,
		keyID:       sa.PrivateKeyID,
		key:         key,
		tokenURI:    sa.TokenURI,
		sendURL:     endpoint + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send",
		client:      client,
		now:         time.Now,
		lock:        make(chan struct{}, 1),
	}, nil
}

// parseRSAKey reads a PEM RSA private key, PKCS#8 (what Google issues) or
// PKCS#1.
func parseRSAKey(p []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an RSA key", k)
	}
	return rk, nil
}

// Name returns "fcm".
func (f *FCM) Name() string { return "fcm" }

// ProjectID returns the Firebase project the service account belongs to.
func (f *FCM) ProjectID() string { return f.projectID }

// accessToken returns a cached access token, or requests a new one when
// there is none or it expires within accessTokenMargin.
func (f *FCM) accessToken(ctx context.Context) (string, error) {
	select {
	case f.lock <- struct{}{}:
	case <-ctx.Done():
		return "", TransportError(ctx, "fcm", ctx.Err())
	}
	defer func() { <-f.lock }()
	now := f.now()
	if f.access != "" && now.Before(f.accessExp.Add(-accessTokenMargin)) {
		return f.access, nil
	}
	tok, exp, err := f.requestToken(ctx, now)
	if err != nil {
		return "", err
	}
	f.access, f.accessExp = tok, exp
	return tok, nil
}

// dropToken forgets the cached access token if it is still tok.
func (f *FCM) dropToken(ctx context.Context, tok string) {
	select {
	case f.lock <- struct{}{}:
	case <-ctx.Done():
		return
	}
	if f.access == tok {
		f.access = ""
	}
	<-f.lock
}

// assertion returns the signed JWT of the JWT-bearer grant.
func (f *FCM) assertion(now time.Time) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss":   f.clientEmail,
		"scope": FCMScope,
		"aud":   f.tokenURI,
		"iat":   now.Unix(),
		"exp":   now.Add(assertionLifetime).Unix(),
	})
	if f.keyID != "" {
		t.Header["kid"] = f.keyID
	}
	return t.SignedString(f.key)
}

// requestToken exchanges a new assertion for an access token.
func (f *FCM) requestToken(ctx context.Context, now time.Time) (string, time.Time, error) {
	a, err := f.assertion(now)
	if err != nil {
		return "", time.Time{}, &Error{Provider: "fcm", Message: "signing the OAuth assertion", Err: err}
	}
	form := url.Values{"grant_type": {jwtBearerGrant}, "assertion": {a}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.tokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", time.Time{}, &Error{Provider: "fcm", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", time.Time{}, TransportError(ctx, "fcm", fmt.Errorf("OAuth token request: %w", err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", time.Time{}, TransportError(ctx, "fcm", fmt.Errorf("OAuth token request: %w", err))
	}
	var tr struct {
		AccessToken      string `json:"access_token"`
		ExpiresIn        int64  `json:"expires_in"`
		TokenType        string `json:"token_type"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		e := StatusError("fcm", resp, now)
		e.Reason, e.Message = tr.Error, "OAuth token request"
		if tr.ErrorDescription != "" {
			e.Message += ": " + tr.ErrorDescription
		}
		return "", time.Time{}, e
	}
	if jerr != nil || tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return "", time.Time{}, &Error{Provider: "fcm", Status: resp.StatusCode, Message: "OAuth token request: malformed answer", Retryable: true, Err: jerr}
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", time.Time{}, &Error{Provider: "fcm", Status: resp.StatusCode, Message: "OAuth token request: token_type " + tr.TokenType}
	}
	return tr.AccessToken, now.Add(time.Duration(tr.ExpiresIn) * time.Second), nil
}

// fcmRequest is the body of messages:send.
type fcmRequest struct {
	Message fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token        string            `json:"token"`
	Notification *fcmNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data"`
	Android      fcmAndroid        `json:"android"`
	APNs         fcmAPNs           `json:"apns"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type fcmAndroid struct {
	CollapseKey  string                  `json:"collapse_key,omitempty"`
	Priority     string                  `json:"priority"`
	TTL          string                  `json:"ttl"`
	Notification *fcmAndroidNotification `json:"notification,omitempty"`
}

type fcmAndroidNotification struct {
	Tag               string `json:"tag,omitempty"`
	NotificationCount int    `json:"notification_count,omitempty"`
}

type fcmAPNs struct {
	Headers map[string]string `json:"headers"`
	Payload fcmAPNsPayload    `json:"payload"`
}

type fcmAPNsPayload struct {
	APS fcmAPS `json:"aps"`
}

type fcmAPS struct {
	Badge    int    `json:"badge"`
	Sound    string `json:"sound,omitempty"`
	ThreadID string `json:"thread-id,omitempty"`
}

// fcmMessageFor builds the v1 message of n for token. FCM copies the
// notification's title and body to the Android notification and to the
// APNs alert.
func fcmMessageFor(token string, n Notification, now time.Time) fcmRequest {
	data := make(map[string]string, len(n.Data)+2)
	for k, v := range n.Data {
		data[k] = v
	}
	data["conv"] = n.Conv
	data["seq"] = strconv.FormatInt(n.Seq, 10)
	ttl := n.ttl()
	key := n.collapseKey()
	m := fcmMessage{
		Token: token,
		Data:  data,
		Android: fcmAndroid{
			CollapseKey: key,
			Priority:    "HIGH",
			TTL:         strconv.FormatInt(int64(ttl/time.Second), 10) + "s",
		},
		APNs: fcmAPNs{
			Headers: map[string]string{
				"apns-priority":   "10",
				"apns-expiration": strconv.FormatInt(now.Add(ttl).Unix(), 10),
			},
			Payload: fcmAPNsPayload{APS: fcmAPS{Badge: n.Badge, ThreadID: n.Conv}},
		},
	}
	if key != "" {
		m.APNs.Headers["apns-collapse-id"] = apnsCollapseID(key)
	}
	if n.Title != "" || n.Body != "" {
		m.Notification = &fcmNotification{Title: n.Title, Body: n.Body}
		m.Android.Notification = &fcmAndroidNotification{Tag: key, NotificationCount: max(n.Badge, 0)}
		m.APNs.Payload.APS.Sound = "default"
	}
	return fcmRequest{Message: m}
}

// fcmError is the error answer of the v1 API (google.rpc.Status).
type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field       string `json:"field"`
				Description string `json:"description"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// Send sends n to the device with the FCM registration token.
func (f *FCM) Send(ctx context.Context, token string, n Notification) error {
	if token == "" {
		return &Error{Provider: "fcm", Message: "empty token", Err: ErrInvalidToken}
	}
	access, err := f.accessToken(ctx)
	if err != nil {
		return err
	}
	now := f.now()
	body, err := json.Marshal(fcmMessageFor(token, n, now))
	if err != nil {
		return &Error{Provider: "fcm", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sendURL, bytes.NewReader(body))
	if err != nil {
		return &Error{Provider: "fcm", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rb, e, err := exchange(ctx, f.client, "fcm", req, now)
	if e == nil {
		return err
	}
	var fe fcmError
	_ = json.Unmarshal(rb, &fe)
	e.Reason, e.Message = fe.Error.Status, fe.Error.Message
	namesToken := strings.Contains(strings.ToLower(fe.Error.Message), "registration token")
	for _, d := range fe.Error.Details {
		if d.ErrorCode != "" {
			e.Reason = d.ErrorCode
		}
		for _, v := range d.FieldViolations {
			if v.Field == "message.token" {
				namesToken = true
			}
		}
	}
	switch {
	case e.Reason == "UNREGISTERED",
		e.Status == http.StatusNotFound && fe.Error.Status == "NOT_FOUND",
		e.Status == http.StatusBadRequest && fe.Error.Status == "INVALID_ARGUMENT" && namesToken:
		e.Retryable = false
		e.Err = ErrInvalidToken
	case e.Status == http.StatusUnauthorized && e.Reason != "THIRD_PARTY_AUTH_ERROR":
		// The access token was refused (revoked, or expired early): get
		// a new one on the next attempt.
		f.dropToken(ctx, access)
		e.Retryable = true
	}
	if e.Message == "" && e.Reason == "" {
		e.Message = strings.TrimSpace(string(rb[:min(len(rb), 200)]))
	}
	return e
}

// apnsCollapseID returns key if it fits the 64 bytes APNs allows in
// apns-collapse-id, else the hex SHA-256 of key (64 bytes).
func apnsCollapseID(key string) string {
	if len(key) <= 64 {
		return key
	}
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}
