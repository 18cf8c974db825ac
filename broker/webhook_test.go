package broker_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/moderation"
	"github.com/parley-im/parley/internal/signature"
	"github.com/parley-im/parley/internal/testkit"
)

// hookEvent is an event as a webhook receiver reads it.
type hookEvent struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	TS   string          `json:"ts"`
	Conv string          `json:"conv"`
	Seq  int64           `json:"seq"`
	Data json.RawMessage `json:"data"`
}

// receiver is a webhook endpoint that verifies every signature and records
// the events it acknowledged; while down it answers 503. It refuses the
// next refusePush push.notify events with pushStatus.
type receiver struct {
	t      testing.TB
	secret []byte
	srv    *httptest.Server
	mu     sync.Mutex
	down   bool
	got    []hookEvent // acknowledged, in arrival order
	tries  int

	refusePush, pushStatus int
	pushTries              int // push.notify requests, refused or not
}

func newReceiver(t testing.TB, secret []byte) *receiver {
	r := &receiver{t: t, secret: secret}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// readSigned reads a request of the broker (a webhook, a moderation
// request): a JSON POST signed with secret. It returns the body, or false
// after answering 401 to a request without a valid signature, which fails
// the test.
func readSigned(t testing.TB, secret []byte, w http.ResponseWriter, req *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, false
	}
	sig := req.Header.Get(signature.Header)
	if err := signature.Verify(secret, sig, body, time.Minute, time.Now()); err != nil {
		t.Errorf("request %s: %v (signature %q)", body, err, sig)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return nil, false
	}
	if req.Method != "POST" || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s: %s with Content-Type %q", body, req.Method, req.Header.Get("Content-Type"))
	}
	return body, true
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, ok := readSigned(r.t, r.secret, w, req)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if r.down {
		w.WriteHeader(503)
		return
	}
	var ev hookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.Type == "" || ev.TS == "" {
		r.t.Errorf("event %s: %v", body, err)
	}
	if ev.Type == "push.notify" {
		r.pushTries++
		if r.refusePush > 0 {
			r.refusePush--
			w.WriteHeader(r.pushStatus)
			return
		}
	}
	r.got = append(r.got, ev)
	w.WriteHeader(204)
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// events returns what was acknowledged so far.
func (r *receiver) events() []hookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookEvent(nil), r.got...)
}

