// Package natsbus connects the Parley nodes of a cluster over core NATS
// (at-most-once): deliveries to the users that have devices on other nodes,
// session takeovers, group-membership invalidations and presence. Every loss
// is repaired from the store: a node that receives a seq beyond a device's
// position catches the device up first, a NATS reconnect or slow consumer
// makes every local device catch up, and a periodic sweep does the same.
//
// Subjects (PREFIX defaults to "parley"):
//
//	PREFIX.u.<hex user id>   inbox deliveries for a user (a node subscribes
//	                         while it has a device of that user)
//	PREFIX.kick              {"client","epoch","node"}: a session moved
//	PREFIX.group             {"group","node"}: membership changed
//	PREFIX.presence          {"user","node","on"}: a node's interest changed
//	PREFIX.node              {"node","users":[...]}: heartbeat (lease);
//	                         {"node","gone":true}: the node is leaving
//	PREFIX.plain...          plain MQTT between nodes (plain.go)
package cluster

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults of Bus.
const (
	DefaultPrefix    = "parley"
	DefaultHeartbeat = 2 * time.Second
	DefaultSweep     = 30 * time.Second
)

// Bus is one node's connection to the cluster. Create it with Connect.
type Bus struct {
	// Node is this node's id.
	Node string
	// Local delivers to this node's devices.
	Local Local
	// ForgetGroup is called when another node changed a group's membership.
	ForgetGroup func(group string)
	// Log defaults to slog.Default().
	Log *slog.Logger
	// UserDeleted, when set, is called when another node deleted a user's
	// account (disconnect its devices, forget its cached tokens).
	UserDeleted func(user string)
	// BlockChanged, when set, is called when another node blocked or
	// unblocked between a and b (forget cached contacts).
	BlockChanged func(a, b string)
	// Prefix of the subjects; default "parley".
	Prefix string
	// Heartbeat is how often the node announces itself; a node silent for
	// three heartbeats loses its presence. Default 2s.
	Heartbeat time.Duration
	// Sweep is how often every local device is checked against the store;
	// default 30s, negative disables.
	Sweep time.Duration
	// DropRate drops this share of incoming deliveries: a test hook that
	// shows losses are repaired. Zero in production.
	DropRate float64
	// Auth authenticates the node to NATS and secures the connection.
	Auth Auth
	// Plain, when set, carries plain MQTT between the nodes: publishes,
	// session moves and shared subscriptions (see plain.go).
	Plain Plain

	nc      *nats.Conn
	in      chan *nats.Msg
	mu      sync.Mutex
	subs    map[string]*nats.Subscription
	seen    map[string]time.Time // nodes by last heartbeat
	done    chan struct{}
	wg      sync.WaitGroup
	control []*nats.Subscription
	plain   plainState
}

type kickMsg struct {
	Client string `json:"client"`
	Epoch  int64  `json:"epoch"`
	Node   string `json:"node"`
}

type groupMsg struct {
	Group string `json:"group"`
	Node  string `json:"node"`
}

// userMsg tells the other nodes that a user's account was deleted, or that
// a block between A and B changed.
type userMsg struct {
	Deleted string `json:"deleted,omitempty"`
	A       string `json:"a,omitempty"`
	B       string `json:"b,omitempty"`
	Node    string `json:"node"`
}

type presenceMsg struct {
	User string `json:"user"`
	Node string `json:"node"`
	On   bool   `json:"on"`
}

type nodeMsg struct {
	Node  string   `json:"node"`
	Users []string `json:"users"`
	Gone  bool     `json:"gone,omitempty"` // the node is leaving
}

// Local is what the bus needs of this node's delivery engine
// (delivery.Hub).
type Local interface {
	// DeliverLocal hands a delivery from another node to the devices of
	// users here: a stored message (conv and seq set) or an event (conv "").
	DeliverLocal(users []string, conv string, seq int64, qos byte, payload []byte)
	// Resync makes every device here catch up from the store.
	Resync()
	// TakeOver disconnects the session of clientID here if it is older than
	// epoch.
	TakeOver(clientID string, epoch int64)
	// SetPresence records whether node has devices of user.
	SetPresence(user, node string, on bool)
	// SetNodeUsers makes users exactly the users node has devices of.
	SetNodeUsers(node string, users []string)
	// ForgetNode drops every user's presence on node.
	ForgetNode(node string)
	// LocalUsers lists the users with devices here.
	LocalUsers() []string
}

