package send_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/testkit"
	"github.com/parley-im/parley/internal/wire"
)

// countingPrivacy counts Relation queries.
type countingPrivacy struct {
	history.Privacy
	n atomic.Int64
}

func (c *countingPrivacy) Relation(ctx context.Context, a, b string) (history.Relation, error) {
	c.n.Add(1)
	return c.Privacy.Relation(ctx, a, b)
}

// relSetup returns a Service over s with its Privacy counted.
func relSetup(t *testing.T, s history.Store, policy string) (*send.Service, *countingPrivacy, *recorder) {
	t.Helper()
	p := &countingPrivacy{Privacy: s.(history.Privacy)}
	rec := &recorder{}
	svc := &send.Service{Store: s, Groups: send.NewGroups(s), Deliver: rec, Privacy: p, DMPolicy: policy, Log: testkit.Logger()}
	if err := svc.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Committer.Close)
	return svc, p, rec
}

func sendDM(t *testing.T, svc *send.Service, from, to, payload string) *wire.Error {
	t.Helper()
	_, _, e := svc.Send(context.Background(), from, wire.TargetUser, to, []byte(payload))
	return e
}

// TestRelationCache: direct sends between two users who both wrote ask the
// store once; a block (ForgetRelation, as the REST API and the cluster
// broadcast call it) applies to the very next send from a warm cache, both
// ways, and so does the unblock; a new shared group lifts DMPolicy
// contacts at once; the first replies make typing reach the peer at once.
func TestRelationCache(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		ctx := context.Background()
		t.Run("Block", func(t *testing.T) {
			svc, p, _ := relSetup(t, s, send.DMOpen)
			if e := sendDM(t, svc, "alice", "bob", `{"body":1}`); e != nil {
				t.Fatal(e)
			}
			if e := sendDM(t, svc, "bob", "alice", `{"body":2}`); e != nil {
				t.Fatal(e)
			}
			// Bob's reply dropped the relation read before it (Talked
			// changed): this send reads it again, for good.
			if e := sendDM(t, svc, "alice", "bob", `{"body":3}`); e != nil {
				t.Fatal(e)
			}
			before := p.n.Load()
			for i := 0; i < 20; i++ {
				if e := sendDM(t, svc, "alice", "bob", fmt.Sprintf(`{"body":%d}`, i)); e != nil {
					t.Fatal(e)
				}
				if e := sendDM(t, svc, "bob", "alice", fmt.Sprintf(`{"body":%d}`, i)); e != nil {
					t.Fatal(e)
				}
			}
			if n := p.n.Load() - before; n != 0 {
				t.Fatalf("%d relation queries for 40 sends from a warm cache, want 0", n)
			}
			if err := p.Block(ctx, "bob", "alice", time.Now()); err != nil {
				t.Fatal(err)
			}
			svc.ForgetRelation("bob", "alice")
			if e := sendDM(t, svc, "alice", "bob", `{"body":"in?"}`); e == nil || e.Code != wire.CodeBlocked {
				t.Fatalf("send to the blocker right after the block: %v, want blocked", e)
			}
			if e := sendDM(t, svc, "bob", "alice", `{"body":"out"}`); e == nil || e.Code != wire.CodeBlocked {
				t.Fatalf("blocker's send right after the block: %v, want blocked", e)
			}
			if err := p.Unblock(ctx, "bob", "alice"); err != nil {
				t.Fatal(err)
			}
			svc.ForgetRelation("alice", "bob") // either order
			if e := sendDM(t, svc, "alice", "bob", `{"body":"again"}`); e != nil {
				t.Fatalf("send right after the unblock: %v", e)
			}
		})
		t.Run("GroupLiftsPolicy", func(t *testing.T) {
			svc, _, _ := relSetup(t, s, send.DMContacts)
			if e := sendDM(t, svc, "carol", "dave", `{"body":"hi"}`); e == nil || e.Code != wire.CodeNotAllowed {
				t.Fatalf("stranger: %v, want not_allowed", e)
			}
			if _, _, err := svc.CreateGroup(ctx, "carol", send.CreateGroupRequest{ID: "cd", Name: "CD", Members: []string{"dave"}}); err != nil {
				t.Fatal(err)
			}
			if e := sendDM(t, svc, "carol", "dave", `{"body":"hi"}`); e != nil {
				t.Fatalf("group mate right after the group: %v", e)
			}
		})
		t.Run("TypingAfterReply", func(t *testing.T) {
			svc, _, rec := relSetup(t, s, send.DMOpen)
			if e := sendDM(t, svc, "erin", "frank", `{"body":"hi"}`); e != nil {
				t.Fatal(e)
			}
			rec.Take()
			if e := sendDM(t, svc, "erin", "frank", `{"ephemeral":true,"type":"typing","body":{}}`); e != nil {
				t.Fatal(e)
			}
			if d := rec.one(t); len(d.users) != 0 {
				t.Fatalf("typing before a reply reached %v", d.users)
			}
			if e := sendDM(t, svc, "frank", "erin", `{"body":"hello"}`); e != nil {
				t.Fatal(e)
			}
			rec.Take()
			if e := sendDM(t, svc, "erin", "frank", `{"ephemeral":true,"type":"typing","body":{}}`); e != nil {
				t.Fatal(e)
			}
			if d := rec.one(t); len(d.users) != 1 || d.users[0] != "frank" {
				t.Fatalf("typing right after the reply reached %v, want frank", d.users)
			}
		})
	})
}

// nopDeliverer delivers nothing.
type nopDeliverer struct{}

func (nopDeliverer) DeliverMessage([]string, history.Message) {}
func (nopDeliverer) DeliverEvent([]string, []byte, byte)      {}

// BenchmarkSendDirect: a whole direct send (check, group commit on SQLite,
// fan-out to nobody) with the relation from a warm cache: the
// relation-queries/op metric should stay at 0.
func BenchmarkSendDirect(b *testing.B) {
	s := testkit.OpenSQLite(b)
	p := &countingPrivacy{Privacy: s.(history.Privacy)}
	svc := &send.Service{Store: s, Groups: send.NewGroups(s), Deliver: nopDeliverer{}, Privacy: p, Log: testkit.Logger()}
	if err := svc.Init(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(svc.Committer.Close)
	ctx := context.Background()
	payload := []byte(`{"body":"x"}`)
	svc.Send(ctx, "bob", wire.TargetUser, "alice", payload)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, e := svc.Send(ctx, "alice", wire.TargetUser, "bob", payload); e != nil {
			b.Fatal(e)
		}
	}
	b.ReportMetric(float64(p.n.Load())/float64(b.N), "relation-queries/op")
}
