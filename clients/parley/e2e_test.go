package parley_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/clients/parley"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestDirect: a direct message reaches the peer and comes back to the
// sender as the echo, with the seq and id Send returned.
func TestDirect(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "phone")
		bob := e.dial("bob", "laptop")
		ctx := ctxT(t)
		m := mustSend(t, ctx, alice, parley.User("bob"), "hi bob")
		if m.Conv != "dm:alice:bob" || m.Seq != 1 || m.ID == "" || m.From != "alice" || m.Text() != "hi bob" || m.Type != "text" {
			t.Fatalf("Send returned %+v", m)
		}
		got := messages(t, bob, m.Conv, 1)[0]
		if got.ID != m.ID || got.Seq != 1 || got.From != "alice" || got.Text() != "hi bob" || got.TS.IsZero() {
			t.Fatalf("bob got %+v, want %+v", got, m)
		}
		if echo := messages(t, alice, m.Conv, 1)[0]; echo.ID != m.ID {
			t.Fatalf("alice's echo %+v", echo)
		}
		// A reply with a JSON body and a type.
		r := mustSend(t, ctx, bob, parley.User("alice"), map[string]any{"lat": 1.5}, parley.WithType("location"))
		if r.Seq != 2 || r.Type != "location" {
			t.Fatalf("reply %+v", r)
		}
		var body struct{ Lat float64 }
		got = messages(t, alice, r.Conv, 1)[0]
		if err := got.Decode(&body); err != nil || body.Lat != 1.5 || got.From != "bob" {
			t.Fatalf("alice got %+v (%v)", got, err)
		}
	})
}

// TestGroup: group creation, sends and membership changes reach every
// member in order; a removed member gets ErrNotMember.
func TestGroup(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		carol := e.dial("carol", "c")
		ctx := ctxT(t)
		g, err := alice.CreateGroup(ctx, parley.NewGroup{ID: "team", Name: "Team", Members: []string{"bob", "carol"}})
		if err != nil {
			t.Fatal(err)
		}
		if g.ID != "team" || g.Conv != "g:team" || g.CreatedBy != "alice" || len(g.Members) != 3 || g.Members[0] != (parley.Member{User: "alice", Role: "owner"}) {
			t.Fatalf("CreateGroup = %+v", g)
		}
		m := mustSend(t, ctx, bob, parley.Group("team"), "hello team")
		if m.Conv != "g:team" || m.Seq != 2 {
			t.Fatalf("Send = %+v", m)
		}
		for _, c := range []*parley.Client{alice, bob, carol} {
			ms := messages(t, c, "g:team", 2)
			if ms[0].Type != "group.created" || ms[1].ID != m.ID || ms[1].From != "bob" {
				t.Fatalf("%s got %+v", c.ClientID(), ms)
			}
		}
		ch, err := alice.AddMember(ctx, "team", "dave", "admin")
		if err != nil {
			t.Fatal(err)
		}
		if ch.Message.Type != "member.added" || ch.Message.Seq != 3 || len(ch.Members) != 4 {
			t.Fatalf("AddMember = %+v", ch)
		}
		got, err := carol.Group(ctx, "team")
		if err != nil || len(got.Members) != 4 {
			t.Fatalf("Group = %+v, %v", got, err)
		}
		if _, err := alice.RemoveMember(ctx, "team", "carol"); err != nil {
			t.Fatal(err)
		}
		ms := messages(t, carol, "g:team", 2)
		if ms[0].Type != "member.added" || ms[1].Type != "member.removed" {
			t.Fatalf("carol got %+v", ms)
		}
		_, err = carol.Send(ctx, parley.Group("team"), "still here?")
		var se *parley.ServerError
		if !errors.Is(err, parley.ErrNotMember) || !errors.As(err, &se) || se.Code != "not_member" {
			t.Fatalf("send after removal: %v", err)
		}
		if _, err := carol.Group(ctx, "team"); !errors.Is(err, parley.ErrNotFound) {
			t.Fatalf("Group after removal: %v", err)
		}
		if _, err := bob.AddMember(ctx, "team", "erin", ""); !errors.Is(err, parley.ErrForbidden) {
			t.Fatalf("AddMember by a plain member: %v", err)
		}
		if _, err := alice.CreateGroup(ctx, parley.NewGroup{ID: "team", Name: "Again"}); !errors.Is(err, parley.ErrConflict) {
			t.Fatalf("CreateGroup with a taken id: %v", err)
		}
	})
}

