package push

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/internal/testkit"
)

const (
	fcmProject  = "parley-test-1a2b3"
	fcmEmail    = "firebase-adminsdk-x1y2z@parley-test-1a2b3.iam.gserviceaccount.com"
	fcmKeyID    = "0123456789abcdef0123456789abcdef01234567"
	fcmSendPath = "/v1/projects/" + fcmProject + "/messages:send"
)

// fcmServer implements, on one TLS HTTP/2 server, Google's OAuth 2.0 token
// endpoint for service accounts (JWT-bearer grant, RFC 7523, as described in
// "Using OAuth 2.0 for Server to Server Applications") and the FCM HTTP v1
// messages:send method, checking each request as documented.
type fcmServer struct {
	t     *testing.T
	clock *clock
	pub   *rsa.PublicKey
	url   string

	mu sync.Mutex
	// tokenFail, when not 0, is the status the token endpoint answers.
	tokenFail  int
	tokenCalls int
	issued     []string // access tokens, in order
	revoked    map[string]bool
	sends      []fcmSeen
}

type fcmSeen struct {
	bearer string
	body   []byte
}

func newFCMServer(t *testing.T) (*fcmServer, *http.Client) {
	s := &fcmServer{t: t, clock: newClock(), pub: &testRSAKey(t).PublicKey, revoked: map[string]bool{}}
	srv, client := startH2(t, s, false)
	s.url = srv.URL
	return s, client
}