// waitFor waits until n events were acknowledged and returns them.
func (r *receiver) waitFor(n int) []hookEvent {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := r.events()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("webhook got %d events within 20s, want %d: %+v", len(evs), n, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOrder checks that per conversation the message events came in seq
// order, each id once, and returns the types in arrival order.
func checkOrder(t testing.TB, evs []hookEvent) []string {
	t.Helper()
	last := map[string]int64{}
	ids := map[string]bool{}
	var types []string
	for _, ev := range evs {
		if ids[ev.ID] {
			t.Errorf("event %s delivered twice: %+v", ev.ID, ev)
		}
		ids[ev.ID] = true
		types = append(types, ev.Type)
		if ev.Type == "read" {
			continue
		}
		if ev.Seq != last[ev.Conv]+1 {
			t.Errorf("%s: seq %d after %d", ev.Conv, ev.Seq, last[ev.Conv])
		}
		last[ev.Conv] = ev.Seq
	}
	return types
}

// TestWebhooks: every stored change reaches a webhook, signed, in seq order
// per conversation; a receiver that is down gets everything once it is
// back.
func TestWebhooks(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		secret := []byte("webhook secret")
		rcv := newReceiver(t, secret)
		e := setup(t, s, func(o *broker.Options) {
			o.WebhookURLs, o.WebhookSecret = []string{rcv.srv.URL + "/hook"}, secret
			o.OutboxPoll, o.OutboxMinBackoff = 20*time.Millisecond, 20*time.Millisecond
		})
		alice := e.dial("alice", "alice", dialOpts{})
		alice.post("im/send/u/bob", `{"cid":"a1","body":"hi"}`)
		alice.post("im/send/u/bob", `{"op":"edit","cid":"a2","target":1,"body":"hi!"}`)
		alice.post("im/send/u/bob", `{"op":"react","cid":"a3","target":1,"emoji":"👍"}`)
		if st := e.do("POST", "/v1/groups", "alice", `{"id":"team","name":"Team","members":["bob"]}`, nil); st != 201 {
			t.Fatalf("create group: %d", st)
		}
		if st := e.do("POST", "/v1/conversations/dm:alice:bob/read", "bob", `{"seq":3}`, nil); st != 200 {
			t.Fatalf("read: %d", st)
		}
		evs := rcv.waitFor(5)
		types := checkOrder(t, evs)
		if got := strings.Join(types, " "); got != "message.created message.edited reaction.added group.created read" {
			t.Fatalf("event types %q", got)
		}
		var data struct {
			From string
			Body string
		}
		if err := json.Unmarshal(evs[0].Data, &data); err != nil || data.From != "alice" {
			t.Fatalf("message.created data %s", evs[0].Data)
		}

		// Down for a while: retried, then everything in order.
		rcv.setDown(true)
		for i := range 20 {
			alice.post("im/send/u/bob", fmt.Sprintf(`{"cid":"b%d","body":%d}`, i, i))
		}
		alice.post("im/send/u/bob", `{"op":"delete","cid":"a4","target":1}`)
		for {
			rcv.mu.Lock()
			tries := rcv.tries
			rcv.mu.Unlock()
			if tries > 8 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		rcv.setDown(false)
		evs = rcv.waitFor(5 + 21)
		types = checkOrder(t, evs)
		if types[len(types)-1] != "message.deleted" || len(evs) != 26 {
			t.Fatalf("after the outage: %d events, last %q", len(evs), types[len(types)-1])
		}
	})
}

// fakeFCM is a local FCM: an OAuth token endpoint and messages:send, which
// answers 404 UNREGISTERED for the tokens in dead.
type fakeFCM struct {
	srv  *httptest.Server
	mu   sync.Mutex
	sent []map[string]any // the "message" objects sent
	dead map[string]bool
}

func newFakeFCM(t *testing.T) (*fakeFCM, string) {
	f := &fakeFCM{dead: map[string]bool{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"at-1","token_type":"Bearer","expires_in":3600}`)
		case r.URL.Path == "/v1/projects/parley-test/messages:send":
			if r.Header.Get("Authorization") != "Bearer at-1" {
				w.WriteHeader(401)
				return
			}
			var req struct{ Message map[string]any }
			json.NewDecoder(r.Body).Decode(&req)
			tok, _ := req.Message["token"].(string)
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.dead[tok] {
				w.WriteHeader(404)
				io.WriteString(w, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`)
				return
			}
			f.sent = append(f.sent, req.Message)
			io.WriteString(w, `{"name":"projects/parley-test/messages/1"}`)
		default:
			w.WriteHeader(404)
		}
	}))
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	creds, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "parley-test",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "parley@parley-test.iam.gserviceaccount.com", "token_uri": f.srv.URL + "/token"})
	return f, testkit.WriteFile(t, "fcm.json", creds)
}

func (f *fakeFCM) messages() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.sent...)
}

// pushNotifications returns the push.notify events a receiver got.
func pushNotifications(r *receiver) []hookEvent {
	var out []hookEvent
	for _, ev := range r.events() {
		if ev.Type == "push.notify" {
			out = append(out, ev)
		}
	}
	return out
}

// failPush makes r refuse the next n push.notify events with status, and
// returns how many push.notify requests it had so far.
func (r *receiver) failPush(n, status int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refusePush, r.pushStatus = n, status
	return r.pushTries
}

// pushTried returns how many push.notify requests r had.
func (r *receiver) pushTried() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushTries
}