// TestSendErrors: every refusal is a typed error.
func TestSendErrors(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.MaxPayload = 1024 })
		alice := e.dial("alice", "a", func(o *parley.Options) { o.MaxPayload = -1 })
		bob := e.dial("bob", "b")
		ctx := ctxT(t)
		if _, err := bob.CreateGroup(ctx, parley.NewGroup{ID: "secret", Name: "Secret"}); err != nil {
			t.Fatal(err)
		}
		messages(t, bob, "g:secret", 1)
		cases := []struct {
			name string
			to   parley.Target
			body any
			opts []parley.SendOption
			want error
			code string
		}{
			{"ErrNotMember", parley.Group("secret"), "let me in", nil, parley.ErrNotMember, "not_member"},
			{"ErrNoSuchGroup", parley.Group("nope"), "anyone?", nil, parley.ErrNoSuchGroup, "no_such_group"},
			{"ErrInvalidPeer", parley.User("alice"), "me", nil, parley.ErrInvalidPeer, "invalid_peer"},
			{"ErrInvalidPeerMalformed", parley.User("bad!id"), "x", nil, parley.ErrInvalidPeer, "invalid_peer"},
			{"ErrInvalidPayload", parley.User("bob"), "x", []parley.SendOption{parley.WithType("member.added")}, parley.ErrInvalidPayload, "invalid_payload"},
			{"ErrTooLarge", parley.User("bob"), strings.Repeat("x", 2000), nil, parley.ErrTooLarge, "too_large"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := alice.Send(ctx, tc.to, tc.body, tc.opts...)
				var se *parley.ServerError
				if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.Code != tc.code {
					t.Fatalf("Send = %v, want %v", err, tc.want)
				}
			})
		}
		t.Run("ErrTooLargeLocal", func(t *testing.T) {
			_, err := bob.Send(ctx, parley.User("alice"), strings.Repeat("x", 70000))
			var tl *parley.TooLargeError
			if !errors.Is(err, parley.ErrTooLarge) || !errors.As(err, &tl) || tl.Limit != parley.DefaultMaxPayload {
				t.Fatalf("Send = %v", err)
			}
			want := fmt.Sprintf("parley: message of %d bytes is larger than the server's limit of 65536 bytes", tl.Size)
			if err.Error() != want {
				t.Fatalf("Send = %q, want %q", err, want)
			}
		})
		t.Run("NilBody", func(t *testing.T) {
			if _, err := bob.Send(ctx, parley.User("alice"), nil); !errors.Is(err, parley.ErrInvalidPayload) {
				t.Fatalf("Send = %v", err)
			}
		})
		noMessage(t, bob, 200*time.Millisecond)
	})
}

// TestRateLimited: sends beyond the rate get ErrRateLimited.
func TestRateLimited(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.Rate, o.Burst = 1, 2 })
	alice := e.dial("alice", "a")
	ctx := ctxT(t)
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		_, err = alice.Send(ctx, parley.User("bob"), i)
	}
	if !errors.Is(err, parley.ErrRateLimited) {
		t.Fatalf("Send = %v, want ErrRateLimited", err)
	}
}

// TestDedup: a send repeated with the same cid is stored once and surfaced
// once, on the sender's devices and the peer's, though the echo comes again.
func TestDedup(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "a")
		alice2 := e.dial("alice", "b")
		bob := e.dial("bob", "b")
		ctx := ctxT(t)
		first := mustSend(t, ctx, alice, parley.User("bob"), "once", parley.WithCID("cid-1"))
		again := mustSend(t, ctx, alice, parley.User("bob"), "twice?", parley.WithCID("cid-1"))
		if again.ID != first.ID || again.Seq != first.Seq || again.Text() != "once" {
			t.Fatalf("retry = %+v, want %+v", again, first)
		}
		next, err := alice.Send(ctx, parley.User("bob"), "next")
		if err != nil || next.Seq != first.Seq+1 {
			t.Fatalf("next = %+v, %v", next, err)
		}
		for _, c := range []*parley.Client{alice, alice2, bob} {
			ms := messages(t, c, first.Conv, 2)
			if !slices.Equal(seqsOf(ms), []int64{1, 2}) {
				t.Fatalf("%s surfaced %v", c.ClientID(), seqsOf(ms))
			}
			noMessage(t, c, 200*time.Millisecond)
		}
	})
}

