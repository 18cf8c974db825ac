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

// notice returns what to print when the connection goes down or comes back.
func notice(up bool) string {
	if up {
		return noticeReconnected
	}
	return noticeLost
}
