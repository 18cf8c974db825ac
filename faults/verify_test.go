package faults_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/internal/pgtest"
)

// load is the workload of the crash and outage tests: four users with six
// devices, two direct conversations and one group, and five senders, two of
// them in the same direct conversation and two in the group.
type load struct {
	t       *testing.T
	srv     *server
	db      string // the store's URL, which verify reads
	sc      scale
	rng     *rand.Rand
	devices []*device
	members map[string][]string // conv -> member users
	senders []*sender
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startLoad starts parleyd on database db, with the PARLEY_* variables of
// env, and, at the scale of the run (getScale), the load of the crash and
// outage tests on it.
func startLoad(t *testing.T, db string, env ...string) *load {
	t.Helper()
	sc := getScale(t)
	srv := startServer(t, db, env...)
	l := &load{t: t, srv: srv, db: db, sc: sc, rng: newRand(t), stop: make(chan struct{}), members: map[string][]string{
		"dm:alice:bob":  {"alice", "bob"},
		"dm:carol:dave": {"carol", "dave"},
		"g:crew":        {"alice", "bob", "carol", "dave"},
	}}
	dev := map[string]*device{}
	for _, id := range []string{"alice/a", "alice/b", "bob/a", "carol/a", "dave/a", "dave/b"} {
		user, _, _ := strings.Cut(id, "/")
		dev[id] = dialDevice(t, srv.mqtt, id, user)
		l.devices = append(l.devices, dev[id])
	}
	// Every device is subscribed before the group exists: it sees seq 1.
	createGroup(t, srv, "alice", "crew", "bob", "carol", "dave")
	for _, s := range []struct{ dev, topic, conv string }{
		{"alice/a", "im/send/u/bob", "dm:alice:bob"},
		{"bob/a", "im/send/u/alice", "dm:alice:bob"},
		{"carol/a", "im/send/g/crew", "g:crew"},
		{"dave/a", "im/send/g/crew", "g:crew"},
		{"dave/b", "im/send/u/carol", "dm:carol:dave"},
	} {
		l.senders = append(l.senders, &sender{dev: dev[s.dev], topic: s.topic, conv: s.conv,
			prefix: strings.ReplaceAll(s.dev, "/", "."), interval: sc.sendInterval, ackWait: 2 * time.Second})
	}
	l.start()
	return l
}

func (l *load) start() {
	for _, s := range l.senders {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); s.run(l.stop, 60*time.Second) }()
	}
}

// stopAndWait stops the senders and waits until each has its last message
// acknowledged (or gave up on it).
func (l *load) stopAndWait() {
	close(l.stop)
	l.wg.Wait()
}

// storeMsg is a row of the messages table.
type storeMsg struct {
	conv   string
	seq    int64
	id     string
	cid    string
	sender string
}

// readStore returns every stored message by conversation in seq order, and
// each conversation's last_seq, straight from PostgreSQL.
func readStore(t testing.TB, url string) (map[string][]storeMsg, map[string]int64) {
	t.Helper()
	ctx, conn, done := pgtest.Connect(t, url)
	defer done()
	rows, _ := conn.Query(ctx, `SELECT conv, seq, id, coalesce(cid, ''), sender FROM messages ORDER BY conv, seq`)
	msgs := map[string][]storeMsg{}
	var m storeMsg
	_, err := pgx.ForEachRow(rows, []any{&m.conv, &m.seq, &m.id, &m.cid, &m.sender}, func() error {
		msgs[m.conv] = append(msgs[m.conv], m)
		return nil
	})
	if err != nil {
		t.Fatalf("read messages: %v", err)
	}
	rows, _ = conn.Query(ctx, `SELECT id, last_seq FROM conversations`)
	last := map[string]int64{}
	var id string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error { last[id] = seq; return nil }); err != nil {
		t.Fatalf("read conversations: %v", err)
	}
	return msgs, last
}

// report is what a fault run did and found.
type report struct {
	kills, outages                    int
	sent, attempts, acked, unacked    int
	stored, storedUnacked             int
	raw, rawDups, surfaced, filled    int
	lost, dupSurfaced, reordered      []string
	conflicts, disagree, leaks, holes []string
	books                             []string // disagreeing with the senders' books
	gaps, reconnects, tokenLies       int
	errs                              map[string]int
	rss                               int64
}

