package faults_test

import (
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history/sqlite"
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

	msgs, _ := readStore(t, l.db)
	h.check(msgs, srv.kills)
}

// check waits until every stored message reached the webhook (a membership
// message or a send), once at least, and checks that per conversation the
// first arrivals came in seq order.
func (h *hookLog) check(msgs map[string][]storeMsg, kills int) {
	t := h.t
	t.Helper()
	// Every stored message reaches the webhook (a membership message or a
	// send), once at least.
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
	t.Logf("webhook: %d stored messages, %d deliveries, %d redeliveries (same id) across %d kills", total, len(h.got), dups, kills)
}

// TestWebhookCrashSQLite: the same on the embedded store: parleyd killed
// (SIGKILL) under a steady load, the webhook still gets an event for every
// stored message, per conversation in seq order.
func TestWebhookCrashSQLite(t *testing.T) {
	secret := "hook-secret"
	h := &hookLog{t: t, secret: []byte(secret), count: map[string]int{}}
	rcv := httptest.NewServer(h)
	defer rcv.Close()
	dir := t.TempDir()
	srv := startServer(t, "", "PARLEY_DATA_DIR="+dir, "PARLEY_WEBHOOK_URL="+rcv.URL, "PARLEY_WEBHOOK_SECRET="+secret)
	sc := getScale(t)
	rng := newRand(t)
	alice := dialDevice(t, srv.mqtt, "alice/a", "alice")
	carol := dialDevice(t, srv.mqtt, "carol/a", "carol")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []*sender{
		{dev: alice, topic: "im/send/u/bob", conv: "dm:alice:bob", prefix: "alice.a", interval: sc.sendInterval, ackWait: 2 * time.Second},
		{dev: carol, topic: "im/send/u/dave", conv: "dm:carol:dave", prefix: "carol.a", interval: sc.sendInterval, ackWait: 2 * time.Second},
	} {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(stop, 60*time.Second) }()
	}
	for range sc.kills {
		time.Sleep(between(rng, sc.killGapMin, sc.killGapMax))
		srv.kill()
		time.Sleep(between(rng, 0, 500*time.Millisecond))
		srv.start()
	}
	time.Sleep(sc.tail)
	close(stop)
	wg.Wait()

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(10000)&_pragma=query_only(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT conv, seq, id FROM messages ORDER BY conv, seq`)
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string][]storeMsg{}
	for rows.Next() {
		var m storeMsg
		if err := rows.Scan(&m.conv, &m.seq, &m.id); err != nil {
			t.Fatal(err)
		}
		msgs[m.conv] = append(msgs[m.conv], m)
	}
	rows.Close()
	if len(msgs["dm:alice:bob"]) == 0 || len(msgs["dm:carol:dave"]) == 0 {
		t.Fatalf("nothing stored: %v", msgs)
	}
	h.check(msgs, srv.kills)
}
