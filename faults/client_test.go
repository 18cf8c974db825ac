package faults_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/parley-im/parley/internal/testkit"
)

// surfacedMsg is what a device surfaced under one seq: sender, cid and body
// as delivered (or read over REST for a gap).
type surfacedMsg struct {
	from, cid, body string
}

// convLog is what one device surfaced of one conversation.
type convLog struct {
	ids   map[int64]string // seq -> server id, each seq surfaced once
	msgs  map[int64]surfacedMsg
	max   int64            // highest seq surfaced or skipped by a gap event
	holes [][2]int64       // seq ranges announced by gap events, filled over REST
	cids  map[string]int64 // from + "\x00" + cid -> seq
}

func (c *convLog) inHole(seq int64) bool {
	for _, h := range c.holes {
		if seq >= h[0] && seq <= h[1] {
			return true
		}
	}
	return false
}

// device is one MQTT device as an application on the Parley protocol sees
// it: paho v3.1.1, persistent session, auto-reconnect, re-subscribing to its
// inbox on every connect, and deduplicating deliveries by (conv, seq).
type device struct {
	id   string
	user string
	c    pahov3.Client

	// delay makes the handler slow (a slow consumer).
	delay time.Duration
	// observe, when set, sees every event after it was recorded.
	observe func(testkit.Event, time.Time)

	acks *ackStore

	mu         sync.Mutex
	subscribed chan struct{} // closed after the first SUBACK
	subOnce    sync.Once
	connects   int
	convs      map[string]*convLog
	raw        int      // message deliveries, duplicates included
	rawDups    int      // deliveries of a (conv, seq) already surfaced
	surfaced   int      // distinct (conv, seq)
	reorders   []string // a new seq that did not follow the previous one
	conflicts  []string // a (conv, seq) delivered with two different ids
	dupCIDs    []string // one (from, cid) surfaced under two seqs
	errs       map[string]int
	gaps       int
	bad        int // undecodable payloads
	lastEvent  time.Time
}