func (r *report) log(t *testing.T, name string) {
	t.Helper()
	t.Logf("%s summary: kills=%d outages=%d sent=%d (publishes %d) acked=%d unacked=%d stored=%d (stored but never acked %d) "+
		"paho tokens done without PUBACK=%d delivered: raw=%d duplicates-raw=%d surfaced=%d filled-over-REST=%d gap-events=%d reconnects=%d error-events=%v parleyd-RSS=%.1fMiB | "+
		"lost=%d duplicated=%d reordered=%d conflicting=%d disagreeing-with-store=%d disagreeing-with-senders=%d leaked=%d seq-holes-in-store=%d",
		name, r.kills, r.outages, r.sent, r.attempts, r.acked, r.unacked, r.stored, r.storedUnacked,
		r.tokenLies, r.raw, r.rawDups, r.surfaced, r.filled, r.gaps, r.reconnects, r.errs, float64(r.rss)/(1<<20),
		len(r.lost), len(r.dupSurfaced), len(r.reordered), len(r.conflicts), len(r.disagree), len(r.books), len(r.leaks), len(r.holes))
	for _, c := range []struct {
		what string
		list []string
	}{{"lost", r.lost}, {"duplicated", r.dupSurfaced}, {"reordered", r.reordered}, {"conflicting", r.conflicts},
		{"disagreeing with the store", r.disagree}, {"disagreeing with the senders' books", r.books},
		{"leaked", r.leaks}, {"store seq hole", r.holes}} {
		if len(c.list) > 0 {
			t.Errorf("%d %s, first ones: %s", len(c.list), c.what, strings.Join(c.list[:min(len(c.list), 10)], "; "))
		}
	}
	if r.unacked > 0 {
		t.Errorf("%d sends never acknowledged after the faults ended", r.unacked)
	}
	// Every device stays within PARLEY_CATCHUP_LIMIT of each conversation
	// here: a gap event (messages left for REST) is a failure.
	if r.gaps > 0 || r.filled > 0 {
		t.Errorf("%d gap events, %d messages filled over REST: want none", r.gaps, r.filled)
	}
}

// check verifies the run against the store (see verify), records in the
// report what the test itself counted (note: kills, outages), logs it as name
// and fails the test when no message was acknowledged.
func (l *load) check(name string, note func(*report)) *report {
	l.t.Helper()
	r := l.verify()
	note(r)
	r.log(l.t, name)
	if r.acked == 0 {
		l.t.Error("no message was acknowledged: the load did not run")
	}
	return r
}

