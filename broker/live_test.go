package broker_test

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// nextMessage returns the next stored message (kind "message") on c that
// c has not seen yet, skipping receipts, other events, echoes and
// redeliveries, as a client that dedups by (conv, seq) does.
func (c *client) nextMessage() event {
	c.t.Helper()
	if c.seen == nil {
		c.seen = map[string]int64{}
	}
	for {
		ev := c.nextKind("message")
		if ev.Seq > c.seen[ev.Conv] {
			c.seen[ev.Conv] = ev.Seq
			return ev
		}
	}
}

// post publishes payload, a send or op that stores a message, and returns
// its echo on c's own inbox.
func (c *client) post(topic, payload string) event {
	c.t.Helper()
	c.send(topic, 1, payload)
	return c.nextMessage()
}

// expectError publishes payload to topic and expects an error event with
// code on c's inbox (c is a v3 client: the publish itself is acked).
func (c *client) expectError(topic, payload, code string) {
	c.t.Helper()
	c.send(topic, 1, payload)
	if ev := c.nextKind("error"); ev.Code != code {
		c.t.Fatalf("%s: publish %s: error %q (%s), want %q", c.id, payload, ev.Code, ev.Message, code)
	}
}

// liveMessage is a message item of the REST API.
type liveMessage struct {
	Seq       int64                              `json:"seq"`
	From      string                             `json:"from"`
	Type      string                             `json:"type"`
	Body      any                                `json:"body"`
	ReplyTo   int64                              `json:"reply_to"`
	Mentions  []string                           `json:"mentions"`
	Target    int64                              `json:"target"`
	Emoji     string                             `json:"emoji"`
	EditedAt  *string                            `json:"edited_at"`
	Deleted   bool                               `json:"deleted"`
	Reactions map[string]struct{ Count, Me any } `json:"reactions"`
}

// liveConv is a conversation item of the REST API.
type liveConv struct {
	ID         string  `json:"id"`
	Unread     int64   `json:"unread"`
	Mentions   int64   `json:"mentions"`
	MutedUntil *string `json:"muted_until"`
	Archived   bool    `json:"archived"`
	Pinned     bool    `json:"pinned"`
}

func (e *env) conversation(user, conv string) liveConv {
	e.t.Helper()
	var out struct{ Conversations []liveConv }
	if st := e.do("GET", "/v1/conversations", user, "", &out); st != 200 {
		e.t.Fatalf("GET /v1/conversations as %s: %d", user, st)
	}
	for _, c := range out.Conversations {
		if c.ID == conv {
			return c
		}
	}
	e.t.Fatalf("%s has no conversation %s: %+v", user, conv, out.Conversations)
	return liveConv{}
}

func (e *env) message(user, conv string, seq int64) liveMessage {
	e.t.Helper()
	var m liveMessage
	if st := e.do("GET", fmt.Sprintf("/v1/conversations/%s/messages/%d", conv, seq), user, "", &m); st != 200 {
		e.t.Fatalf("GET message %d of %s as %s: %d", seq, conv, user, st)
	}
	return m
}