// TestOrdered: concurrent senders in several conversations; every device
// surfaces each conversation in seq order, each message once, also across
// its own reconnection.
func TestOrdered(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		bob := e.dial("bob", "b")
		owner := e.dial("carol", "c")
		if _, err := owner.CreateGroup(ctx, parley.NewGroup{ID: "crew", Name: "Crew", Members: []string{"alice", "bob", "dave"}}); err != nil {
			t.Fatal(err)
		}
		const n = 40
		var wg sync.WaitGroup
		for _, u := range []string{"alice", "dave", "erin"} {
			c := e.dial(u, "x")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					to := parley.User("bob")
					if i%2 == 1 && c.User() != "erin" {
						to = parley.Group("crew")
					}
					if _, err := c.Send(ctx, to, fmt.Sprintf("%s %d", c.User(), i)); err != nil {
						t.Errorf("%s: %v", c.User(), err)
						return
					}
				}
			}()
		}
		wg.Wait()
		want := map[string]int64{"dm:alice:bob": n / 2, "dm:bob:dave": n / 2, "dm:bob:erin": n, "g:crew": 1 + n}
		last := map[string]int64{}
		total := 0
		for _, v := range want {
			total += int(v)
		}
		deadline := time.After(30 * time.Second)
		for got := 0; got < total; {
			select {
			case ev := <-bob.Events():
				if ev.Kind != parley.EventMessage {
					continue
				}
				m := ev.Message
				if m.Seq != last[m.Conv]+1 {
					t.Fatalf("%s: seq %d after %d", m.Conv, m.Seq, last[m.Conv])
				}
				last[m.Conv] = m.Seq
				got++
			case <-deadline:
				t.Fatalf("surfaced %v, want %v", last, want)
			}
		}
		for conv, n := range want {
			if last[conv] != n {
				t.Fatalf("%s: last seq %d, want %d", conv, last[conv], n)
			}
		}
		noMessage(t, bob, 300*time.Millisecond)
	})
}

// TestGapFill: a catch-up larger than the server's limit starts with a gap
// event; the client fills it from the REST history and surfaces every
// message in order. Needs GET /v1/conversations/{conv}/messages.
func TestGapFill(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.CatchupLimit = 5 })
		ctx := ctxT(t)
		bob := e.dial("bob", "phone")
		bob.Close()
		alice := e.dial("alice", "a")
		var acked []parley.Message
		for i := range 23 {
			m := mustSend(t, ctx, alice, parley.User("bob"), i)
			acked = append(acked, m)
		}
		var gaps atomic.Int32
		bob = e.dial("bob", "phone", func(o *parley.Options) { o.ReportGaps = true })
		got := make([]parley.Message, 0, len(acked))
		deadline := time.After(30 * time.Second)
		for len(got) < len(acked) {
			select {
			case ev := <-bob.Events():
				switch ev.Kind {
				case parley.EventGap:
					gaps.Add(1)
					if ev.Gap.After != 0 || ev.Gap.Before != 19 {
						t.Errorf("gap %+v, want after 0 before 19", ev.Gap)
					}
				case parley.EventError:
					t.Fatalf("error event: %v", ev.Err)
				case parley.EventMessage:
					got = append(got, ev.Message)
				}
			case <-deadline:
				t.Fatalf("surfaced %v", seqsOf(got))
			}
		}
		for i, m := range got {
			if m.ID != acked[i].ID || m.Seq != int64(i+1) {
				t.Fatalf("message %d: %+v, want %+v", i, m, acked[i])
			}
		}
		if gaps.Load() != 1 {
			t.Fatalf("%d gap events, want 1", gaps.Load())
		}
		noMessage(t, bob, 200*time.Millisecond)
	})
}