// TestPushWebhookRetry: the webhook push provider tries a push.notify that
// its receiver refused (503) once more, and only once, and at most once a
// batch; a refusal that is
// final (400) is not tried again.
func TestPushWebhookRetry(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		secret := []byte("s")
		rcv := newReceiver(t, secret)
		e := setup(t, s, func(o *broker.Options) {
			o.WebhookURLs, o.WebhookSecret = []string{rcv.srv.URL}, secret
			o.PushDelay, o.OutboxPoll = 200*time.Millisecond, 20*time.Millisecond
		})
		notified := func(user string) int {
			n := 0
			for _, ev := range pushNotifications(rcv) {
				if strings.Contains(string(ev.Data), `"user":"`+user+`"`) {
					n++
				}
			}
			return n
		}
		for _, tc := range []struct {
			user           string
			refuse, status int
			tries, sent    int
		}{
			{user: "bob", refuse: 1, status: 503, tries: 2, sent: 1},   // retried, delivered
			{user: "carol", refuse: 2, status: 503, tries: 2, sent: 0}, // retried once, given up
			{user: "dave", refuse: 1, status: 400, tries: 1, sent: 0},  // final: no retry
		} {
			if st := e.do("PUT", "/v1/devices/gw/push", tc.user, `{"provider":"webhook","token":"`+tc.user+`-gw"}`, nil); st != 200 {
				t.Fatalf("register %s: %d", tc.user, st)
			}
			before := rcv.failPush(tc.refuse, tc.status)
			if code := e.do("POST", "/v1/users/"+tc.user+"/messages", "alice", `{"body":"hi"}`, nil); code != 201 {
				t.Fatalf("send to %s: %d", tc.user, code)
			}
			testkit.Eventually(t, 10*time.Second, func() bool { return rcv.pushTried()-before >= tc.tries })
			time.Sleep(time.Second) // room for a wrong further try (500 ms after the last)
			if tries, sent := rcv.pushTried()-before, notified(tc.user); tries != tc.tries || sent != tc.sent {
				t.Errorf("%s (%d refused with %d): %d tries, %d delivered; want %d, %d", tc.user, tc.refuse, tc.status, tries, sent, tc.tries, tc.sent)
			}
		}
		// A receiver that keeps failing holds a batch back by one wait
		// only: of the three notifications of one group message, the first
		// is tried twice, the others once.
		if st := e.do("POST", "/v1/groups", "alice", `{"id":"crew","name":"Crew","members":["erin","frank","gina"]}`, nil); st != 201 {
			t.Fatalf("create group: %d", st)
		}
		for _, u := range []string{"erin", "frank", "gina"} {
			if st := e.do("PUT", "/v1/devices/gw/push", u, `{"provider":"webhook","token":"`+u+`-gw"}`, nil); st != 200 {
				t.Fatalf("register %s: %d", u, st)
			}
		}
		before := rcv.failPush(100, 503)
		if code := e.do("POST", "/v1/conversations/g:crew/messages", "alice", `{"body":"hi all"}`, nil); code != 201 {
			t.Fatalf("send to the group: %d", code)
		}
		testkit.Eventually(t, 10*time.Second, func() bool { return rcv.pushTried()-before >= 4 })
		time.Sleep(time.Second)
		if tries := rcv.pushTried() - before; tries != 4 {
			t.Errorf("3 notifications of one batch to a failing receiver: %d tries, want 4 (one retry a batch)", tries)
		}
		rcv.failPush(0, 0)
	})
}

