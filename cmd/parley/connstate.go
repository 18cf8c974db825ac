package main

import (
	"context"
	"time"

	"github.com/parley-im/parley/clients/parley"
)

// connPoll is how often watchConnection looks at the connection.
const connPoll = 200 * time.Millisecond

// Connection notices, in the words of chat and listen.
const (
	noticeLost        = "— connection lost, reconnecting…"
	noticeReconnected = "— reconnected"
)

// watchConnection reports each change of cl's connection state (false:
// lost, true: back) until ctx ends. The client reconnects by itself; this
// only lets a command say so in its own words instead of the SDK's log
// lines.
func watchConnection(ctx context.Context, cl *parley.Client) <-chan bool {
	ch := make(chan bool, 1)
	go func() {
		t := time.NewTicker(connPoll)
		defer t.Stop()
		up := true
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if now := cl.Connected(); now != up {
				up = now
				select {
				case ch <- up:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}

// connNotices turns connection states into notices, each change once.
// Events that arrive show that the connection is back, maybe before
// watchConnection says so: eventArrived on each keeps the notice before
// them.
type connNotices struct{ down bool }

// seen returns the notice for the state up, or "" when it did not change.
func (n *connNotices) seen(up bool) string {
	switch {
	case up && n.down:
		n.down = false
		return noticeReconnected
	case !up && !n.down:
		n.down = true
		return noticeLost
	}
	return ""
}

// eventArrived returns the notice due before an event that arrived while
// the client's connection state was connected, or "". An event shows that
// the connection is back but not that it is lost: the client may have
// received it before it lost the connection.
func (n *connNotices) eventArrived(connected bool) string {
	if !connected {
		return ""
	}
	return n.seen(true)
}
