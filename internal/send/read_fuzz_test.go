package send_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/testkit"
	"github.com/parley-im/parley/internal/wire"
)

// FuzzReadRequest feeds arbitrary im/read payloads, decoded as the MQTT path
// decodes them (a wire.ReadRequest; a payload that does not decode or names
// no conv is invalid_payload), to MarkRead as alice, on a store where alice
// has a direct conversation with bob (3 messages) and a group (2 messages).
// MarkRead never fails with anything but invalid_payload or not_member, and
// a marker that moves only moves forward, to the seq asked for, within the
// conversation.
func FuzzReadRequest(f *testing.F) {
	ctx := context.Background()
	s := testkit.OpenSQLite(f)
	now := time.Now()
	for i := 0; i < 3; i++ {
		if _, _, err := s.Append(ctx, history.NewMessage{Conv: "dm:alice:bob", ID: history.NewID(now), From: "alice", TS: now, Type: "text", Body: json.RawMessage(`1`)}); err != nil {
			f.Fatal(err)
		}
	}
	g := history.Group{ID: "team", Name: "team", CreatedBy: "alice", CreatedAt: now}
	members := []history.Member{{User: "alice", Role: history.RoleOwner}, {User: "carol", Role: history.RoleMember}}
	if _, err := s.CreateGroup(ctx, g, members, history.NewMessage{Conv: "g:team", ID: history.NewID(now), From: "alice", TS: now,
		Type: history.TypeGroupCreated, Body: json.RawMessage(`{}`)}); err != nil {
		f.Fatal(err)
	}
	if _, _, err := s.Append(ctx, history.NewMessage{Conv: "g:team", ID: history.NewID(now), From: "carol", TS: now, Type: "text", Body: json.RawMessage(`2`)}); err != nil {
		f.Fatal(err)
	}
	last := map[string]int64{"dm:alice:bob": 3, "g:team": 2}
	m := &send.Service{Store: s, Groups: send.NewGroups(s), Deliver: discard{},
		Log: testkit.Logger()}
	if err := m.Init(); err != nil {
		f.Fatal(err)
	}

	for _, seed := range []string{
		`{"conv":"dm:alice:bob","seq":2}`,
		`{"conv":"dm:alice:bob","seq":1}`,
		`{"conv":"g:team","seq":0}`,
		`{"conv":"g:team","seq":3}`,
		`{"conv":"dm:bob:carol","seq":1}`,
		`{"conv":"dm:alice:alice","seq":1}`,
		`{"conv":"g:nope","seq":1}`,
		`{"conv":"dm:alice:bob","seq":-1}`,
		`{"conv":"dm:alice:bob","seq":9223372036854775807}`,
		`{"conv":"dm:alice:bob","seq":1.0}`,
		`{"conv":"dm:alice:bob","seq":"1"}`,
		`{"conv":"","seq":1}`,
		`{"conv":"dm:bob:alice","seq":1}`,
		`[]`,
		`{"CONV":"g:team","Seq":2,"x":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var req wire.ReadRequest
		if json.Unmarshal(payload, &req) != nil || req.Conv == "" {
			return // invalid_payload before MarkRead
		}
		// The marker before, read from the store for this input alone (a
		// seq of 0 never moves it): no state is kept between inputs.
		before, _ := m.MarkRead(ctx, "alice", req.Conv, 0)
		after, serr := m.MarkRead(ctx, "alice", req.Conv, req.Seq)
		if serr != nil {
			if serr.Code != wire.CodeInvalidPayload && serr.Code != wire.CodeNotMember {
				t.Fatalf("MarkRead(%q, %d): code %q (%s)", req.Conv, req.Seq, serr.Code, serr.Message)
			}
			if serr.Message == "" {
				t.Fatalf("MarkRead(%q, %d): error without a message", req.Conv, req.Seq)
			}
			return
		}
		n, ok := last[req.Conv]
		if !ok {
			t.Fatalf("MarkRead(%q, %d) = %d: accepted a conversation alice is not in", req.Conv, req.Seq, after)
		}
		if req.Seq < 0 || req.Seq > n {
			t.Fatalf("MarkRead(%q, %d) = %d: accepted a seq outside 0..%d", req.Conv, req.Seq, after, n)
		}
		if want := max(before, req.Seq); after != want {
			t.Fatalf("MarkRead(%q, %d) = %d, want %d (markers only move forward)", req.Conv, req.Seq, after, want)
		}
	})
}

// discard is a Deliverer that delivers nowhere.
type discard struct{}

func (discard) DeliverMessage([]string, history.Message) {}
func (discard) DeliverEvent([]string, []byte, byte)      {}