// Connect connects to the NATS server(s) at url, with b.Auth, and starts the
// bus. b's Node, Local and ForgetGroup are required. Errors show url without
// its password.
func (b *Bus) Connect(url string) error {
	if b.Node == "" || b.Local == nil || b.ForgetGroup == nil {
		return errors.New("natsbus: Node, Local and ForgetGroup are required")
	}
	if b.Log == nil {
		b.Log = slog.Default()
	}
	if b.Prefix == "" {
		b.Prefix = DefaultPrefix
	}
	if b.Heartbeat <= 0 {
		b.Heartbeat = DefaultHeartbeat
	}
	if b.Sweep == 0 {
		b.Sweep = DefaultSweep
	}
	auth, err := b.Auth.Options()
	if err != nil {
		return err
	}
	b.subs = map[string]*nats.Subscription{}
	b.seen = map[string]time.Time{}
	b.done = make(chan struct{})
	b.in = make(chan *nats.Msg, 65536)
	opts := append([]nats.Option{
		nats.Name("parley-" + b.Node),
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			b.Log.Warn("nats reconnected: catching every device up from the store")
			b.Local.Resync()
			b.announce()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.Log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.Log.Warn("nats slow consumer: catching every device up from the store")
				b.Local.Resync()
				return
			}
			b.Log.Warn("nats", "error", err)
		}),
	}, auth...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("natsbus: connect %s: %w", redact(url), err)
	}
	b.nc = nc
	for _, subj := range []string{".kick", ".group", ".presence", ".node", ".user"} {
		sub, err := nc.ChanSubscribe(b.Prefix+subj, b.in)
		if err != nil {
			nc.Close()
			return fmt.Errorf("natsbus: subscribe: %w", err)
		}
		b.control = append(b.control, sub)
	}
	if err := b.subscribePlain(); err != nil {
		nc.Close()
		return fmt.Errorf("natsbus: subscribe: %w", err)
	}
	b.wg.Add(2)
	go b.receive()
	go b.ticker()
	b.announce()
	return nil
}

// Close leaves the cluster.
func (b *Bus) Close() error {
	if b.nc == nil {
		return nil
	}
	select {
	case <-b.done:
		return nil
	default:
	}
	// Tell the others at once, rather than after three missed heartbeats.
	b.publishJSON(".node", nodeMsg{Node: b.Node, Gone: true})
	_ = b.nc.FlushTimeout(time.Second)
	close(b.done)
	b.wg.Wait()
	b.nc.Close()
	return nil
}

func (b *Bus) userSubject(user string) string {
	return b.Prefix + ".u." + hex.EncodeToString([]byte(user))
}

// Deliver implements delivery.Remote: one NATS message per user, a
// delivery frame (see frame).
func (b *Bus) Deliver(users []string, conv string, seq int64, qos byte, payload []byte) {
	data := appendFrame(make([]byte, 0, len(payload)+len(conv)+16), frame{conv: conv, seq: seq, qos: qos, payload: payload})
	for _, u := range users {
		if err := b.nc.Publish(b.userSubject(u), data); err != nil {
			b.Log.Debug("nats publish", "error", err) // repaired by catch-up
		}
	}
}

// Interest implements delivery.Remote: subscribe to the user's subject while
// this node has devices of the user, and tell the others.
func (b *Bus) Interest(user string, on bool) {
	b.mu.Lock()
	sub := b.subs[user]
	switch {
	case on && sub == nil:
		s, err := b.nc.ChanSubscribe(b.userSubject(user), b.in)
		if err != nil {
			b.Log.Warn("nats subscribe", "user", user, "error", err)
		} else {
			b.subs[user] = s
		}
	case !on && sub != nil:
		_ = sub.Unsubscribe()
		delete(b.subs, user)
	}
	b.mu.Unlock()
	b.publishJSON(".presence", presenceMsg{User: user, Node: b.Node, On: on})
}

// Kick tells the other nodes that clientID connected here with epoch.
func (b *Bus) Kick(clientID string, epoch int64) {
	b.publishJSON(".kick", kickMsg{Client: clientID, Epoch: epoch, Node: b.Node})
}

// Invalidate tells the other nodes that group's membership changed.
func (b *Bus) Invalidate(group string) {
	b.publishJSON(".group", groupMsg{Group: group, Node: b.Node})
}

// DeleteUser tells the other nodes that user's account was deleted.
func (b *Bus) DeleteUser(user string) {
	b.publishJSON(".user", userMsg{Deleted: user, Node: b.Node})
}

// blockWait bounds how long Block waits for the other nodes.
const blockWait = 2 * time.Second

// Block tells the other nodes that a block between a and c changed, and
// waits until every node heard from in the last three heartbeats answered
// that it handled it (BlockChanged returned), at most blockWait: so that the
// block applies to the next send through any node, which may have cached
// the pair's relation. A node that does not answer in time still handles it
// when the message arrives (and its cache expires on its own).
func (b *Bus) Block(a, c string) {
	data, _ := json.Marshal(userMsg{A: a, B: c, Node: b.Node})
	b.mu.Lock()
	want := len(b.seen)
	b.mu.Unlock()
	if want == 0 {
		if err := b.nc.Publish(b.Prefix+".user", data); err != nil {
			b.Log.Debug("nats publish", "subject", ".user", "error", err)
		}
		return
	}
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err == nil {
		defer sub.Unsubscribe()
		err = b.nc.PublishRequest(b.Prefix+".user", inbox, data)
	}
	if err != nil {
		b.Log.Warn("nats publish block", "error", err)
		return
	}
	deadline := time.Now().Add(blockWait)
	for got := 0; got < want; got++ {
		if _, err := sub.NextMsg(time.Until(deadline)); err != nil {
			b.Log.Warn("block: not every node answered in time", "answered", got, "nodes", want)
			return
		}
	}
}