func (s *fcmServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 {
		s.t.Errorf("%s %s over %s, want HTTP/2", r.Method, r.URL, r.Proto)
	}
	switch r.URL.Path {
	case "/token":
		s.token(w, r)
	case fcmSendPath:
		s.send(w, r)
	default:
		s.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// token serves POST /token: grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
// and assertion=JWT signed RS256 by the service account's key, with the
// claims iss, scope, aud, exp, iat.
func (s *fcmServer) token(w http.ResponseWriter, r *http.Request) {
	t := s.t
	s.mu.Lock()
	s.tokenCalls++
	fail := s.tokenFail
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		t.Errorf("token request method %s, want POST", r.Method)
	}
	if r.URL.RawQuery != "" {
		t.Errorf("token request query %q, want none", r.URL.RawQuery)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("token request Content-Type %q", ct)
	}
	b, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(b))
	if err != nil {
		t.Errorf("token request body %q: %v", b, err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range form {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"assertion", "grant_type"}) {
		t.Errorf("token request fields %v, want exactly assertion and grant_type", keys)
	}
	if g := form["grant_type"]; len(g) != 1 || g[0] != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Errorf("grant_type %q", g)
	}
	now := s.clock.Now()
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(form.Get("assertion"), claims, func(tok *jwt.Token) (any, error) {
		return s.pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithAudience(s.url+"/token"), jwt.WithIssuer(fcmEmail))
	if err != nil {
		t.Errorf("assertion: %v", err)
		writeJSON(w, 400, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
		return
	}
	if tok.Header["alg"] != "RS256" || tok.Header["typ"] != "JWT" || tok.Header["kid"] != fcmKeyID || len(tok.Header) != 3 {
		t.Errorf("assertion header %v, want alg RS256, typ JWT, kid %s", tok.Header, fcmKeyID)
	}
	want := jwt.MapClaims{
		"iss":   fcmEmail,
		"scope": "https://www.googleapis.com/auth/firebase.messaging",
		"aud":   s.url + "/token",
		"iat":   float64(now.Unix()),
		"exp":   float64(now.Unix() + 3600),
	}
	if fmt.Sprint(claims) != fmt.Sprint(want) {
		t.Errorf("assertion claims %v, want %v", claims, want)
	}
	if fail != 0 {
		w.Header().Set("Retry-After", "3")
		writeJSON(w, fail, `{"error":"invalid_grant","error_description":"Invalid grant: account not found"}`)
		return
	}
	s.mu.Lock()
	access := fmt.Sprintf("ya29.test-%d", len(s.issued)+1)
	s.issued = append(s.issued, access)
	s.mu.Unlock()
	writeJSON(w, 200, fmt.Sprintf(`{"access_token":%q,"expires_in":3599,"token_type":"Bearer"}`, access))
}

// fcmV1Message mirrors the documented fields of the v1 Message resource
// (projects.messages), so that a strict decode refuses any other field.
type fcmV1Message struct {
	Message struct {
		Name         string `json:"name"`
		Token        string `json:"token"`
		Topic        string `json:"topic"`
		Condition    string `json:"condition"`
		Notification *struct {
			Title string `json:"title"`
			Body  string `json:"body"`
			Image string `json:"image"`
		} `json:"notification"`
		Data    map[string]string `json:"data"`
		Android *struct {
			CollapseKey           string            `json:"collapse_key"`
			Priority              string            `json:"priority"`
			TTL                   string            `json:"ttl"`
			RestrictedPackageName string            `json:"restricted_package_name"`
			Data                  map[string]string `json:"data"`
			Notification          *struct {
				Title             string       `json:"title"`
				Body              string       `json:"body"`
				Icon              string       `json:"icon"`
				Color             string       `json:"color"`
				Sound             string       `json:"sound"`
				Tag               string       `json:"tag"`
				ClickAction       string       `json:"click_action"`
				ChannelID         string       `json:"channel_id"`
				NotificationCount *json.Number `json:"notification_count"`
			} `json:"notification"`
			DirectBootOK bool `json:"direct_boot_ok"`
		} `json:"android"`
		APNs *struct {
			Headers map[string]string `json:"headers"`
			Payload map[string]any    `json:"payload"`
		} `json:"apns"`
	} `json:"message"`
}

var (
	protoDuration = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`)
	intString     = regexp.MustCompile(`^[0-9]+$`)
)

// send serves POST /v1/projects/{project}/messages:send with a bearer
// access token and the JSON {"message": Message}.
func (s *fcmServer) send(w http.ResponseWriter, r *http.Request) {
	t := s.t
	if r.Method != http.MethodPost {
		t.Errorf("send method %s, want POST", r.Method)
	}
	if r.URL.RawQuery != "" {
		t.Errorf("send query %q, want none", r.URL.RawQuery)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		t.Errorf("send Content-Type %q, want application/json", r.Header.Get("Content-Type"))
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	known := slices.Contains(s.issued, bearer) && !s.revoked[bearer]
	s.mu.Unlock()
	if !ok || !known {
		t.Errorf("send Authorization %q: not a valid access token", r.Header.Get("Authorization"))
		writeJSON(w, 401, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var m fcmV1Message
	if err := decodeStrict(b, &m); err != nil {
		t.Errorf("send body %s: %v", b, err)
		writeJSON(w, 400, `{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}`)
		return
	}
	msg := m.Message
	if msg.Token == "" || msg.Topic != "" || msg.Condition != "" || msg.Name != "" {
		t.Errorf("send message targets token %q topic %q condition %q name %q: want exactly a token", msg.Token, msg.Topic, msg.Condition, msg.Name)
	}
	for k := range msg.Data {
		if k == "from" || k == "message_type" || strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm") {
			t.Errorf("reserved data key %q", k)
		}
	}
	if a := msg.Android; a != nil {
		if a.Priority != "" && a.Priority != "NORMAL" && a.Priority != "HIGH" {
			t.Errorf("android.priority %q", a.Priority)
		}
		if a.TTL != "" && !protoDuration.MatchString(a.TTL) {
			t.Errorf("android.ttl %q is not a Duration", a.TTL)
		}
		if n := a.Notification; n != nil && n.NotificationCount != nil {
			if _, err := n.NotificationCount.Int64(); err != nil {
				t.Errorf("android.notification.notification_count %v is not an integer", *n.NotificationCount)
			}
		}
	}
	if a := msg.APNs; a != nil {
		for k, v := range a.Headers {
			switch k {
			case "apns-priority":
				if v != "5" && v != "10" {
					t.Errorf("apns-priority %q", v)
				}
			case "apns-expiration":
				if !intString.MatchString(v) {
					t.Errorf("apns-expiration %q", v)
				}
			case "apns-collapse-id":
				if len(v) > 64 {
					t.Errorf("apns-collapse-id of %d bytes", len(v))
				}
			default:
				t.Errorf("unexpected APNs header %q", k)
			}
		}
		if aps, ok := a.Payload["aps"].(map[string]any); !ok {
			t.Errorf("apns.payload without an aps dictionary: %v", a.Payload)
		} else if badge, ok := aps["badge"]; ok {
			if n, ok := badge.(json.Number); !ok || !intString.MatchString(n.String()) {
				t.Errorf("aps.badge %v is not an integer", badge)
			}
		}
	}
	s.mu.Lock()
	s.sends = append(s.sends, fcmSeen{bearer, b})
	s.mu.Unlock()

	const fcmErr = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	switch msg.Token {
	case "tok-unregistered":
		writeJSON(w, 404, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"`+fcmErr+`","errorCode":"UNREGISTERED"}]}}`)
	case "tok-notfound":
		writeJSON(w, 404, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}`)
	case "tok-malformed":
		writeJSON(w, 400, `{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"`+fcmErr+`","errorCode":"INVALID_ARGUMENT"},{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"The registration token is not a valid FCM registration token"}]}]}}`)
	case "tok-badpayload":
		writeJSON(w, 400, `{"error":{"code":400,"message":"Invalid value at 'message.data[0].value'","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value","description":"Invalid value"}]}]}}`)
	case "tok-mismatch":
		writeJSON(w, 403, `{"error":{"code":403,"message":"SenderId mismatch","status":"PERMISSION_DENIED","details":[{"@type":"`+fcmErr+`","errorCode":"SENDER_ID_MISMATCH"}]}}`)
	case "tok-quota":
		w.Header().Set("Retry-After", "30")
		writeJSON(w, 429, `{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"`+fcmErr+`","errorCode":"QUOTA_EXCEEDED"}]}}`)
	case "tok-unavailable":
		w.Header().Set("Retry-After", "7")
		writeJSON(w, 503, `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE","details":[{"@type":"`+fcmErr+`","errorCode":"UNAVAILABLE"}]}}`)
	case "tok-internal":
		writeJSON(w, 500, `{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL","details":[{"@type":"`+fcmErr+`","errorCode":"INTERNAL"}]}}`)
	case "tok-gateway":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(502)
		io.WriteString(w, "<html>Bad Gateway</html>")
	case "tok-revoke":
		s.mu.Lock()
		s.revoked[bearer] = true
		s.mu.Unlock()
		writeJSON(w, 401, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`)
	default:
		writeJSON(w, 200, `{"name":"projects/`+fcmProject+`/messages/0:1500415314455276%31bd1c9631bd1c96"}`)
	}
}

func (s *fcmServer) stats() (tokenCalls int, sends []fcmSeen) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenCalls, slices.Clone(s.sends)
}

// credentials writes a service-account JSON key file whose token_uri is
// the fake server's token endpoint.
func (s *fcmServer) credentials(t *testing.T) string {
	t.Helper()
	sa := map[string]string{
		"type":                        "service_account",
		"project_id":                  fcmProject,
		"private_key_id":              fcmKeyID,
		"private_key":                 string(pkcs8PEM(t, testRSAKey(t))),
		"client_email":                fcmEmail,
		"client_id":                   "109876543210987654321",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.url + "/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(fcmEmail),
		"universe_domain":             "googleapis.com",
	}
	b, err := json.MarshalIndent(sa, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return testkit.WriteFile(t, "service-account.json", b)
}

func newTestFCM(t *testing.T) (*FCM, *fcmServer) {
	t.Helper()
	s, client := newFCMServer(t)
	f, err := NewFCM(s.credentials(t), FCMOptions{Endpoint: s.url + "/", HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	f.now = s.clock.Now
	return f, s
}

func TestFCMSend(t *testing.T) {
	f, s := newTestFCM(t)
	if f.Name() != "fcm" || f.ProjectID() != fcmProject {
		t.Errorf("Name %q ProjectID %q", f.Name(), f.ProjectID())
	}
	n := Notification{
		Title: "Alice",
		Body:  "see you at 8?",
		Conv:  "dm:alice:bob",
		Seq:   42,
		Badge: 3,
		Data:  map[string]string{"sender": "alice", "conv": "ignored"},
	}
	if err := f.Send(context.Background(), "fcm-token-1", n); err != nil {
		t.Fatal(err)
	}
	exp := s.clock.Now().Add(24 * time.Hour).Unix()
	_, sends := s.stats()
	if len(sends) != 1 {
		t.Fatalf("%d sends, want 1", len(sends))
	}
	if sends[0].bearer != "ya29.test-1" {
		t.Errorf("bearer %q", sends[0].bearer)
	}
	jsonEqual(t, sends[0].body, fmt.Sprintf(`{"message":{
		"token":"fcm-token-1",
		"notification":{"title":"Alice","body":"see you at 8?"},
		"data":{"conv":"dm:alice:bob","seq":"42","sender":"alice"},
		"android":{"collapse_key":"dm:alice:bob","priority":"HIGH","ttl":"86400s",
			"notification":{"tag":"dm:alice:bob","notification_count":3}},
		"apns":{"headers":{"apns-priority":"10","apns-expiration":"%d","apns-collapse-id":"dm:alice:bob"},
			"payload":{"aps":{"badge":3,"sound":"default","thread-id":"dm:alice:bob"}}}
	}}`, exp))

	// No preview, a collapse key of its own, a TTL, a cleared badge.
	n = Notification{Title: "Bob", Conv: "g:team", Seq: 7, CollapseKey: "k1", TTL: 90 * time.Second}
	if err := f.Send(context.Background(), "fcm-token-2", n); err != nil {
		t.Fatal(err)
	}
	_, sends = s.stats()
	jsonEqual(t, sends[1].body, fmt.Sprintf(`{"message":{
		"token":"fcm-token-2",
		"notification":{"title":"Bob"},
		"data":{"conv":"g:team","seq":"7"},
		"android":{"collapse_key":"k1","priority":"HIGH","ttl":"90s","notification":{"tag":"k1"}},
		"apns":{"headers":{"apns-priority":"10","apns-expiration":"%d","apns-collapse-id":"k1"},
			"payload":{"aps":{"badge":0,"sound":"default","thread-id":"g:team"}}}
	}}`, s.clock.Now().Add(90*time.Second).Unix()))

	// Neither title nor body: a data message that updates the badge.
	if err := f.Send(context.Background(), "fcm-token-3", Notification{Conv: "c", Seq: 1, Badge: 1}); err != nil {
		t.Fatal(err)
	}
	_, sends = s.stats()
	jsonEqual(t, sends[2].body, fmt.Sprintf(`{"message":{
		"token":"fcm-token-3",
		"data":{"conv":"c","seq":"1"},
		"android":{"collapse_key":"c","priority":"HIGH","ttl":"86400s"},
		"apns":{"headers":{"apns-priority":"10","apns-expiration":"%d","apns-collapse-id":"c"},
			"payload":{"aps":{"badge":1,"thread-id":"c"}}}
	}}`, exp))
}

func TestFCMErrors(t *testing.T) {
	f, s := newTestFCM(t)
	checkSendErrors(t, f, []sendError{
		{"tok-unregistered", true, false, 404, "UNREGISTERED", 0},
		{"tok-notfound", true, false, 404, "NOT_FOUND", 0},
		{"tok-malformed", true, false, 400, "INVALID_ARGUMENT", 0},
		{"tok-badpayload", false, false, 400, "INVALID_ARGUMENT", 0},
		{"tok-mismatch", false, false, 403, "SENDER_ID_MISMATCH", 0},
		{"tok-quota", false, true, 429, "QUOTA_EXCEEDED", 30 * time.Second},
		{"tok-unavailable", false, true, 503, "UNAVAILABLE", 7 * time.Second},
		{"tok-internal", false, true, 500, "INTERNAL", 0},
		{"tok-gateway", false, true, 502, "", 0},
	})
	if calls, _ := s.stats(); calls != 1 {
		t.Errorf("%d token requests, want 1 (errors keep the access token)", calls)
	}
	err := f.Send(context.Background(), "", Notification{})
	if !errors.Is(err, ErrInvalidToken) {
		t.Errorf("empty token: %v", err)
	}
}

func TestFCMAccessTokenCached(t *testing.T) {
	f, s := newTestFCM(t)
	ctx := context.Background()
	send := func(wantBearer string) {
		t.Helper()
		if err := f.Send(ctx, "fcm-token", Notification{Title: "t", Conv: "c"}); err != nil {
			t.Fatal(err)
		}
		_, sends := s.stats()
		if got := sends[len(sends)-1].bearer; got != wantBearer {
			t.Errorf("bearer %q, want %q", got, wantBearer)
		}
	}
	sendConcurrently(t, f, "fcm-token", 8)
	send("ya29.test-1")
	if calls, _ := s.stats(); calls != 1 {
		t.Fatalf("%d token requests for 9 sends, want 1", calls)
	}
	// The token lasts 3599 s; it is replaced 5 minutes before.
	s.clock.Advance(54 * time.Minute)
	send("ya29.test-1")
	s.clock.Advance(time.Minute)
	send("ya29.test-2")
	send("ya29.test-2")
	if calls, _ := s.stats(); calls != 2 {
		t.Errorf("%d token requests, want 2", calls)
	}
}

func TestFCMUnauthenticatedRenewsToken(t *testing.T) {
	f, s := newTestFCM(t)
	err := f.Send(context.Background(), "tok-revoke", Notification{Title: "t"})
	if !Retryable(err) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked access token: %v, want retryable", err)
	}
	if err := f.Send(context.Background(), "fcm-token", Notification{Title: "t"}); err != nil {
		t.Fatal(err)
	}
	calls, sends := s.stats()
	if calls != 2 || sends[len(sends)-1].bearer != "ya29.test-2" {
		t.Errorf("%d token requests, last bearer %q: want a new access token", calls, sends[len(sends)-1].bearer)
	}
}

func TestFCMTokenEndpointErrors(t *testing.T) {
	f, s := newTestFCM(t)
	for _, c := range []struct {
		status    int
		retryable bool
	}{{400, false}, {401, false}, {503, true}, {500, true}} {
		s.mu.Lock()
		s.tokenFail = c.status
		s.mu.Unlock()
		err := f.Send(context.Background(), "fcm-token", Notification{Title: "t"})
		var e *Error
		if !errors.As(err, &e) || e.Status != c.status || e.Retryable != c.retryable || errors.Is(err, ErrInvalidToken) {
			t.Errorf("token endpoint %d: %v, want retryable %v", c.status, err, c.retryable)
		} else if e.Reason != "invalid_grant" || !strings.Contains(e.Message, "account not found") {
			t.Errorf("token endpoint %d: reason %q message %q", c.status, e.Reason, e.Message)
		}
	}
	if _, sends := s.stats(); len(sends) != 0 {
		t.Errorf("%d sends without an access token", len(sends))
	}
	s.mu.Lock()
	s.tokenFail = 0
	s.mu.Unlock()
	if err := f.Send(context.Background(), "fcm-token", Notification{Title: "t"}); err != nil {
		t.Fatal(err)
	}
}

func TestFCMTransportErrors(t *testing.T) {
	f, _ := newTestFCM(t)
	s, client := newFCMServer(t)
	unreachable, err := NewFCM(s.credentials(t), FCMOptions{Endpoint: "https://127.0.0.1:1", HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	unreachable.now = s.clock.Now
	checkTransportErrors(t, f, unreachable, "fcm-token")
}

func TestNewFCMConfig(t *testing.T) {
	dir := t.TempDir()
	rsaPEM := string(pkcs8PEM(t, testRSAKey(t)))
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSAKey(t))}))
	ecPEM := string(pkcs8PEM(t, testP256Key(t)))
	good := func(mod func(map[string]string)) []byte {
		m := map[string]string{"type": "service_account", "project_id": "p", "private_key": rsaPEM,
			"client_email": "e@p.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"}
		mod(m)
		b, _ := json.Marshal(m)
		return b
	}
	for name, c := range map[string]struct {
		json []byte
		ok   bool
	}{
		"valid":        {good(func(map[string]string) {}), true},
		"pkcs1":        {good(func(m map[string]string) { m["private_key"] = pkcs1 }), true},
		"no token_uri": {good(func(m map[string]string) { delete(m, "token_uri") }), true},
		"not json":     {[]byte("{"), false},
		"type":         {good(func(m map[string]string) { m["type"] = "authorized_user" }), false},
		"no project":   {good(func(m map[string]string) { delete(m, "project_id") }), false},
		"no email":     {good(func(m map[string]string) { delete(m, "client_email") }), false},
		"no key":       {good(func(m map[string]string) { delete(m, "private_key") }), false},
		"bad pem":      {good(func(m map[string]string) { m["private_key"] = "garbage" }), false},
		"ec key":       {good(func(m map[string]string) { m["private_key"] = ecPEM }), false},
		"bad uri":      {good(func(m map[string]string) { m["token_uri"] = "/token" }), false},
	} {
		f, err := NewFCM(testkit.WriteFile(t, strings.ReplaceAll(name, " ", "_")+".json", c.json), FCMOptions{})
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", name, err, c.ok)
		}
		if err == nil {
			if f.sendURL != "https://fcm.googleapis.com/v1/projects/p/messages:send" || f.client == nil {
				t.Errorf("%s: send URL %q", name, f.sendURL)
			}
			if name == "no token_uri" && f.tokenURI != GoogleTokenURI {
				t.Errorf("default token_uri %q", f.tokenURI)
			}
		}
	}
	if _, err := NewFCM(filepath.Join(dir, "missing.json"), FCMOptions{}); err == nil {
		t.Error("a missing file is accepted")
	}
}
