package broker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
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
// the events it acknowledged; while down it answers 503.
type receiver struct {
	t      testing.TB
	secret []byte
	srv    *httptest.Server
	mu     sync.Mutex
	down   bool
	got    []hookEvent // acknowledged, in arrival order
	tries  int
}

func newReceiver(t testing.TB, secret []byte) *receiver {
	r := &receiver{t: t, secret: secret}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	sig := req.Header.Get(signature.Header)
	if err := signature.Verify(r.secret, sig, body, time.Minute, time.Now()); err != nil {
		r.t.Errorf("bad signature %q for %s", sig, body)
		w.WriteHeader(400)
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
