package broker_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

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
	file := filepath.Join(t.TempDir(), "fcm.json")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, file
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