// TestPush: a message to a user with no connected device notifies its
// registered devices once per burst, with the badge of its unread count; a
// connected device that acknowledges in time, a muted conversation and the
// sender's own devices get nothing; an invalid token is removed.
func TestPush(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		secret := []byte("s")
		rcv := newReceiver(t, secret)
		fcm, creds := newFakeFCM(t)
		e := setup(t, s, func(o *broker.Options) {
			o.WebhookURLs, o.WebhookSecret = []string{rcv.srv.URL}, secret
			o.FCMCredentialsFile, o.FCMEndpoint, o.PushHTTPClient = creds, fcm.srv.URL, fcm.srv.Client()
			o.PushDelay = time.Second
			o.OutboxPoll = 20 * time.Millisecond
		})
		for _, r := range []struct{ user, device, body string }{
			{"bob", "phone", `{"provider":"fcm","token":"bob-phone"}`},
			{"bob", "gw", `{"provider":"webhook","token":"bob-gw"}`},
			{"carol", "phone", `{"provider":"fcm","token":"carol-dead"}`},
			{"alice", "phone", `{"provider":"fcm","token":"alice-phone"}`},
		} {
			if st := e.do("PUT", "/v1/devices/"+r.device+"/push", r.user, r.body, nil); st != 200 {
				t.Fatalf("register %s/%s: %d", r.user, r.device, st)
			}
		}
		var ae apiErr
		if st := e.do("PUT", "/v1/devices/x/push", "bob", `{"provider":"apns","token":"t"}`, &ae); st != 400 {
			t.Fatalf("unconfigured provider: %d %+v", st, ae)
		}
		fcm.mu.Lock()
		fcm.dead["carol-dead"] = true
		fcm.mu.Unlock()

		// A burst of three to bob, offline: one notification per device.
		alice := e.dial("alice/desk", "alice", dialOpts{})
		for i := range 3 {
			alice.post("im/send/u/bob", `{"cid":"a`+string(rune('0'+i))+`","body":"hello bob"}`)
		}
		testkit.Eventually(t, 10*time.Second, func() bool { return len(fcm.messages()) >= 1 && len(pushNotifications(rcv)) >= 1 })
		time.Sleep(1500 * time.Millisecond) // room for a wrong second notification
		msgs := fcm.messages()
		if len(msgs) != 1 || msgs[0]["token"] != "bob-phone" {
			t.Fatalf("FCM got %v, want one notification to bob-phone", msgs)
		}
		apns, _ := msgs[0]["apns"].(map[string]any)
		if !strings.Contains(mustJSON(apns), `"badge":3`) {
			t.Fatalf("badge: %v, want 3", mustJSON(msgs[0]))
		}
		notes := pushNotifications(rcv)
		if len(notes) != 1 || !strings.Contains(string(notes[0].Data), `"token":"bob-gw"`) || !strings.Contains(string(notes[0].Data), `"title":"alice"`) {
			t.Fatalf("push.notify events %+v", notes)
		}

		// bob online and acknowledging: no notification.
		bob := e.dial("bob/laptop", "bob", dialOpts{})
		alice.post("im/send/u/bob", `{"cid":"b1","body":"are you there"}`)
		bob.nextMessage()
		time.Sleep(2500 * time.Millisecond) // past the push delay
		if n := len(fcm.messages()); n != 1 {
			t.Fatalf("%d FCM notifications after a message bob acknowledged, want still 1", n)
		}
		bob.close()

		// Muted: nothing. Unmuted: again.
		if st := e.do("PUT", "/v1/conversations/dm:alice:bob/settings", "bob", `{"muted_until":"2099-01-01T00:00:00Z"}`, nil); st != 200 {
			t.Fatalf("mute: %d", st)
		}
		alice.post("im/send/u/bob", `{"cid":"c1","body":"muted"}`)
		time.Sleep(2500 * time.Millisecond) // past the push delay
		if n := len(fcm.messages()); n != 1 {
			t.Fatalf("%d FCM notifications after a muted message, want still 1", n)
		}

		// An invalid token is removed: carol's.
		alice.post("im/send/u/carol", `{"cid":"d1","body":"hi carol"}`)
		testkit.Eventually(t, 10*time.Second, func() bool {
			body, _ := e.get("/metrics")
			return strings.Contains(body, `parley_push_notifications_total{provider="fcm",result="invalid_token"} 1`)
		})
		if got := fcm.messages(); len(got) != 1 {
			t.Fatalf("FCM sent %v", got)
		}
		// The sender's own devices never get a notification of their message.
		for _, m := range fcm.messages() {
			if m["token"] == "alice-phone" {
				t.Fatalf("alice was notified of her own message")
			}
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const modSecret = "moderation-test-secret"

// modServer is a moderation service: it verifies every request's signature
// (a request without a valid one fails the test), records the requests and
// answers with decide.
type modServer struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []moderation.Request
	decide func(w http.ResponseWriter, r *http.Request, m moderation.Request)
}

func newModServer(t *testing.T, decide func(w http.ResponseWriter, r *http.Request, m moderation.Request)) *modServer {
	ms := &modServer{decide: decide}
	ms.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := readSigned(t, []byte(modSecret), w, r)
		if !ok {
			return
		}
		var m moderation.Request
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("moderation request %s: %v", b, err)
		}
		ms.mu.Lock()
		ms.reqs = append(ms.reqs, m)
		ms.mu.Unlock()
		ms.decide(w, r, m)
	}))
	t.Cleanup(ms.Close)
	return ms
}

func (ms *modServer) requests() []moderation.Request {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]moderation.Request(nil), ms.reqs...)
}

// withModeration sets the moderation options for ms.
func withModeration(ms *modServer, timeout time.Duration, failClosed bool) func(*broker.Options) {
	return func(o *broker.Options) {
		o.ModerationURL, o.ModerationTimeout, o.ModerationFailClosed = ms.URL, timeout, failClosed
		o.WebhookSecret = []byte(modSecret)
	}
}

// byWords moderates by the body's text: "spam" is rejected, "darn" replaced
// by {"text":"****"}, the rest allowed.
func byWords(w http.ResponseWriter, _ *http.Request, m moderation.Request) {
	switch body := string(m.Body); {
	case strings.Contains(body, "spam"):
		io.WriteString(w, `{"action":"reject","reason":"no spam here"}`)
	case strings.Contains(body, "darn"):
		io.WriteString(w, `{"action":"replace","body":{"text":"****"}}`)
	default:
		io.WriteString(w, `{"action":"allow"}`)
	}
}

