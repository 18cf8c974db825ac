package broker_test

import (
	"encoding/json"
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
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if err := signature.Verify([]byte(modSecret), r.Header.Get(signature.Header), b, time.Minute, time.Now()); err != nil {
			t.Errorf("moderation request %s: %v (header %q)", b, err, r.Header.Get(signature.Header))
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("moderation request: %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
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
