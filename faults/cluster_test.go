package faults_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

// TestClusterNodeKill runs three parleyd nodes on one PostgreSQL database and
// one NATS server, with devices and senders spread over the nodes, and kills
// one node with SIGKILL under load. Its devices reconnect to a surviving
// node; afterwards the checks of TestBrokerCrash hold across the cluster.
func TestClusterNodeKill(t *testing.T) {
	sc := getScale(t)
	rng := newRand(t)
	db := pgtest.DB(t)
	ns := testkit.RunNATS(t, nil)
	var nodes []*server
	for i := 0; i < 3; i++ {
		nodes = append(nodes, startServer(t, db, "PARLEY_NATS_URL="+ns.ClientURL(), fmt.Sprintf("PARLEY_NODE_ID=node%d", i)))
	}
	// The devices of node 2 dial it through a forwarder, so that once it is
	// killed their reconnects reach a surviving node at the same address.
	fwd := startForwarder(t, nodes[2].mqtt)

	l := &load{t: t, srv: nodes[0], db: db, sc: sc, rng: rng, stop: make(chan struct{}), members: map[string][]string{
		"dm:alice:bob": {"alice", "bob"},
		"dm:bob:carol": {"bob", "carol"},
		"g:crew":       {"alice", "bob", "carol"},
	}}
	dev := map[string]*device{}
	for _, d := range []struct{ id, addr string }{
		{"alice/a", nodes[0].mqtt}, // sender on node 0
		{"bob/a", nodes[1].mqtt},   // receiver on node 1
		{"bob/b", fwd.addr},        // receiver on node 2
		{"carol/a", fwd.addr},      // sender on node 2
	} {
		user, _, _ := strings.Cut(d.id, "/")
		dev[d.id] = dialDevice(t, d.addr, d.id, user)
		l.devices = append(l.devices, dev[d.id])
	}
	// Every device is subscribed before the group exists: it sees seq 1.
	createGroup(t, nodes[1], "alice", "crew", "bob", "carol")
	for _, s := range []struct{ dev, topic, conv, prefix string }{
		{"alice/a", "im/send/u/bob", "dm:alice:bob", "alice.a.dm"},
		{"alice/a", "im/send/g/crew", "g:crew", "alice.a.g"},
		{"carol/a", "im/send/u/bob", "dm:bob:carol", "carol.a.dm"},
		{"carol/a", "im/send/g/crew", "g:crew", "carol.a.g"},
	} {
		l.senders = append(l.senders, &sender{dev: dev[s.dev], topic: s.topic, conv: s.conv,
			prefix: s.prefix, interval: sc.sendInterval, ackWait: 2 * time.Second})
	}
	l.start()

	time.Sleep(between(rng, sc.killGapMin, sc.killGapMax))
	survivor := nodes[rng.IntN(2)]
	fwd.target.Store(&survivor.mqtt)
	nodes[2].kill()
	killed := time.Now()
	t.Logf("killed node2; its devices reconnect to %s", survivor.mqtt)
	time.Sleep(sc.tail) // load after the kill
	for _, d := range []*device{dev["bob/b"], dev["carol/a"]} {
		reconnected := poll(30*time.Second, func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.connects >= 2
		})
		if !reconnected {
			t.Errorf("%s did not reconnect after node2 was killed (%v ago)", d.id, time.Since(killed).Round(time.Millisecond))
		}
	}
	l.check("cluster", func(r *report) { r.kills = nodes[2].kills })
}

// forwarder accepts TCP connections on addr and pipes each to the current
// target.
type forwarder struct {
	addr   string
	target atomic.Pointer[string]
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	f.target.Store(&target)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.pipe(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) track(c net.Conn, add bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

func (f *forwarder) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", *f.target.Load(), 3*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	f.track(c, true)
	f.track(up, true)
	defer f.track(c, false)
	defer f.track(up, false)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ended: close both
	c.Close()
	up.Close()
	<-done
}
