package delivery

import (
	"maps"
	"slices"
	"sync"
)

// nodes records which other nodes of the cluster have devices of which
// users (cluster mode). It changes only under presence.mu (see presence);
// its own lock lets it be read alone.
type nodes struct {
	mu    sync.Mutex
	users map[string]map[string]bool // nodes with devices, by user
}

// set records that node has (on) or no longer has devices of user.
func (n *nodes) set(user, node string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		if n.users == nil {
			n.users = map[string]map[string]bool{}
		}
		if n.users[user] == nil {
			n.users[user] = map[string]bool{}
		}
		n.users[user][node] = true
	} else if n.users[user] != nil {
		delete(n.users[user], node)
		if len(n.users[user]) == 0 {
			delete(n.users, user)
		}
	}
}

// has reports whether another node has devices of user.
func (n *nodes) has(user string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.users[user]) > 0
}

// on returns the users node has devices of.
func (n *nodes) on(node string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var users []string
	for u, ns := range n.users {
		if ns[node] {
			users = append(users, u)
		}
	}
	return users
}

// DeliverLocal hands an inbox payload to the devices of users on this node:
// a stored message (conv and seq set; each device gets it once, in seq
// order) or an event (conv ""). Cluster mode calls it for deliveries from
// other nodes.
func (h *Hub) DeliverLocal(users []string, conv string, seq int64, qos byte, payload []byte) {
	if conv == "" {
		seq = 0
	}
	h.deliverLocal(users, item{conv: conv, seq: seq, payload: payload, qos: qos})
}

// Resync makes every device on this node catch up from the store: after a
// lost connection to the other nodes, and periodically as a sweep.
func (h *Hub) Resync() {
	h.mu.Lock()
	ds := make([]*device, 0, len(h.devices))
	for _, d := range h.devices {
		ds = append(ds, d)
	}
	h.mu.Unlock()
	for _, d := range ds {
		d.mu.Lock()
		if d.started && d.subscribed && !d.closed {
			d.enterSync()
		}
		d.mu.Unlock()
		d.signal()
	}
}

// TakeOver disconnects the local session of clientID if its epoch is older
// than epoch: the client connected again elsewhere.
func (h *Hub) TakeOver(clientID string, epoch int64) {
	h.mu.Lock()
	d := h.devices[clientID]
	h.mu.Unlock()
	if d == nil || d.epoch >= epoch {
		return
	}
	h.Log.Info("session taken over on another node", "client", clientID, "epoch", d.epoch, "new_epoch", epoch)
	d.conn.TakeOver()
}

// SetPresence records whether user has devices on another node, and
// publishes the user's presence when the cluster-wide answer changes.
func (h *Hub) SetPresence(user, node string, on bool) {
	if changed, present := h.presence.setRemote(user, node, on); changed {
		h.publishPresence(user, present)
	}
}

// SetNodeUsers makes users exactly the users present on node (its
// heartbeat), repairing lost presence messages.
func (h *Hub) SetNodeUsers(node string, users []string) {
	listed := make(map[string]bool, len(users))
	for _, u := range users {
		listed[u] = true
	}
	for _, u := range h.presence.nodes.on(node) {
		if !listed[u] {
			h.SetPresence(u, node, false)
		}
	}
	for _, u := range users {
		h.SetPresence(u, node, true)
	}
}

// ForgetNode drops every user's presence on node (its lease expired).
func (h *Hub) ForgetNode(node string) {
	for _, u := range h.presence.nodes.on(node) {
		h.SetPresence(u, node, false)
	}
}

// LocalUsers lists the users with devices on this node.
func (h *Hub) LocalUsers() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.AppendSeq(make([]string, 0, len(h.online)), maps.Keys(h.online))
}