// verify stops the load, waits until every device has every stored message
// of its conversations, and checks the run against the store.
func (l *load) verify() *report {
	t := l.t
	t.Helper()
	l.stopAndWait()
	r := &report{errs: map[string]int{}, rss: l.srv.rss()}
	msgs, last := readStore(t, l.db)

	// The store: per conversation seqs 1..N, N = last_seq.
	for conv, ms := range msgs {
		for i, m := range ms {
			if m.seq != int64(i+1) {
				r.holes = append(r.holes, fmt.Sprintf("%s: seq %d at position %d", conv, m.seq, i+1))
				break
			}
		}
		if int64(len(ms)) != last[conv] {
			r.holes = append(r.holes, fmt.Sprintf("%s: %d messages, last_seq %d", conv, len(ms), last[conv]))
		}
		r.stored += len(ms)
	}

	// Quiescence: every device has (or was told to fetch) 1..last of each of
	// its conversations, and nothing arrived for a moment.
	isMember := func(conv, user string) bool { return slices.Contains(l.members[conv], user) }
	deadline := time.Now().Add(l.sc.quiesce)
	for {
		missing := map[string]int{}
		for _, d := range l.devices {
			for conv := range l.members {
				if isMember(conv, d.user) {
					if n := d.missing(conv, last[conv]); n > 0 {
						missing[d.id+" "+conv] = n
					}
				}
			}
		}
		quiet := true
		for _, d := range l.devices {
			quiet = quiet && d.idle() > time.Second
		}
		if len(missing) == 0 && quiet {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v, devices still miss messages: %v", l.sc.quiesce, missing)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range l.devices {
		r.filled += d.fillHoles(t, l.srv.http)
	}

	type cidKey struct{ conv, from, cid string }
	byCID := map[cidKey]storeMsg{}
	ids := map[string]map[int64]string{}
	for conv, ms := range msgs {
		ids[conv] = map[int64]string{}
		for _, m := range ms {
			ids[conv][m.seq] = m.id
			if m.cid != "" {
				byCID[cidKey{conv, m.sender, m.cid}] = m
			}
		}
	}
	// Every acknowledged cid is stored once and reached every member device.
	acked := map[cidKey]bool{}
	for _, s := range l.senders {
		s.mu.Lock()
		r.sent += s.sent
		r.attempts += s.attempts
		r.acked += len(s.acked)
		r.unacked += len(s.unacked)
		r.tokenLies += s.tokenLies
		for _, cid := range s.acked {
			k := cidKey{s.conv, s.dev.user, cid}
			acked[k] = true
			m, ok := byCID[k]
			if !ok {
				r.lost = append(r.lost, fmt.Sprintf("%s %s: acknowledged, not stored", s.conv, cid))
				continue
			}
			for _, d := range l.devices {
				if !isMember(s.conv, d.user) {
					continue
				}
				d.mu.Lock()
				_, got := d.conv(s.conv).ids[m.seq]
				d.mu.Unlock()
				if !got {
					r.lost = append(r.lost, fmt.Sprintf("%s %s (seq %d): not surfaced by %s", s.conv, cid, m.seq, d.id))
				}
			}
		}
		s.mu.Unlock()
	}
	for k := range byCID {
		if !acked[k] {
			r.storedUnacked++
		}
	}
	// What each device surfaced agrees with the store and belongs to it.
	for _, d := range l.devices {
		d.mu.Lock()
		r.raw += d.raw
		r.rawDups += d.rawDups
		r.surfaced += d.surfaced
		r.gaps += d.gaps
		r.reconnects += d.connects - 1
		if d.bad > 0 {
			t.Errorf("%s: %d deliveries that are not JSON objects", d.id, d.bad)
		}
		for code, n := range d.errs {
			r.errs[code] += n
		}
		for _, s := range d.reorders {
			r.reordered = append(r.reordered, d.id+": "+s)
		}
		for _, s := range d.conflicts {
			r.conflicts = append(r.conflicts, d.id+": "+s)
		}
		for _, s := range d.dupCIDs {
			r.dupSurfaced = append(r.dupSurfaced, d.id+": "+s)
		}
		convs := make([]string, 0, len(d.convs))
		for conv := range d.convs {
			convs = append(convs, conv)
		}
		sort.Strings(convs)
		for _, conv := range convs {
			if !isMember(conv, d.user) {
				r.leaks = append(r.leaks, fmt.Sprintf("%s surfaced %s", d.id, conv))
				continue
			}
			for seq, id := range d.convs[conv].ids {
				if want, ok := ids[conv][seq]; !ok || want != id {
					r.disagree = append(r.disagree, fmt.Sprintf("%s: %s seq %d id %s, store %q", d.id, conv, seq, id, want))
				}
			}
		}
		d.mu.Unlock()
	}
	// The senders' books, independently of the server's seqs and of the
	// store: every device of a member surfaced every acknowledged cid, with
	// the body it was sent with, each sender's messages in its send order,
	// and nothing that no sender sent.
	for _, d := range l.devices {
		for conv := range l.members {
			if !isMember(conv, d.user) {
				continue
			}
			problems, got := checkBooks(d, conv, l.senders, true)
			r.books = append(r.books, problems...)
			for s, cids := range got {
				s.mu.Lock()
				for _, cid := range s.acked {
					if !cids[cid] {
						r.lost = append(r.lost, fmt.Sprintf("%s %s: acknowledged, not surfaced with it by %s", s.conv, cid, d.id))
					}
				}
				s.mu.Unlock()
			}
		}
	}
	// Only an unavailable store may refuse a send here.
	for code, n := range r.errs {
		if code != "unavailable" {
			t.Errorf("%d error events %q", n, code)
		}
	}
	return r
}
