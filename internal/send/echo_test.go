package send_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/testkit"
	"github.com/parley-im/parley/internal/wire"
)

// split separates the message deliveries from the event deliveries.
func split(all []delivery) (messages, events []delivery) {
	for _, d := range all {
		if d.event {
			events = append(events, d)
		} else {
			messages = append(messages, d)
		}
	}
	return messages, events
}

// TestSendEchoes: a stored message is handed to every member of its
// conversation, the sender included (the echo, which the sender's other
// devices rely on), with the body, id and seq that the sender was answered
// with; a retry of the same cid is echoed to the sender alone.
func TestSendEchoes(t *testing.T) {
	ctx := context.Background()
	store := testkit.OpenSQLite(t)
	rec := &recorder{}
	svc := &send.Service{Store: store, Groups: send.NewGroups(store), Deliver: rec}
	if err := svc.Init(); err != nil {
		t.Fatal(err)
	}
	defer svc.Committer.Close()

	check := func(what string, m history.Message, want []string) {
		t.Helper()
		msgs, _ := split(rec.Take())
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages delivered, want 1", what, len(msgs))
		}
		d := msgs[0]
		if !slices.Equal(d.users, want) {
			t.Fatalf("%s: delivered to %v, want %v (the sender's echo included)", what, d.users, want)
		}
		if d.msg.Conv != m.Conv || d.msg.Seq != m.Seq || d.msg.ID != m.ID || d.msg.CID != m.CID || d.msg.From != m.From || string(d.msg.Body) != string(m.Body) {
			t.Fatalf("%s: delivered %+v, the sender was answered with %+v", what, d.msg, m)
		}
	}

	// Direct.
	m, created, serr := svc.Send(ctx, "alice", wire.TargetUser, "bob", []byte(`{"cid":"d1","body":{"text":"hi bob"}}`))
	if serr != nil || !created || m.Seq != 1 || string(m.Body) != `{"text":"hi bob"}` {
		t.Fatalf("direct send: %+v created %v, %v", m, created, serr)
	}
	check("direct", m, []string{"alice", "bob"})

	// Group: the creation message, then a send.
	if _, _, err := svc.CreateGroup(ctx, "carol", send.CreateGroupRequest{ID: "crew", Name: "Crew", Members: []string{"alice", "bob"}}); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := split(rec.Take()); len(msgs) != 1 || !slices.Equal(msgs[0].users, []string{"alice", "bob", "carol"}) {
		t.Fatalf("group.created delivered as %+v, want once to alice, bob and carol", msgs)
	}
	g, created, serr := svc.Send(ctx, "alice", wire.TargetGroup, "crew", []byte(`{"cid":"g1","body":"hi crew"}`))
	if serr != nil || !created || g.Seq != 2 {
		t.Fatalf("group send: %+v created %v, %v", g, created, serr)
	}
	check("group", g, []string{"alice", "bob", "carol"})

	// A retry of d1: the original, echoed to the sender only.
	again, created, serr := svc.Send(ctx, "alice", wire.TargetUser, "bob", []byte(`{"cid":"d1","body":"changed"}`))
	if serr != nil || created || again.ID != m.ID || again.Seq != m.Seq {
		t.Fatalf("retry: %+v created %v, %v; want the original %s seq %d", again, created, serr, m.ID, m.Seq)
	}
	msgs, events := split(rec.Take())
	if len(msgs) != 0 || len(events) != 1 || !slices.Equal(events[0].users, []string{"alice"}) {
		t.Fatalf("retry delivered messages %+v and events %+v; want one echo event to alice", msgs, events)
	}
	var echo wire.Delivery
	if err := json.Unmarshal(events[0].payload, &echo); err != nil || echo.Kind != "message" || echo.Seq != m.Seq || echo.ID != m.ID ||
		echo.CID != "d1" || string(echo.Body) != `{"text":"hi bob"}` {
		t.Fatalf("retry echo %s (%v); want the original message", events[0].payload, err)
	}
}
