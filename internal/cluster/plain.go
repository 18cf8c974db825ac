package cluster

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Plain is what the bus needs of this node's plain MQTT broker (topics
// outside Parley's prefix). Its methods run on a goroutine of the bus for
// plain MQTT, one at a time, in the order the messages arrived; they must
// not wait on a client's connection.
type Plain interface {
	// PlainPublish hands a publish made on node to this node's broker: the
	// frame is opaque to the bus.
	PlainPublish(node string, frame []byte)
	// PlainClaim tells that client connected to node: this node drops its
	// session of client (its connection and the state it holds in memory;
	// resume: the session goes on there) before the bus tells node so.
	PlainClaim(client, node string, resume bool)
	// PlainShares records the shared subscriptions of node: filter →
	// members; nil when node left.
	PlainShares(node string, shares map[string]int)
}

// DefaultClaimWait bounds how long ClaimPlain waits for the node holding a
// session to release it.
const DefaultClaimWait = 2 * time.Second

// Subjects of plain MQTT, under the prefix:
//
//	PREFIX.plain           a publish: uvarint len(node) node frame
//	PREFIX.plain.claim     {"client","node","holder","resume","id"}: release client
//	PREFIX.plain.released  {"client","node","to","id"}: released for to
//	PREFIX.plain.shares    {"node","shares":{filter:members}}
type claimMsg struct {
	Client string `json:"client"`
	Node   string `json:"node"`
	Holder string `json:"holder,omitempty"` // the node that answers
	Resume bool   `json:"resume,omitempty"`
	ID     string `json:"id"`
}

type releasedMsg struct {
	Client string `json:"client"`
	Node   string `json:"node"`
	To     string `json:"to"`
	ID     string `json:"id"`
}

type sharesMsg struct {
	Node   string         `json:"node"`
	Shares map[string]int `json:"shares"`
}

// plainState is the bus's plain MQTT bookkeeping.
type plainState struct {
	mu      sync.Mutex
	waiters map[string]chan struct{} // claims waiting for their release, by id
	shares  map[string]int           // this node's shared subscriptions, announced with every heartbeat
	seq     atomic.Int64
}

// PublishPlain sends a plain publish frame to every other node.
func (b *Bus) PublishPlain(frame []byte) {
	data := make([]byte, 0, len(b.Node)+len(frame)+2)
	data = AppendString(data, b.Node)
	data = append(data, frame...)
	if err := b.nc.Publish(b.Prefix+".plain", data); err != nil {
		b.Log.Debug("nats publish", "subject", "plain", "error", err)
	}
}

// ClaimPlain tells every other node that client connected here, so that
// they drop their session of it. When holder (the node that held the
// session last, "" if none) is another node of the cluster, it waits until
// holder released the session, at most DefaultClaimWait; it does not wait
// for a node that is not heard from (gone).
func (b *Bus) ClaimPlain(client string, resume bool, holder string) {
	id := b.Node + "/" + strconv.FormatInt(b.plain.seq.Add(1), 10)
	var done chan struct{}
	if holder != "" && holder != b.Node && b.alive(holder) {
		done = make(chan struct{})
		b.plain.mu.Lock()
		if b.plain.waiters == nil {
			b.plain.waiters = map[string]chan struct{}{}
		}
		b.plain.waiters[id] = done
		b.plain.mu.Unlock()
		defer func() {
			b.plain.mu.Lock()
			delete(b.plain.waiters, id)
			b.plain.mu.Unlock()
		}()
	}
	b.publishJSON(".plain.claim", claimMsg{Client: client, Node: b.Node, Holder: holder, Resume: resume, ID: id})
	if done == nil {
		return
	}
	t := time.NewTimer(DefaultClaimWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		b.Log.Warn("plain session not released in time", "client", client, "holder", holder)
	case <-b.done:
	}
}

// SharePlain records this node's shared subscriptions (filter → members)
// and tells the other nodes; the heartbeat repeats them.
func (b *Bus) SharePlain(shares map[string]int) {
	b.plain.mu.Lock()
	b.plain.shares = shares
	b.plain.mu.Unlock()
	b.publishJSON(".plain.shares", sharesMsg{Node: b.Node, Shares: shares})
}

func (b *Bus) announceShares() {
	if b.Plain == nil {
		return
	}
	b.plain.mu.Lock()
	shares := b.plain.shares
	b.plain.mu.Unlock()
	b.publishJSON(".plain.shares", sharesMsg{Node: b.Node, Shares: shares})
}

// alive reports whether node was heard from within three heartbeats.
func (b *Bus) alive(node string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	at, ok := b.seen[node]
	return ok && time.Since(at) <= 3*b.Heartbeat
}

// subscribePlain subscribes to the plain subjects, on a channel and a
// goroutine of their own: plain MQTT (which may write to the store) never
// holds up Parley's deliveries.
func (b *Bus) subscribePlain() error {
	if b.Plain == nil {
		return nil
	}
	in := make(chan *nats.Msg, 65536)
	for _, subj := range []string{".plain", ".plain.claim", ".plain.released", ".plain.shares"} {
		sub, err := b.nc.ChanSubscribe(b.Prefix+subj, in)
		if err != nil {
			return err
		}
		b.control = append(b.control, sub)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			select {
			case <-b.done:
				return
			case m := <-in:
				b.onPlain(m)
			}
		}
	}()
	return nil
}

// onPlain handles a message on a plain subject.
func (b *Bus) onPlain(m *nats.Msg) {
	switch m.Subject {
	case b.Prefix + ".plain":
		node, frame, ok := ReadString(m.Data)
		if ok && node != b.Node {
			b.Plain.PlainPublish(node, frame)
		}
	case b.Prefix + ".plain.claim":
		var c claimMsg
		if json.Unmarshal(m.Data, &c) == nil && c.Node != b.Node {
			b.Plain.PlainClaim(c.Client, c.Node, c.Resume)
			if c.Holder == b.Node {
				b.publishJSON(".plain.released", releasedMsg{Client: c.Client, Node: b.Node, To: c.Node, ID: c.ID})
			}
		}
	case b.Prefix + ".plain.released":
		var r releasedMsg
		if json.Unmarshal(m.Data, &r) == nil && r.To == b.Node && r.ID != "" {
			b.plain.mu.Lock()
			if done, ok := b.plain.waiters[r.ID]; ok {
				close(done)
				delete(b.plain.waiters, r.ID)
			}
			b.plain.mu.Unlock()
		}
	case b.Prefix + ".plain.shares":
		var s sharesMsg
		if json.Unmarshal(m.Data, &s) == nil && s.Node != b.Node {
			if s.Shares == nil {
				s.Shares = map[string]int{}
			}
			b.Plain.PlainShares(s.Node, s.Shares)
		}
	}
}

// AppendString appends s to b, its length first (a uvarint): the field
// encoding of the plain frames, here and in internal/plain.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ReadString reads what AppendString wrote and returns the rest of b; ok is
// false when b does not hold a whole field.
func ReadString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}
