package main

import (
	"strconv"

	"github.com/parley-im/parley/history"
)

// Scenario modes: Parley's topics and events, or plain MQTT topics.
const (
	modeParley = "parley"
	modeRaw    = "raw"
)

// topology is who talks to whom in one run. Users are RUN-0 … RUN-(U-1);
// each belongs to exactly one conversation: a direct pair (2k, 2k+1) or a
// group of consecutive users. The run id keeps runs apart on a shared store
// or broker.
type topology struct {
	run     string
	users   []string
	devices int
	convOf  []int // user index -> conversation index
	convs   []conversation
	byID    map[string]int // Parley conversation id -> index
}

// conversation is a direct pair or a group.
type conversation struct {
	id      string // Parley's conversation id: dm:A:B or g:GROUP
	group   string // group id; "" for a direct pair
	members []int  // user indexes
}

func newTopology(run string, users, devices, group int) *topology {
	tp := &topology{run: run, devices: devices, convOf: make([]int, users), byID: map[string]int{}}
	for i := range users {
		tp.users = append(tp.users, run+"-"+strconv.Itoa(i))
	}
	size := group
	if size == 0 {
		size = 2
	}
	for start := 0; start < users; start += size {
		c := conversation{}
		for u := start; u < min(start+size, users); u++ {
			c.members = append(c.members, u)
			tp.convOf[u] = len(tp.convs)
		}
		if group == 0 {
			c.id = history.DirectConvID(tp.users[c.members[0]], tp.users[c.members[1]])
		} else {
			c.group = run + "-g" + strconv.Itoa(len(tp.convs))
			c.id = history.GroupConvID(c.group)
		}
		tp.byID[c.id] = len(tp.convs)
		tp.convs = append(tp.convs, c)
	}
	return tp
}

// clientID is the MQTT client id of device d of user u: USER/dN.
func (tp *topology) clientID(u, d int) string { return tp.users[u] + "/d" + strconv.Itoa(d) }

// sendTopic is where user u publishes: Parley's send topic, or in the raw
// scenario the peer's inbox (direct) or the group's topic.
func (tp *topology) sendTopic(mode string, u int) string {
	c := tp.convs[tp.convOf[u]]
	switch {
	case mode == modeParley && c.group == "":
		return "im/send/u/" + tp.users[tp.peer(u)]
	case mode == modeParley:
		return "im/send/g/" + c.group
	case c.group == "":
		return "im/inbox/" + tp.users[tp.peer(u)]
	default:
		return "im/group/" + c.group
	}
}

// node is the node (of nodes) that device d of user u first connects to.
// Devices go round-robin over the nodes, each user's devices on consecutive
// nodes. In direct pairs, pair k puts user 2k on node k and user 2k+1 on
// node k+1 (modulo nodes), so that with two nodes or more the peers'
// devices of the same index are on different nodes: with one device per
// user, every delivery to the peer crosses nodes (the sender's echo does
// not). Group members are spread over the nodes in turn.
func (tp *topology) node(u, d, nodes int) int {
	base := u
	if tp.convs[tp.convOf[u]].group == "" {
		base = u/2 + u%2
	}
	return (base + d) % nodes
}

// filters are the subscriptions of user u's devices.
func (tp *topology) filters(mode string, u int) []string {
	f := []string{"im/inbox/" + tp.users[u]}
	if c := tp.convs[tp.convOf[u]]; mode == modeRaw && c.group != "" {
		f = append(f, "im/group/"+c.group)
	}
	return f
}

// peer is the other user of u's direct pair.
func (tp *topology) peer(u int) int { return u ^ 1 }

// receives reports whether user r's devices should get the messages of
// sender s (same conversation): in Parley every member does, the sender
// included (the echo); in the raw scenario a direct message goes to the peer
// only and a group message to every subscriber of the group topic.
func (tp *topology) receives(mode string, r, s int) bool {
	if r != s {
		return true
	}
	return mode == modeParley || tp.convs[tp.convOf[s]].group != ""
}