func (b *Bus) publishJSON(subj string, v any) {
	data, _ := json.Marshal(v)
	if err := b.nc.Publish(b.Prefix+subj, data); err != nil {
		b.Log.Debug("nats publish", "subject", subj, "error", err)
	}
}

func (b *Bus) announce() {
	b.publishJSON(".node", nodeMsg{Node: b.Node, Users: b.Local.LocalUsers()})
	b.announceShares()
}

// receive handles everything this node gets, on one goroutine.
func (b *Bus) receive() {
	defer b.wg.Done()
	userPrefix := b.Prefix + ".u."
	for {
		select {
		case <-b.done:
			return
		case m := <-b.in:
			switch {
			case len(m.Subject) > len(userPrefix) && m.Subject[:len(userPrefix)] == userPrefix:
				b.onDelivery(m)
			case m.Subject == b.Prefix+".kick":
				var k kickMsg
				if json.Unmarshal(m.Data, &k) == nil && k.Node != b.Node {
					b.Local.TakeOver(k.Client, k.Epoch)
				}
			case m.Subject == b.Prefix+".group":
				var g groupMsg
				if json.Unmarshal(m.Data, &g) == nil && g.Node != b.Node {
					b.ForgetGroup(g.Group)
				}
			case m.Subject == b.Prefix+".user":
				var u userMsg
				if json.Unmarshal(m.Data, &u) == nil && u.Node != b.Node {
					if u.Deleted != "" && b.UserDeleted != nil {
						b.UserDeleted(u.Deleted)
					}
					if u.A != "" && b.BlockChanged != nil {
						b.BlockChanged(u.A, u.B)
					}
					if u.A != "" && m.Reply != "" {
						_ = m.Respond(nil) // Block waits for it
					}
				}
			case m.Subject == b.Prefix+".presence":
				var p presenceMsg
				if json.Unmarshal(m.Data, &p) == nil && p.Node != b.Node {
					b.touch(p.Node)
					b.Local.SetPresence(p.User, p.Node, p.On)
				}
			case m.Subject == b.Prefix+".node":
				var n nodeMsg
				if json.Unmarshal(m.Data, &n) == nil && n.Node != b.Node {
					if n.Gone {
						b.forget(n.Node)
						continue
					}
					if b.touch(n.Node) {
						b.announce() // a node joined: tell it who is here
					}
					b.Local.SetNodeUsers(n.Node, n.Users)
				}
			}
		}
	}
}

func (b *Bus) onDelivery(m *nats.Msg) {
	f, err := parseFrame(m.Data)
	if err != nil {
		b.Log.Warn("malformed delivery dropped", "subject", m.Subject)
		return
	}
	if b.DropRate > 0 && rand.Float64() < b.DropRate {
		return // test hook: a lost delivery
	}
	hexUser := m.Subject[len(b.Prefix)+3:]
	raw, err := hex.DecodeString(hexUser)
	if err != nil {
		return
	}
	b.Local.DeliverLocal([]string{string(raw)}, f.conv, f.seq, f.qos, f.payload)
}

// forget drops node, which left: its presence and shared subscriptions.
func (b *Bus) forget(node string) {
	b.mu.Lock()
	delete(b.seen, node)
	b.mu.Unlock()
	b.Log.Info("node left: dropping its presence", "node", node)
	b.forgetNode(node)
}

func (b *Bus) forgetNode(node string) {
	b.Local.ForgetNode(node)
	if b.Plain != nil {
		b.Plain.PlainShares(node, nil)
	}
}

// touch records a heartbeat of node and reports whether the node is new.
func (b *Bus) touch(node string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, known := b.seen[node]
	b.seen[node] = time.Now()
	return !known
}

func (b *Bus) ticker() {
	defer b.wg.Done()
	hb := time.NewTicker(b.Heartbeat)
	defer hb.Stop()
	var sweep <-chan time.Time
	if b.Sweep > 0 {
		t := time.NewTicker(b.Sweep)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-b.done:
			return
		case <-hb.C:
			b.announce()
			var expired []string
			b.mu.Lock()
			for node, at := range b.seen {
				if time.Since(at) > 3*b.Heartbeat {
					expired = append(expired, node)
					delete(b.seen, node)
				}
			}
			b.mu.Unlock()
			for _, node := range expired {
				b.Log.Warn("node silent: dropping its presence", "node", node)
				b.forgetNode(node)
			}
		case <-sweep:
			b.Local.Resync()
		}
	}
}