// TestReceipts: read markers and delivery receipts reach the sender, and
// the reader's other device.
func TestReceipts(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		bob2 := e.dial("bob", "tablet")
		m := mustSend(t, ctx, alice, parley.User("bob"), "read me")
		messages(t, bob, m.Conv, 1)
		d := nextEvent(t, alice, parley.EventDelivered)
		if d.Receipt != (parley.Receipt{Conv: m.Conv, User: "bob", Seq: 1}) {
			t.Fatalf("delivered %+v", d.Receipt)
		}
		if err := bob.MarkRead(ctx, m.Conv, m.Seq); err != nil {
			t.Fatal(err)
		}
		// The reader's other device gets the reader's counts after the
		// move; the sender gets none.
		if r := nextEvent(t, alice, parley.EventRead); r.Receipt != (parley.Receipt{Conv: m.Conv, User: "bob", Seq: 1}) {
			t.Fatalf("%s: read %+v", alice.ClientID(), r.Receipt)
		}
		if r := nextEvent(t, bob2, parley.EventRead); r.Receipt != (parley.Receipt{Conv: m.Conv, User: "bob", Seq: 1, HasCounts: true}) {
			t.Fatalf("%s: read %+v", bob2.ClientID(), r.Receipt)
		}
		// What the events said, for a device that was offline: bob's
		// marker, and his devices' cursor once written (every 200 ms).
		want := parley.Receipts{Conv: m.Conv, Members: []parley.MemberReceipt{{User: "bob", ReadSeq: 1, DeliveredSeq: 1}}}
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := alice.Receipts(ctx, m.Conv)
			if err == nil && fmt.Sprint(got) == fmt.Sprint(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Receipts = %+v, %v; want %+v", got, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := alice.Receipts(ctx, "g:nope"); !errors.Is(err, parley.ErrNotMember) {
			t.Fatalf("Receipts of a foreign conversation: %v", err)
		}
		if _, err := alice.Receipts(ctx, "nope"); !errors.Is(err, parley.ErrNotFound) {
			t.Fatalf("Receipts of no conversation: %v", err)
		}
		if err := bob.MarkRead(ctx, "g:nope", 1); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, bob, parley.EventError); !errors.Is(ev.Err, parley.ErrNotMember) {
			t.Fatalf("read marker in a foreign conversation: %v", ev.Err)
		}
		if err := bob.MarkRead(ctx, m.Conv, 0); !errors.Is(err, parley.ErrInvalidPayload) {
			t.Fatalf("MarkRead(0) = %v", err)
		}
	})
}

// TestTypingAndPresence: typing indicators are ephemeral events; presence
// flips when the watched user comes and goes; strangers' presence is
// refused.
func TestTypingAndPresence(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	ctx := ctxT(t)
	alice := e.dial("alice", "a")
	bob := e.dial("bob", "b")
	mustSend(t, ctx, alice, parley.User("bob"), "hi")
	mustSend(t, ctx, bob, parley.User("alice"), "hi") // contacts: both wrote
	nextEvent(t, bob, parley.EventMessage)
	nextEvent(t, bob, parley.EventMessage)
	if err := alice.Typing(ctx, parley.User("bob")); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, bob, parley.EventEphemeral)
	if ev.Message.Type != "typing" || ev.Message.From != "alice" || ev.Message.Conv != "dm:alice:bob" || ev.Message.Seq != 0 {
		t.Fatalf("typing %+v", ev.Message)
	}
	if err := bob.Presence(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if p := nextEvent(t, bob, parley.EventPresence).Presence; p.User != "alice" || !p.Online || p.LastSeen.IsZero() {
		t.Fatalf("presence %+v", p)
	}
	alice.Close()
	if p := nextEvent(t, bob, parley.EventPresence).Presence; p.User != "alice" || p.Online {
		t.Fatalf("presence after close %+v", p)
	}
	if err := bob.Presence(ctx, "mallory"); !errors.Is(err, parley.ErrForbidden) {
		t.Fatalf("presence of a stranger: %v", err)
	}
}

// TestREST: history pages, conversations and sync. Needs the REST API of
// conversations, messages and sync.
func TestREST(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice := e.dial("alice", "a")
		for i := range 5 {
			mustSend(t, ctx, alice, parley.User("bob"), i)
		}
		p, err := alice.History(ctx, "dm:alice:bob", parley.HistoryOptions{Forward: true, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqsOf(p.Messages), []int64{1, 2, 3}) || p.Next != 3 {
			t.Fatalf("first page %v next %d", seqsOf(p.Messages), p.Next)
		}
		if p, err = alice.History(ctx, "dm:alice:bob", parley.HistoryOptions{After: p.Next, Limit: 3}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqsOf(p.Messages), []int64{4, 5}) || p.Next != 0 {
			t.Fatalf("second page %v next %d", seqsOf(p.Messages), p.Next)
		}
		if p, err = alice.History(ctx, "dm:alice:bob", parley.HistoryOptions{Limit: 2}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqsOf(p.Messages), []int64{5, 4}) || p.Next != 4 {
			t.Fatalf("latest %v next %d", seqsOf(p.Messages), p.Next)
		}
		if p, err = alice.History(ctx, "dm:alice:bob", parley.HistoryOptions{Before: p.Next, Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqsOf(p.Messages), []int64{3, 2, 1}) || p.Next != 0 {
			t.Fatalf("before %v next %d", seqsOf(p.Messages), p.Next)
		}
		if _, err := alice.History(ctx, "dm:bob:carol", parley.HistoryOptions{}); !errors.Is(err, parley.ErrNotMember) && !errors.Is(err, parley.ErrNotFound) {
			t.Fatalf("someone else's history: %v", err)
		}

		cs, err := alice.Conversations(ctx, parley.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Conversations) != 1 {
			t.Fatalf("conversations %+v", cs)
		}
		c := cs.Conversations[0]
		if c.ID != "dm:alice:bob" || c.Kind != "direct" || c.Peer != "bob" || c.LastSeq != 5 || c.LastMessage == nil || c.LastMessage.Seq != 5 {
			t.Fatalf("conversation %+v", c)
		}

		snap, err := alice.Sync(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Conversations) != 1 || snap.Next == "" || len(snap.Conversations[0].Messages) == 0 {
			t.Fatalf("snapshot %+v", snap)
		}
		mustSend(t, ctx, alice, parley.User("carol"), "new")
		ch, err := alice.Sync(ctx, snap.Next)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Conversations) != 1 || ch.Conversations[0].ID != "dm:alice:carol" {
			t.Fatalf("changes %+v", ch)
		}
	})
}