// TestMessagesLive drives every op over real sockets on both stores:
// replies, mentions, edits, reactions and deletes reach online devices and,
// in order through catch-up, a device that was offline; a delete erases the
// bodies from the database; cid retries store nothing twice; refusals carry
// their codes.
func TestMessagesLive(t *testing.T) {
	testkit.ForEachStoreSQL(t, func(t *testing.T, s history.Store, db *sql.DB) {
		e := setup(t, s)
		const dm = "dm:alice:bob"
		alice := e.dial("alice", "alice", dialOpts{v5: true})
		bob := e.dial("bob/phone", "bob", dialOpts{})
		laptop := e.dial("bob/laptop", "bob", dialOpts{persistent: true})

		alice.post("im/send/u/bob", `{"cid":"a1","body":"hi bob"}`)
		if m := bob.nextMessage(); m.Seq != 1 || string(m.Body) != `"hi bob"` {
			t.Fatalf("bob got %+v", m)
		}
		laptop.nextMessage()

		// A reply that mentions alice.
		bob.post("im/send/u/alice", `{"cid":"b1","body":"hi alice","reply_to":1,"mentions":["alice"]}`)
		if m := alice.nextMessage(); m.Seq != 2 || m.ReplyTo != 1 || string(m.Mentions) != `["alice"]` {
			t.Fatalf("alice got %+v (mentions %s)", m, m.Mentions)
		}
		laptop.nextMessage()
		bob.expectError("im/send/u/alice", `{"cid":"b2","body":"x","reply_to":99}`, "invalid_payload")
		bob.expectError("im/send/u/alice", `{"cid":"b3","body":"x","mentions":["carol"]}`, "invalid_payload")

		// The edit reaches both of bob's devices; bob may not edit alice's
		// message, an event, or an unknown one.
		alice.post("im/send/u/bob", `{"op":"edit","cid":"a2","target":1,"body":"hi bob!"}`)
		for _, c := range []*client{bob, laptop} {
			if m := c.nextMessage(); m.Seq != 3 || m.Type != "message.edited" || m.Target != 1 || string(m.Body) != `"hi bob!"` {
				t.Fatalf("%s got %+v", c.id, m)
			}
		}
		bob.expectError("im/send/u/alice", `{"op":"edit","cid":"b4","target":1,"body":"mine"}`, "not_allowed")
		bob.expectError("im/send/u/alice", `{"op":"edit","cid":"b5","target":99,"body":"x"}`, "no_such_message")
		bob.expectError("im/send/u/alice", `{"op":"edit","cid":"b6","target":3,"body":"x"}`, "not_allowed")
		bob.expectError("im/send/u/alice", `{"op":"delete","cid":"b7","target":1}`, "not_allowed")
		bob.expectError("im/send/u/alice", `{"op":"edit","cid":"b8","target":1}`, "invalid_payload")
		bob.expectError("im/send/u/alice", `{"op":"react","cid":"b9","target":1}`, "invalid_payload")
		bob.expectError("im/send/u/alice", `{"op":"shout","cid":"b10","target":1}`, "invalid_payload")

		// A reaction, then the same again: one event. MQTT 5 senders get
		// the refusals' reason codes.
		bob.post("im/send/u/alice", `{"op":"react","cid":"b11","target":1,"emoji":"👍"}`)
		bob.send("im/send/u/alice", 1, `{"op":"react","cid":"b12","target":1,"emoji":"👍"}`)
		if m := alice.nextMessage(); m.Seq != 4 || m.Type != "reaction.added" || m.Target != 1 || m.Emoji != "👍" {
			t.Fatalf("alice got %+v", m)
		}
		if code, err := alice.publish("im/send/u/bob", 1, `{"op":"react","cid":"a5","target":3,"emoji":"👍"}`); err != nil || code != 0x87 {
			t.Fatalf("react to an event: code %#x, %v; want 0x87", code, err)
		}
		if code, err := alice.publish("im/send/u/bob", 1, `{"op":"delete","cid":"a6","target":2}`); err != nil || code != 0x87 {
			t.Fatalf("delete bob's message: code %#x, %v; want 0x87", code, err)
		}
		// A retry of the edit (same cid) is echoed to alice and stores nothing.
		alice.send("im/send/u/bob", 1, `{"op":"edit","cid":"a2","target":1,"body":"hi bob!"}`)
		if m := alice.nextKind("message"); m.Seq != 3 || m.CID != "a2" {
			t.Fatalf("retry echoed %+v, want seq 3", m)
		}
		if got := testkit.QueryStrings(t, db, `SELECT CAST(count(*) AS TEXT) FROM messages WHERE conv = 'dm:alice:bob' AND type = 'message.edited'`); got[0] != "1" {
			t.Fatalf("%s edit events stored, want 1", got[0])
		}
		for user, me := range map[string]bool{"alice": false, "bob": true} {
			m := e.message(user, dm, 1)
			if r := m.Reactions["👍"]; r.Count != float64(1) || r.Me != me || m.EditedAt == nil || m.Body != "hi bob!" {
				t.Fatalf("message 1 as %s: %+v", user, m)
			}
		}

		// Offline, the laptop misses an edit and a delete; it catches up on
		// both, in order.
		for laptop.nextMessage().Seq < 4 {
		}
		laptop.close()
		alice.post("im/send/u/bob", `{"op":"edit","cid":"a3","target":1,"body":"hi again"}`)
		alice.post("im/send/u/bob", `{"op":"delete","cid":"a4","target":1}`)
		for _, want := range []string{"message.edited", "message.deleted"} {
			if m := bob.nextMessage(); m.Type != want || m.Target != 1 {
				t.Fatalf("bob got %+v, want %s", m, want)
			}
		}
		laptop = e.dial("bob/laptop", "bob", dialOpts{persistent: true})
		laptop.seen = map[string]int64{dm: 4} // what the app had shown
		var seqs []int64
		for len(seqs) == 0 || seqs[len(seqs)-1] < 6 {
			m := laptop.nextMessage()
			seqs = append(seqs, m.Seq)
			if want := map[int64]string{5: "message.edited", 6: "message.deleted"}[m.Seq]; m.Type != want || m.Target != 1 {
				t.Fatalf("laptop caught up %+v, want %s of 1", m, want)
			}
		}
		if fmt.Sprint(seqs) != "[5 6]" {
			t.Fatalf("laptop caught up seqs %v, want [5 6]", seqs)
		}

		// The delete erased every body of message 1 in the database.
		bodies := testkit.QueryStrings(t, db, `SELECT CAST(body AS TEXT) FROM messages WHERE conv = 'dm:alice:bob' AND (seq = 1 OR (target = 1 AND type = 'message.edited')) ORDER BY seq`)
		if fmt.Sprint(bodies) != "[null null null]" {
			t.Fatalf("stored bodies of message 1 and its edits: %v, want [null null null]", bodies)
		}
		if m := e.message("bob", dm, 1); !m.Deleted || m.Body != nil {
			t.Fatalf("deleted message as bob: %+v", m)
		}
		var page struct{ Messages []liveMessage }
		e.do("GET", "/v1/conversations/"+dm+"/messages?after=0", "bob", "", &page)
		for i, m := range page.Messages {
			if m.Seq != int64(i+1) || strings.Contains(fmt.Sprint(m.Body), "hi b") || strings.Contains(fmt.Sprint(m.Body), "again") {
				t.Fatalf("history item %d: %+v", i, m)
			}
		}
		// A second delete changes nothing; edits and reactions of a deleted
		// message are refused.
		alice.send("im/send/u/bob", 1, `{"op":"delete","cid":"a7","target":1}`)
		bob.expectError("im/send/u/alice", `{"op":"react","cid":"b13","target":1,"emoji":"👀"}`, "no_such_message")
		if code, _ := alice.publish("im/send/u/bob", 1, `{"op":"edit","cid":"a8","target":1,"body":"x"}`); code != 0x83 {
			t.Fatalf("edit of a deleted message: code %#x, want 0x83", code)
		}

		// Counts: three messages for bob, one mentioning him; a delete of an
		// unread one and a read marker on the phone update them, and the
		// laptop hears the new counts.
		alice.post("im/send/u/bob", `{"cid":"c1","body":"one","mentions":["bob"]}`)
		alice.post("im/send/u/bob", `{"cid":"c2","body":"two"}`)
		alice.post("im/send/u/bob", `{"cid":"c3","body":"three"}`)
		if c := e.conversation("bob", dm); c.Unread != 3 || c.Mentions != 1 {
			t.Fatalf("bob's counts: %+v, want 3 unread, 1 mention", c)
		}
		if c := e.conversation("alice", dm); c.Unread != 1 || c.Mentions != 1 {
			t.Fatalf("alice's counts: %+v, want 1 unread (bob's reply), 1 mention", c)
		}
		alice.post("im/send/u/bob", `{"op":"delete","cid":"c4","target":8}`)
		if c := e.conversation("bob", dm); c.Unread != 2 || c.Mentions != 1 {
			t.Fatalf("bob's counts after a delete: %+v, want 2 unread, 1 mention", c)
		}
		bob.send("im/read", 1, fmt.Sprintf(`{"conv":%q,"seq":7}`, dm))
		for {
			ev := laptop.nextKind("read")
			if ev.User != "bob" || ev.Seq != 7 {
				continue
			}
			if ev.Unread == nil || *ev.Unread != 1 || string(ev.Mentions) != "0" {
				t.Fatalf("laptop's read event: %+v (mentions %s), want unread 1, mentions 0", ev, ev.Mentions)
			}
			break
		}
		if ev := alice.nextKind("read"); ev.User != "bob" || ev.Unread != nil || ev.Mentions != nil {
			t.Fatalf("alice's receipt: %+v, want no counts of bob's", ev)
		}
		if c := e.conversation("bob", dm); c.Unread != 1 || c.Mentions != 0 {
			t.Fatalf("bob's counts after reading: %+v", c)
		}

		// The same ops over REST.
		var m liveMessage
		fresh := func() *liveMessage { m = liveMessage{}; return &m }
		if st := e.do("PATCH", "/v1/conversations/"+dm+"/messages/2?cid=r1", "bob", `{"body":"hello alice"}`, fresh()); st != 200 || m.Body != "hello alice" || m.EditedAt == nil {
			t.Fatalf("PATCH: %d %+v", st, m)
		}
		if st := e.do("PATCH", "/v1/conversations/"+dm+"/messages/2", "bob", `{"body":"hello alice","cid":"r1"}`, fresh()); st != 200 {
			t.Fatalf("PATCH retry: %d", st)
		}
		if got := testkit.QueryStrings(t, db, `SELECT CAST(count(*) AS TEXT) FROM messages WHERE cid = 'r1'`); got[0] != "1" {
			t.Fatalf("%s events stored for cid r1, want 1", got[0])
		}
		heart := "/v1/conversations/" + dm + "/messages/9/reactions/" + url.PathEscape("❤️")
		if st := e.do("PUT", heart, "bob", "", fresh()); st != 200 || m.Reactions["❤️"].Count != float64(1) || m.Reactions["❤️"].Me != true {
			t.Fatalf("PUT reaction: %d %+v", st, m)
		}
		if st := e.do("DELETE", heart, "bob", "", fresh()); st != 200 || len(m.Reactions) != 0 {
			t.Fatalf("DELETE reaction: %d %+v", st, m)
		}
		var ae apiErr
		if st := e.do("DELETE", "/v1/conversations/"+dm+"/messages/9", "bob", "", &ae); st != 403 || ae.Error.Code != "not_allowed" {
			t.Fatalf("bob deletes alice's message: %d %+v", st, ae)
		}
		if st := e.do("GET", "/v1/conversations/"+dm+"/messages/99", "bob", "", &ae); st != 404 || ae.Error.Code != "no_such_message" {
			t.Fatalf("GET unknown message: %d %+v", st, ae)
		}
		if st := e.do("PATCH", "/v1/conversations/"+dm+"/messages/99", "bob", `{"body":"x"}`, &ae); st != 404 || ae.Error.Code != "no_such_message" {
			t.Fatalf("PATCH unknown message: %d %+v", st, ae)
		}
		if st := e.do("DELETE", "/v1/conversations/"+dm+"/messages/2", "bob", "", fresh()); st != 200 || !m.Deleted {
			t.Fatalf("DELETE own message: %d %+v", st, m)
		}

		// Settings reach the user's own devices and the conversation list.
		var set liveConv
		if st := e.do("PUT", "/v1/conversations/"+dm+"/settings", "bob", `{"muted_until":"2030-01-02T03:04:05Z","pinned":true}`, &set); st != 200 || !set.Pinned || set.MutedUntil == nil {
			t.Fatalf("PUT settings: %d %+v", st, set)
		}
		if ev := laptop.nextKind("settings"); ev.Conv != dm || !ev.Pinned || ev.Archived || ev.MutedUntil == nil || *ev.MutedUntil != "2030-01-02T03:04:05.000Z" {
			t.Fatalf("settings event: %+v", ev)
		}
		if c := e.conversation("bob", dm); !c.Pinned || c.MutedUntil == nil || c.Archived {
			t.Fatalf("bob's conversation after settings: %+v", c)
		}
		if c := e.conversation("alice", dm); c.Pinned || c.MutedUntil != nil {
			t.Fatalf("alice's conversation has bob's settings: %+v", c)
		}
		if st := e.do("PUT", "/v1/conversations/dm:carol:dave/settings", "bob", `{"pinned":true}`, &ae); st != 403 {
			t.Fatalf("settings of another's conversation: %d %+v", st, ae)
		}
	})
}

