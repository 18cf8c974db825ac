package faults_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/outbox"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/signature"
)

// hookLog is a webhook receiver that verifies every signature and records
// every event it acknowledged, redeliveries included; while down it answers
// 503.
type hookLog struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	down   bool
	got    []outbox.Event
	count  map[string]int
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sig := r.Header.Get(signature.Header)
	if err := signature.Verify(h.secret, sig, body, time.Minute, time.Now()); err != nil {
		h.t.Errorf("bad webhook signature %q", sig)
		w.WriteHeader(400)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		w.WriteHeader(503)
		return
	}
	var ev outbox.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		h.t.Errorf("webhook event %s: %v", body, err)
	}
	h.got = append(h.got, ev)
	h.count[ev.ID]++
	w.WriteHeader(200)
}

func (h *hookLog) setDown(down bool) {
	h.mu.Lock()
	h.down = down
	h.mu.Unlock()
}

// TestWebhookCrash: under the crash test's load, with parleyd killed (SIGKILL)
// at random moments and the receiver down for a while, the webhook receives
// an event for every stored message, per conversation first in seq order;
// redeliveries (after a kill or a failed answer) carry the same id.
func TestWebhookCrash(t *testing.T) {
	secret := "hook-secret"
	h := &hookLog{t: t, secret: []byte(secret), count: map[string]int{}}
	rcv := httptest.NewServer(h)
	defer rcv.Close()
	l := startLoad(t, pgtest.DB(t), "PARLEY_WEBHOOK_URL="+rcv.URL, "PARLEY_WEBHOOK_SECRET="+secret)
	srv, sc := l.srv, l.sc
	for k := 1; k <= sc.kills; k++ {
		time.Sleep(between(l.rng, sc.killGapMin, sc.killGapMax))
		if k == 2 {
			h.setDown(true) // the receiver goes down across a kill
		}
		srv.kill()
		time.Sleep(between(l.rng, 0, 500*time.Millisecond))
		srv.start()
		if k == 2 {
			time.Sleep(between(l.rng, 0, time.Second))
			h.setDown(false)
		}
	}
	time.Sleep(sc.tail)
	l.check("webhook-crash", func(r *report) { r.kills = srv.kills })

	// Every stored message reaches the webhook (a membership message or a
	// send), once at least.
	msgs, _ := readStore(t, l.db)
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		missing := 0
		for _, ms := range msgs {
			for _, m := range ms {
				if h.count[m.id] == 0 {
					missing++
				}
			}
		}
		h.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stored messages never reached the webhook", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	first := map[string]int64{} // conv -> last seq seen for the first time
	seen := map[string]bool{}
	dups := 0
	for _, ev := range h.got {
		if seen[ev.ID] {
			dups++
			continue
		}
		seen[ev.ID] = true
		if ev.Type == outbox.TypeRead {
			continue
		}
		if ev.Seq != first[ev.Conv]+1 {
			t.Errorf("%s: seq %d first arrived after %d", ev.Conv, ev.Seq, first[ev.Conv])
		}
		first[ev.Conv] = ev.Seq
	}
	total := 0
	for _, ms := range msgs {
		total += len(ms)
	}
	t.Logf("webhook: %d stored messages, %d deliveries, %d redeliveries (same id) across %d kills", total, len(h.got), dups, srv.kills)
}