// dialDevice connects a device of user to the broker at addr and waits
// until it has subscribed to its inbox.
func dialDevice(t testing.TB, addr, id, user string, mod ...func(*device)) *device {
	t.Helper()
	d := &device{id: id, user: user, subscribed: make(chan struct{}), convs: map[string]*convLog{}, errs: map[string]int{},
		acks: &ackStore{Store: pahov3.NewMemoryStore(), pending: map[string]string{}, acked: map[string]chan struct{}{}}}
	for _, f := range mod {
		f(d)
	}
	inbox := "im/inbox/" + user
	o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(testkit.Token(t, user)).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).
		SetConnectTimeout(3 * time.Second).SetKeepAlive(10 * time.Second).SetPingTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).SetOrderMatters(true).SetStore(d.acks).
		SetDefaultPublishHandler(d.handle).
		SetOnConnectHandler(func(c pahov3.Client) {
			d.mu.Lock()
			d.connects++
			d.mu.Unlock()
			// Re-subscribe on every connect: a restarted broker has no
			// session. Retry while this connection lasts.
			for c.IsConnectionOpen() {
				tok := c.Subscribe(inbox, 1, d.handle)
				if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
					if st, ok := tok.(*pahov3.SubscribeToken); ok && st.Result()[inbox] == 1 {
						d.subOnce.Do(func() { close(d.subscribed) })
						return
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	d.c = pahov3.NewClient(o)
	d.c.Connect() // with ConnectRetry the token completes once connected
	select {
	case <-d.subscribed:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not subscribed to %s within 30s", id, inbox)
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d
}

func (d *device) handle(_ pahov3.Client, m pahov3.Message) {
	if d.delay > 0 {
		time.Sleep(d.delay)
	}
	var ev testkit.Event
	if err := json.Unmarshal(m.Payload(), &ev); err != nil {
		d.mu.Lock()
		d.bad++
		d.mu.Unlock()
		return
	}
	now := time.Now()
	d.record(ev, now)
	if d.observe != nil {
		d.observe(ev, now)
	}
}

func (d *device) conv(id string) *convLog {
	c := d.convs[id]
	if c == nil {
		c = &convLog{ids: map[int64]string{}, msgs: map[int64]surfacedMsg{}, cids: map[string]int64{}}
		d.convs[id] = c
	}
	return c
}

// record applies the client-side rules: dedup by (conv, seq), expect seqs in
// order, remember gaps to fill over REST.
func (d *device) record(ev testkit.Event, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastEvent = now
	switch ev.Kind {
	case "message":
		d.raw++
		c := d.conv(ev.Conv)
		m := surfacedMsg{from: ev.From, cid: ev.CID, body: string(ev.Body)}
		if id, ok := c.ids[ev.Seq]; ok {
			d.rawDups++
			if id != ev.ID || c.msgs[ev.Seq] != m {
				d.conflicts = append(d.conflicts, fmt.Sprintf("%s seq %d: %s %+v then %s %+v", ev.Conv, ev.Seq, id, c.msgs[ev.Seq], ev.ID, m))
			}
			return
		}
		if ev.Seq != c.max+1 && !c.inHole(ev.Seq) {
			d.reorders = append(d.reorders, fmt.Sprintf("%s seq %d after %d", ev.Conv, ev.Seq, c.max))
		}
		c.ids[ev.Seq] = ev.ID
		c.msgs[ev.Seq] = m
		d.surfaced++
		c.max = max(c.max, ev.Seq)
		if ev.CID != "" {
			key := ev.From + "\x00" + ev.CID
			if seq, ok := c.cids[key]; ok && seq != ev.Seq {
				d.dupCIDs = append(d.dupCIDs, fmt.Sprintf("%s cid %s from %s at seqs %d and %d", ev.Conv, ev.CID, ev.From, seq, ev.Seq))
			} else {
				c.cids[key] = ev.Seq
			}
		}
	case "gap":
		d.gaps++
		c := d.conv(ev.Conv)
		if ev.Before-1 > c.max {
			c.holes = append(c.holes, [2]int64{max(c.max, ev.After) + 1, ev.Before - 1})
			c.max = ev.Before - 1
		}
	case "error":
		d.errs[ev.Code]++
	}
}

// missing returns how many of seqs 1..last of conv the device has neither
// surfaced nor been told to fetch over REST.
func (d *device) missing(conv string, last int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.convs[conv]
	n := 0
	for s := int64(1); s <= last; s++ {
		if c == nil {
			n++
			continue
		}
		if _, ok := c.ids[s]; !ok && !c.inHole(s) {
			n++
		}
	}
	return n
}

// fillHoles fetches the seqs announced by gap events over REST, as an
// application would, and records them as surfaced. It returns how many.
func (d *device) fillHoles(t testing.TB, httpAddr string) int {
	t.Helper()
	d.mu.Lock()
	type hole struct {
		conv     string
		from, to int64
	}
	var holes []hole
	for conv, c := range d.convs {
		for _, h := range c.holes {
			holes = append(holes, hole{conv, h[0], h[1]})
		}
	}
	d.mu.Unlock()
	n := 0
	for _, h := range holes {
		after := h.from - 1
		for after < h.to {
			var page struct {
				Messages []testkit.Event `json:"messages"`
			}
			code := getJSON(t, fmt.Sprintf("http://%s/v1/conversations/%s/messages?after=%d&limit=200", httpAddr, h.conv, after), d.user, &page)
			if code != 200 || len(page.Messages) == 0 {
				t.Fatalf("%s: history of %s after %d: status %d, %d messages", d.id, h.conv, after, code, len(page.Messages))
			}
			before := after
			d.mu.Lock()
			c := d.conv(h.conv)
			for _, m := range page.Messages {
				if m.Seq > h.to {
					break
				}
				sm := surfacedMsg{from: m.From, cid: m.CID, body: string(m.Body)}
				if id, ok := c.ids[m.Seq]; ok {
					if id != m.ID || c.msgs[m.Seq] != sm {
						d.conflicts = append(d.conflicts, fmt.Sprintf("%s seq %d: %s %+v, REST %s %+v", h.conv, m.Seq, id, c.msgs[m.Seq], m.ID, sm))
					}
				} else {
					c.ids[m.Seq] = m.ID
					c.msgs[m.Seq] = sm
					d.surfaced++
					n++
				}
				after = m.Seq
			}
			d.mu.Unlock()
			if after == before {
				t.Fatalf("%s: history of %s after %d skips to seq %d", d.id, h.conv, after, page.Messages[0].Seq)
			}
		}
	}
	return n
}

// idle reports how long ago the device last received anything.
func (d *device) idle() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Since(d.lastEvent)
}

// sender publishes numbered messages to one send topic, one at a time, each
// retried with the same cid until it is acknowledged.
type sender struct {
	dev      *device
	topic    string
	conv     string
	prefix   string
	interval time.Duration
	// ackWait is how long one publish waits for its PUBACK before the
	// application publishes the same cid again (paho also resends it after
	// a reconnect).
	ackWait time.Duration

	mu sync.Mutex
	// book holds every cid published: its number n (1, 2, ... in send
	// order) and its body, as the sender wrote it.
	book     map[string]bookEntry
	sent     int      // distinct cids published
	attempts int      // publishes, retries included
	acked    []string // cids acknowledged by a PUBACK
	unacked  []string // cids given up on at the end
	// tokenLies counts publish tokens that completed without error while no
	// PUBACK had come for their message: paho completes the token of a
	// stored message when it resends it after a reconnect
	// (eclipse/paho.mqtt.golang#563).
	tokenLies int
}

// bookEntry is one message in a sender's book.
type bookEntry struct {
	n    int
	body string
}

// waitAck waits up to ackWait for the PUBACK of the cid (of this or of an
// earlier publish of it).
func (s *sender) waitAck(tok pahov3.Token, acked <-chan struct{}) bool {
	deadline := time.After(s.ackWait)
	done := tok.Done()
	for {
		select {
		case <-acked:
			return true
		case <-done:
			done = nil
			if tok.Error() == nil {
				select {
				case <-acked:
					return true
				case <-time.After(200 * time.Millisecond):
					s.mu.Lock()
					s.tokenLies++
					s.mu.Unlock()
				}
			}
		case <-deadline:
			return false
		}
	}
}

// ackStore is paho's memory store, watched for PUBACKs: paho deletes an
// outbound QoS 1 PUBLISH from its store when, and only when, its PUBACK
// arrives. (The publish token is no proof: it also completes, without
// error, when paho resends the stored message after a reconnect.)
type ackStore struct {
	pahov3.Store
	mu      sync.Mutex
	pending map[string]string        // store key of a PUBLISH -> its cid
	acked   map[string]chan struct{} // cid -> closed once a PUBACK came
}

func (a *ackStore) Put(key string, m packets.ControlPacket) {
	if p, ok := m.(*packets.PublishPacket); ok && strings.HasPrefix(key, "o.") {
		var body struct{ CID string }
		if json.Unmarshal(p.Payload, &body) == nil && body.CID != "" {
			a.mu.Lock()
			a.pending[key] = body.CID
			a.mu.Unlock()
		}
	}
	a.Store.Put(key, m)
}

func (a *ackStore) Del(key string) {
	a.mu.Lock()
	if cid, ok := a.pending[key]; ok {
		delete(a.pending, key)
		if ch := a.acked[cid]; ch != nil { // someone awaits it
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	}
	a.mu.Unlock()
	a.Store.Del(key)
}

// await returns a channel closed once a PUBLISH of cid is acknowledged;
// call it before the first publish of cid.
func (a *ackStore) await(cid string) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.acked[cid]
	if ch == nil {
		ch = make(chan struct{})
		a.acked[cid] = ch
	}
	return ch
}

// run sends until stop is closed; the message in progress when that happens
// is still retried until acked or until giveUp.
func (s *sender) run(stop <-chan struct{}, giveUp time.Duration) {
	var stopAt time.Time
	for i := 1; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		cid := fmt.Sprintf("%s-%d", s.prefix, i)
		body := fmt.Sprintf(`{"n":%d,"by":%q}`, i, s.dev.id)
		payload := fmt.Sprintf(`{"cid":%q,"body":%s}`, cid, body)
		s.mu.Lock()
		s.sent++
		if s.book == nil {
			s.book = map[string]bookEntry{}
		}
		s.book[cid] = bookEntry{n: i, body: body}
		s.mu.Unlock()
		acked := s.dev.acks.await(cid)
		for {
			s.mu.Lock()
			s.attempts++
			s.mu.Unlock()
			tok := s.dev.c.Publish(s.topic, 1, false, payload)
			if s.waitAck(tok, acked) {
				s.mu.Lock()
				s.acked = append(s.acked, cid)
				s.mu.Unlock()
				break
			}
			if stopAt.IsZero() {
				select {
				case <-stop:
					stopAt = time.Now()
				default:
				}
			}
			if !stopAt.IsZero() && time.Since(stopAt) > giveUp {
				s.mu.Lock()
				s.unacked = append(s.unacked, cid)
				s.mu.Unlock()
				return
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(s.interval):
		}
	}
}

// getJSON GETs url as user and decodes the reply into out; it returns the
// status.
func getJSON(t testing.TB, url, user string, out any) int {
	t.Helper()
	return doJSON(t, "GET", url, user, "", out)
}

func doJSON(t testing.TB, method, url, user, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testkit.Token(t, user))
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode
}

// createGroup creates group id owned by owner with members, over REST.
func createGroup(t testing.TB, s *server, owner, id string, members ...string) {
	t.Helper()
	ms, _ := json.Marshal(members)
	body := fmt.Sprintf(`{"id":%q,"name":%q,"members":%s}`, id, id, ms)
	if code := doJSON(t, "POST", s.url("/v1/groups"), owner, body, nil); code != 201 {
		t.Fatalf("create group %s: status %d", id, code)
	}
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// checkBooks checks what device d surfaced of conv against the senders'
// own books, not the server's seqs: every message from a user who has a
// sender in conv carries a cid of that sender's book with the body it was
// sent with, and the messages of one sender surface in the order it sent
// them. With strict, a message with a cid from a user without a sender in
// conv is an error too. It also returns, per sender, the cids d surfaced.
func checkBooks(d *device, conv string, senders []*sender, strict bool) (problems []string, got map[*sender]map[string]bool) {
	byUser := map[string][]*sender{}
	got = map[*sender]map[string]bool{}
	for _, s := range senders {
		if s.conv == conv {
			byUser[s.dev.user] = append(byUser[s.dev.user], s)
			got[s] = map[string]bool{}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.convs[conv]
	if c == nil {
		return nil, got
	}
	seqs := make([]int64, 0, len(c.msgs))
	for seq := range c.msgs {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	lastN := map[*sender]int{}
	lastSeq := map[*sender]int64{}
	for _, seq := range seqs {
		m := c.msgs[seq]
		if m.cid == "" {
			continue // group.created and other membership messages
		}
		ss, ok := byUser[m.from]
		if !ok {
			if strict {
				problems = append(problems, fmt.Sprintf("%s %s seq %d: cid %s from %s, whom no sender in the conversation is", d.id, conv, seq, m.cid, m.from))
			}
			continue
		}
		var s *sender
		var e bookEntry
		for _, cand := range ss {
			cand.mu.Lock()
			ent, ok := cand.book[m.cid]
			cand.mu.Unlock()
			if ok {
				s, e = cand, ent
				break
			}
		}
		if s == nil {
			problems = append(problems, fmt.Sprintf("%s %s seq %d: cid %s from %s was never sent", d.id, conv, seq, m.cid, m.from))
			continue
		}
		if m.body != e.body {
			problems = append(problems, fmt.Sprintf("%s %s seq %d: cid %s has body %s, sent %s", d.id, conv, seq, m.cid, m.body, e.body))
		}
		if e.n <= lastN[s] {
			problems = append(problems, fmt.Sprintf("%s %s: %s's message %d (seq %d) surfaced after its message %d (seq %d): not in send order",
				d.id, conv, s.prefix, e.n, seq, lastN[s], lastSeq[s]))
		}
		lastN[s], lastSeq[s] = e.n, seq
		got[s][m.cid] = true
	}
	return problems, got
}
