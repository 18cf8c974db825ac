package delivery

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/parley-im/parley/internal/wire"
)

// presence knows who is present: a user is present while this node or
// another has one of their devices. It counts the devices of each user here
// and keeps the other nodes' users in nodes; every change of either side
// goes through presence.mu, so that each change is seen once. Lock order:
// presence.mu -> nodes.mu.
type presence struct {
	mu    sync.Mutex
	local map[string]int // devices connected here, by user
	nodes nodes
}

// up counts a device of user connected here. first: it is the user's only
// device here; present: the user was absent everywhere before.
func (p *presence) up(user string) (first, present bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local == nil {
		p.local = map[string]int{}
	}
	p.local[user]++
	first = p.local[user] == 1
	return first, first && !p.nodes.has(user)
}

// down counts a device of user gone from here. last: the user has no device
// here any more; absent: nor anywhere else.
func (p *presence) down(user string) (last, absent bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local[user] <= 0 {
		return false, false
	}
	p.local[user]--
	if p.local[user] > 0 {
		return false, false
	}
	delete(p.local, user)
	return true, !p.nodes.has(user)
}

// setRemote records whether node has devices of user. It reports whether
// the user's presence changed, and the presence after the call.
func (p *presence) setRemote(user, node string, on bool) (changed, present bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before := p.local[user] > 0 || p.nodes.has(user)
	p.nodes.set(user, node, on)
	after := p.local[user] > 0 || p.nodes.has(user)
	return before != after, after
}

// publishPresence publishes the presence of user (retained) through
// PublishPresence, when set.
func (h *Hub) publishPresence(user string, online bool) {
	if h.PublishPresence == nil {
		return
	}
	if err := h.PublishPresence(user, presencePayload(user, online, time.Now())); err != nil {
		h.Log.Warn("publish presence", "user", user, "error", err)
	}
}

// presencePayload is the retained presence message of user.
func presencePayload(user string, online bool, at time.Time) []byte {
	b, _ := json.Marshal(struct {
		User     string `json:"user"`
		Online   bool   `json:"online"`
		LastSeen string `json:"last_seen"`
	}{user, online, at.UTC().Format(wire.TSLayout)})
	return b
}