// TestWebSocket: the client works over MQTT over WebSocket.
func TestWebSocket(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	ws := func(o *parley.Options) { o.Broker = "ws://" + e.Addr("ws") + "/mqtt" }
	alice := e.dial("alice", "a", ws)
	bob := e.dial("bob", "b", ws)
	m := mustSend(t, ctxT(t), alice, parley.User("bob"), "over ws")
	if got := messages(t, bob, m.Conv, 1)[0]; got.ID != m.ID {
		t.Fatalf("got %+v", got)
	}
}

// TestHandler: with a handler, events go to it and Events is nil.
func TestHandler(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	got := make(chan parley.Event, 10)
	bob := e.dial("bob", "b", func(o *parley.Options) { o.Handler = func(ev parley.Event) { got <- ev } })
	if bob.Events() != nil {
		t.Fatal("Events() is not nil with a handler")
	}
	alice := e.dial("alice", "a")
	m := mustSend(t, ctxT(t), alice, parley.User("bob"), "to the handler")
	select {
	case ev := <-got:
		if ev.Kind != parley.EventMessage || ev.Message.ID != m.ID {
			t.Fatalf("handler got %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler got nothing")
	}
}

// TestDial: refusals are returned at once; a TokenSource is asked on every
// connection, reconnections included.
func TestDial(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	t.Run("BadToken", func(t *testing.T) {
		o := e.options("alice", "a")
		o.Token = o.Token[:len(o.Token)-4] + "AAAA"
		// "At once": the refusal is returned, not retried until the
		// context ends; the time it took is reported.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		start := time.Now()
		_, err := parley.Dial(ctx, o)
		took := time.Since(start)
		t.Logf("refused after %v", took.Round(time.Millisecond))
		if err == nil || !strings.Contains(err.Error(), "refused") || ctx.Err() != nil {
			t.Fatalf("Dial = %v after %v, want a refusal before the context ends", err, took)
		}
	})
	t.Run("NotAJWT", func(t *testing.T) {
		o := e.options("alice", "a")
		o.Token = "nonsense"
		if _, err := parley.Dial(context.Background(), o); err == nil {
			t.Fatal("Dial succeeded")
		}
	})
	t.Run("BadDevice", func(t *testing.T) {
		o := e.options("alice", "a")
		o.Device = "a/b"
		if _, err := parley.Dial(context.Background(), o); err == nil || !strings.Contains(err.Error(), "device") {
			t.Fatalf("Dial = %v", err)
		}
	})
	t.Run("NoServer", func(t *testing.T) {
		o := e.options("alice", "a")
		o.Broker = "tcp://127.0.0.1:1"
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		if _, err := parley.Dial(ctx, o); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial = %v", err)
		}
	})
	t.Run("NoServerFailFast", func(t *testing.T) {
		o := e.options("alice", "a")
		o.Broker = "tcp://127.0.0.1:1"
		o.FailFast = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := parley.Dial(ctx, o)
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "connect to tcp://127.0.0.1:1") {
			t.Fatalf("Dial = %v, want the first failure before the context ends", err)
		}
	})
	t.Run("TokenSource", func(t *testing.T) {
		var calls atomic.Int32
		alice := e.dial("alice", "ts", func(o *parley.Options) {
			o.Token = ""
			o.TokenSource = func(context.Context) (string, error) {
				calls.Add(1)
				return testkit.Token(t, "alice"), nil
			}
		})
		before := calls.Load()
		e.Restart(100 * time.Millisecond)
		deadline := time.Now().Add(15 * time.Second)
		for !alice.Connected() || calls.Load() == before {
			if time.Now().After(deadline) {
				t.Fatalf("not reconnected; %d token calls", calls.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
		mustSend(t, ctxT(t), alice, parley.User("bob"), "after restart")
	})
}