// moderationChecks reads parley_moderation_checks_total{result} from /metrics.
func moderationChecks(t *testing.T, e *env, result string) string {
	t.Helper()
	body, _ := e.get("/metrics")
	m := regexp.MustCompile(`(?m)^parley_moderation_checks_total\{result="` + result + `"\} (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no parley_moderation_checks_total{result=%q} in /metrics", result)
	}
	return m[1]
}

// historyBodies returns the bodies of conv's messages as alice sees them, by
// seq.
func historyBodies(t *testing.T, e *env, conv string) map[int64]string {
	t.Helper()
	var page messagesOut
	if code := e.do("GET", "/v1/conversations/"+conv+"/messages?after=0", "alice", "", &page); code != 200 {
		t.Fatalf("history of %s: %d", conv, code)
	}
	out := map[int64]string{}
	for _, m := range page.Messages {
		b, _ := json.Marshal(m.Body)
		out[m.Seq] = string(b)
	}
	return out
}

// TestModeration: reject (error event code rejected over MQTT 3.1.1, reason
// code 0x87 over MQTT 5, 422 over REST; nothing stored or delivered),
// replace (stored, delivered and in history with the new body) and allow,
// for sends, edits and ephemeral sends; every request is signed and carries
// what is about to be stored.
func TestModeration(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		ms := newModServer(t, byWords)
		e := setup(t, s, withModeration(ms, 5*time.Second, false))
		bob := e.dial("bob/phone", "bob", dialOpts{v5: true})
		alice := e.dial("alice/laptop", "alice", dialOpts{})
		alice5 := e.dial("alice/phone", "alice", dialOpts{v5: true, noSub: true})

		// Allow: stored as sent; the request is what will be stored.
		alice.send("im/send/u/bob", 1, `{"cid":"a1","body":{"text":"hello"},"mentions":["bob"]}`)
		m1 := bob.nextKind("message")
		if m1.Seq != 1 || string(m1.Body) != `{"text":"hello"}` {
			t.Fatalf("allowed message = %+v", m1)
		}
		if ev := alice.nextKind("message"); ev.Seq != 1 { // the echo
			t.Fatalf("alice's echo = %+v", ev)
		}
		r := ms.requests()[0]
		if r.ID != m1.ID || r.Type != "message.created" || r.Conv != "dm:alice:bob" || r.From != "alice" || r.CID != "a1" ||
			r.MsgType != "text" || string(r.Body) != `{"text":"hello"}` || len(r.Mentions) != 1 || r.Mentions[0] != "bob" || r.TS.IsZero() {
			t.Fatalf("moderation request = %+v, message %+v", r, m1)
		}

		// Reject over MQTT 3.1.1: an error event, nothing stored.
		alice.send("im/send/u/bob", 1, `{"cid":"a2","body":{"text":"buy spam"}}`)
		if ev := alice.nextKind("error"); ev.Code != "rejected" || ev.CID != "a2" || !strings.Contains(ev.Message, "no spam here") {
			t.Fatalf("v3 error event = %+v", ev)
		}
		// Over MQTT 5: reason code 0x87 and the reason string.
		if code, reason := alice5.publishV5("im/send/u/bob", 1, `{"cid":"a3","body":"spam again"}`); code != 0x87 ||
			reason != "rejected: the message was rejected by moderation: no spam here" {
			t.Fatalf("v5 PUBACK = %#x %q", code, reason)
		}
		// Over REST: 422 rejected.
		var ae apiErr
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"cid":"a4","body":"spam by REST"}`, &ae); code != 422 || ae.Error.Code != "rejected" {
			t.Fatalf("REST reject = %d %+v", code, ae)
		}

		// Replace: stored and delivered with the new body.
		alice.send("im/send/u/bob", 1, `{"cid":"a5","body":{"text":"darn it"}}`)
		for _, c := range []*client{bob, alice} {
			if ev := c.nextKind("message"); ev.Seq != 2 || ev.CID != "a5" || string(ev.Body) != `{"text":"****"}` {
				t.Fatalf("%s: replaced message = %+v", c.id, ev)
			}
		}
		var m messageOut
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"cid":"a6","body":"darn REST"}`, &m); code != 201 || m.Seq != 3 || fmt.Sprint(m.Body) != "map[text:****]" {
			t.Fatalf("REST replace = %d %+v", code, m)
		}
		bob.nextKind("message")

		// Edits: rejected, then replaced.
		alice.send("im/send/u/bob", 1, `{"op":"edit","cid":"e1","target":1,"body":"spam edit"}`)
		if ev := alice.nextKind("error"); ev.Code != "rejected" || ev.CID != "e1" {
			t.Fatalf("edit reject = %+v", ev)
		}
		var ae2 apiErr
		if code := e.do("PATCH", "/v1/conversations/dm:alice:bob/messages/1", "alice", `{"cid":"e2","body":"spam edit"}`, &ae2); code != 422 || ae2.Error.Code != "rejected" {
			t.Fatalf("REST edit reject = %d %+v", code, ae2)
		}
		alice.send("im/send/u/bob", 1, `{"op":"edit","cid":"e3","target":1,"body":"darn edit"}`)
		if ev := bob.nextKind("message"); ev.Type != "message.edited" || ev.Target != 1 || string(ev.Body) != `{"text":"****"}` {
			t.Fatalf("replaced edit = %+v", ev)
		}
		reqs := ms.requests()
		if last := reqs[len(reqs)-1]; last.Type != "message.edited" || last.Target != 1 || last.CID != "e3" || string(last.Body) != `"darn edit"` {
			t.Fatalf("edit request = %+v", last)
		}

		// Ephemeral sends are moderated too. (bob writes back first: typing
		// reaches contacts only.)
		bob.send("im/send/u/alice", 1, `{"cid":"b1","body":"hi"}`)
		alice.send("im/send/u/bob", 1, `{"cid":"x1","ephemeral":true,"body":"spam typing"}`)
		if ev := alice.nextKind("error"); ev.Code != "rejected" || ev.CID != "x1" {
			t.Fatalf("ephemeral reject = %+v", ev)
		}
		alice.send("im/send/u/bob", 1, `{"cid":"x2","ephemeral":true,"body":"darn typing"}`)
		if ev := bob.nextKind("ephemeral"); ev.CID != "x2" || string(ev.Body) != `{"text":"****"}` {
			t.Fatalf("replaced ephemeral = %+v", ev)
		}
		if last := ms.requests()[len(ms.requests())-1]; !last.Ephemeral || last.CID != "x2" {
			t.Fatalf("ephemeral request = %+v", last)
		}

		// History: the rejected sends are not there; the replaced ones carry
		// the new body, the edited message its replaced edit.
		got := historyBodies(t, e, "dm:alice:bob")
		want := map[int64]string{1: `{"text":"****"}`, 2: `{"text":"****"}`, 3: `{"text":"****"}`}
		for seq, body := range want {
			if got[seq] != body {
				t.Fatalf("history = %v, want %v at %d", got, body, seq)
			}
		}
		for seq := range got {
			var msg messageOut
			e.do("GET", fmt.Sprintf("/v1/conversations/dm:alice:bob/messages/%d", seq), "alice", "", &msg)
			if msg.CID == "a2" || msg.CID == "a3" || msg.CID == "a4" {
				t.Fatalf("rejected message stored: %+v", msg)
			}
		}
		bob.quiet(200 * time.Millisecond)
		if n := moderationChecks(t, e, "reject"); n != "6" {
			t.Fatalf("rejects counted = %s, want 6", n)
		}
		if n := moderationChecks(t, e, "replace"); n != "4" {
			t.Fatalf("replaces counted = %s, want 4", n)
		}
	})
}

// TestModerationFailure: a moderation service that does not answer in time,
// answers 5xx or answers garbage: failing open the message is stored as
// sent; failing closed it is refused with unavailable (MQTT 5 0x80, REST
// 503) and nothing is stored.
func TestModerationFailure(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		decide := func(w http.ResponseWriter, r *http.Request, m moderation.Request) {
			switch string(m.Body) {
			case `"slow"`:
				<-r.Context().Done() // until the broker gives up
			case `"5xx"`:
				http.Error(w, "down", http.StatusBadGateway)
			case `"garbage"`:
				io.WriteString(w, `{"action":"maybe"}`)
			case `"replace-null"`:
				io.WriteString(w, `{"action":"replace","body":null}`)
			default:
				io.WriteString(w, `{"action":"allow"}`)
			}
		}
		bodies := []string{"slow", "5xx", "garbage", "replace-null"}
		t.Run("open", func(t *testing.T) {
			ms := newModServer(t, decide)
			e := setup(t, s, withModeration(ms, 300*time.Millisecond, false))
			bob := e.dial("bob/phone", "bob", dialOpts{})
			alice := e.dial("alice/laptop", "alice", dialOpts{noSub: true})
			for i, body := range bodies {
				alice.send("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"o%d","body":%q}`, i, body))
				if ev := bob.nextKind("message"); ev.Seq != int64(i+1) || string(ev.Body) != fmt.Sprintf("%q", body) {
					t.Fatalf("failed open %s: %+v", body, ev)
				}
			}
			var m messageOut
			if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"cid":"o9","body":"slow"}`, &m); code != 201 || m.Body != "slow" {
				t.Fatalf("REST failed open = %d %+v", code, m)
			}
			if n := moderationChecks(t, e, "failed_open"); n != "5" {
				t.Fatalf("failed_open = %s, want 5", n)
			}
		})
		t.Run("closed", func(t *testing.T) {
			ms := newModServer(t, decide)
			e := setup(t, s, withModeration(ms, 300*time.Millisecond, true))
			alice := e.dial("alice/phone", "alice", dialOpts{v5: true})
			for i, body := range bodies {
				code, reason := alice.publishV5("im/send/u/carol", 1, fmt.Sprintf(`{"cid":"c%d","body":%q}`, i, body))
				if code != 0x80 || !strings.HasPrefix(reason, "unavailable: ") {
					t.Fatalf("failed closed %s: PUBACK %#x %q", body, code, reason)
				}
				if ev := alice.nextKind("error"); ev.Code != "unavailable" || ev.CID != fmt.Sprintf("c%d", i) {
					t.Fatalf("failed closed %s: error event %+v", body, ev)
				}
			}
			var ae apiErr
			if code := e.do("POST", "/v1/users/carol/messages", "alice", `{"cid":"c9","body":"slow"}`, &ae); code != 503 || ae.Error.Code != "unavailable" {
				t.Fatalf("REST failed closed = %d %+v", code, ae)
			}
			// Nothing was stored; the same message is stored once the
			// service answers.
			alice.send("im/send/u/carol", 1, `{"cid":"c0","body":"fine now"}`)
			if ev := alice.nextKind("message"); ev.Seq != 1 || ev.CID != "c0" {
				t.Fatalf("after the failures: %+v", ev)
			}
			if n := moderationChecks(t, e, "failed_closed"); n != "5" {
				t.Fatalf("failed_closed = %s, want 5", n)
			}
		})
	})
}

// TestModerationConcurrent: moderation calls do not serialize senders. The
// service holds alice's request until bob's message, sent after it, has
// reached carol; and it answers a burst of senders only once all of their
// requests are in flight at once.
func TestModerationConcurrent(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		aliceArrived := make(chan struct{})
		release := make(chan struct{})
		const burst = 8
		var barrier sync.WaitGroup
		barrier.Add(burst)
		allIn := make(chan struct{})
		go func() { barrier.Wait(); close(allIn) }()
		ms := newModServer(t, func(w http.ResponseWriter, r *http.Request, m moderation.Request) {
			switch {
			case m.From == "alice":
				close(aliceArrived)
				select {
				case <-release:
				case <-r.Context().Done():
				}
			case strings.HasPrefix(m.From, "burst"):
				barrier.Done()
				select {
				case <-allIn:
				case <-time.After(20 * time.Second):
					t.Errorf("%s: the burst's requests were never all in flight at once", m.From)
				}
			}
			io.WriteString(w, `{"action":"allow"}`)
		})
		e := setup(t, s, withModeration(ms, 30*time.Second, false))
		carol := e.dial("carol", "carol", dialOpts{})
		alice := e.dial("alice", "alice", dialOpts{noSub: true})
		bob := e.dial("bob", "bob", dialOpts{v5: true, noSub: true})

		aliceDone := make(chan error, 1)
		go func() {
			tok := alice.v3.Publish("im/send/u/carol", 1, false, `{"cid":"a","body":"from alice"}`)
			tok.WaitTimeout(20 * time.Second)
			aliceDone <- tok.Error()
		}()
		select {
		case <-aliceArrived:
		case <-time.After(10 * time.Second):
			t.Fatal("alice's moderation request never arrived")
		}
		bob.send("im/send/u/carol", 1, `{"cid":"b","body":"from bob"}`)
		if ev := carol.nextKind("message"); ev.From != "bob" {
			t.Fatalf("carol's first message = %+v, want bob's while alice's waits", ev)
		}
		close(release)
		if ev := carol.nextKind("message"); ev.From != "alice" {
			t.Fatalf("carol's second message = %+v, want alice's", ev)
		}
		if err := <-aliceDone; err != nil {
			t.Fatalf("alice's publish: %v", err)
		}

		// A burst of senders over REST, all moderated at once.
		var wg sync.WaitGroup
		codes := make([]int, burst)
		for i := 0; i < burst; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				codes[i] = e.do("POST", "/v1/users/carol/messages", fmt.Sprintf("burst%d", i), `{"body":"hi"}`, nil)
			}(i)
		}
		wg.Wait()
		for i, code := range codes {
			if code != 201 {
				t.Fatalf("burst%d: %d", i, code)
			}
		}
	})
}

// TestAttachmentsInEvents: a message's attachments are in every read path:
// a conversation's last message (GET /v1/conversations, /v1/sync), the
// webhook event, and the push notification of an image carries a signed
// URL of its thumbnail that works without a token. Without
// Options.PublicURL the signed URLs (push image, upload and file url) are
// relative; with it they are absolute, on its base.
func TestAttachmentsInEvents(t *testing.T) {
	for _, tc := range []struct{ name, public, base string }{
		{"Relative", "", ""},
		{"PublicURL", "https://chat.example.com/parley/", "https://chat.example.com/parley"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testkit.ForEachStore(t, func(t *testing.T, s history.Store) { testAttachmentsInEvents(t, s, tc.public, tc.base) })
		})
	}
}

// testAttachmentsInEvents runs TestAttachmentsInEvents with PublicURL
// public, whose signed URLs start with base.
func testAttachmentsInEvents(t *testing.T, s history.Store, public, base string) {
	secret := []byte("s")
	rcv := newReceiver(t, secret)
	e := setup(t, s, func(o *broker.Options) {
		o.WebhookURLs, o.WebhookSecret = []string{rcv.srv.URL}, secret
		o.BlobDir = t.TempDir()
		o.PushDelay, o.OutboxPoll = 500*time.Millisecond, 20*time.Millisecond
		o.PublicURL = public
	})
	if st := e.do("PUT", "/v1/devices/gw/push", "bob", `{"provider":"webhook","token":"bob-gw"}`, nil); st != 200 {
		t.Fatalf("register: %d", st)
	}
	code, up, _ := e.postFile("alice", "image/png", pngImage(t, 640, 480))
	if code != 201 || up.Thumbnail == "" || !strings.HasPrefix(up.URL, base+"/v1/files/"+up.ID+"?exp=") {
		t.Fatalf("upload = %d %+v, want a url on %q", code, up, base)
	}
	var signed struct{ URL string }
	if code := e.do("POST", "/v1/files/"+up.ID+"/url", "alice", "", &signed); code != 200 || !strings.HasPrefix(signed.URL, base+"/v1/files/"+up.ID+"?exp=") {
		t.Fatalf("POST /v1/files/{id}/url = %d %+v, want a url on %q", code, signed, base)
	}
	var sent messageOut
	if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"look","attachments":[{"id":"`+up.ID+`","name":"cat.png"}]}`, &sent); code != 201 {
		t.Fatalf("send = %d", code)
	}
	type file struct{ ID, Name, Thumbnail string }
	check := func(where string, files []file) {
		t.Helper()
		if len(files) != 1 || files[0].ID != up.ID || files[0].Name != "cat.png" || files[0].Thumbnail != up.Thumbnail {
			t.Errorf("%s: attachments %+v, want %s cat.png", where, files, up.ID)
		}
	}

	var convs struct {
		Conversations []struct {
			ID          string
			LastMessage struct{ Attachments []file } `json:"last_message"`
		}
	}
	e.do("GET", "/v1/conversations", "bob", "", &convs)
	if len(convs.Conversations) != 1 {
		t.Fatalf("conversations %+v", convs)
	}
	check("GET /v1/conversations last_message", convs.Conversations[0].LastMessage.Attachments)
	convs.Conversations = nil
	e.do("GET", "/v1/sync", "bob", "", &convs)
	if len(convs.Conversations) != 1 {
		t.Fatalf("sync %+v", convs)
	}
	check("GET /v1/sync last_message", convs.Conversations[0].LastMessage.Attachments)

	testkit.Eventually(t, 10*time.Second, func() bool { return len(pushNotifications(rcv)) >= 1 })
	for _, ev := range rcv.events() {
		if ev.Type == "message.created" {
			var d struct{ Attachments []file }
			mustUnmarshal(t, ev.Data, &d)
			check("webhook message.created", d.Attachments)
		}
	}
	var note struct{ Image string }
	mustUnmarshal(t, pushNotifications(rcv)[0].Data, &note)
	if !strings.HasPrefix(note.Image, base+"/v1/files/"+up.Thumbnail+"?exp=") {
		t.Fatalf("push.notify image %q, want a signed URL of %s on %q", note.Image, up.Thumbnail, base)
	}
	resp, body := e.getFile(strings.TrimPrefix(note.Image, base), "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || len(body) == 0 {
		t.Fatalf("GET the preview without a token = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