// TestMessagesLiveGroup: in a group, admins delete others' messages and
// plain members do not; mentions must be members; membership events can be
// neither replied to nor reacted to.
func TestMessagesLiveGroup(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		if st := e.do("POST", "/v1/groups", "alice", `{"id":"team","name":"Team","members":["bob","carol"]}`, nil); st != 201 {
			t.Fatalf("create group: %d", st)
		}
		if st := e.do("PUT", "/v1/groups/team/members/bob", "alice", `{"role":"admin"}`, nil); st != 200 {
			t.Fatalf("make bob admin: %d", st)
		}
		bob := e.dial("bob", "bob", dialOpts{})
		carol := e.dial("carol", "carol", dialOpts{})
		for _, c := range []*client{bob, carol} {
			for c.nextMessage().Type != "member.role" {
			}
		}
		carol.post("im/send/g/team", `{"cid":"c1","body":"from carol","mentions":["bob"]}`)
		m := bob.nextMessage()
		if m.From != "carol" || string(m.Mentions) != `["bob"]` {
			t.Fatalf("bob got %+v", m)
		}
		first := m.Seq
		bob.post("im/send/g/team", `{"cid":"b1","body":"from bob","reply_to":`+fmt.Sprint(first)+`}`)
		own := carol.nextMessage()
		if own.ReplyTo != first {
			t.Fatalf("carol got %+v", own)
		}
		carol.expectError("im/send/g/team", fmt.Sprintf(`{"op":"delete","cid":"c2","target":%d}`, own.Seq), "not_allowed")
		carol.expectError("im/send/g/team", `{"cid":"c3","body":"x","mentions":["dave"]}`, "invalid_payload")
		carol.expectError("im/send/g/team", `{"cid":"c4","body":"x","reply_to":1}`, "invalid_payload")
		carol.expectError("im/send/g/team", `{"op":"react","cid":"c5","target":1,"emoji":"🎉"}`, "not_allowed")
		bob.post("im/send/g/team", fmt.Sprintf(`{"op":"delete","cid":"b2","target":%d}`, first))
		if ev := carol.nextMessage(); ev.Type != "message.deleted" || ev.Target != first || ev.From != "bob" {
			t.Fatalf("carol got %+v", ev)
		}
		var c liveConv
		c = e.conversation("alice", "g:team")
		if c.Unread != 1 || c.Mentions != 0 {
			t.Fatalf("alice's group counts: %+v, want 1 unread (bob's reply; carol's is deleted, events do not count)", c)
		}
	})
}

// TestEditWindow: with an edit window, an author cannot edit a message
// older than it (not_allowed); PARLEY_EDIT_WINDOW=0 is no limit.
func TestEditWindow(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.EditWindow = 50 * time.Millisecond })
		alice := e.dial("alice", "alice", dialOpts{})
		alice.post("im/send/u/bob", `{"cid":"a1","body":"x"}`)
		time.Sleep(100 * time.Millisecond)
		alice.expectError("im/send/u/bob", `{"op":"edit","cid":"a2","target":1,"body":"y"}`, "not_allowed")
	})
}
