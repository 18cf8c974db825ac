package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestReceiptsREST: what the live read and delivered receipts said is there
// for a device that was offline when they went out, over REST
// (GET /v1/conversations/{conv}/receipts), in direct conversations and
// small groups; hidden in groups above ReceiptGroupMax, which get no live
// read events either.
func TestReceiptsREST(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.ReceiptGroupMax = 3 })
		const dm = "dm:alice:bob"

		// alice sends two messages and goes offline once her phone has
		// acknowledged their echoes.
		alice := e.dial("alice/phone", "alice", dialOpts{v5: true})
		alice.send("im/send/u/bob", 1, `{"cid":"m1","body":"one"}`)
		alice.send("im/send/u/bob", 1, `{"cid":"m2","body":"two"}`)
		for _, cid := range []string{"m1", "m2"} {
			if ev := alice.nextKind("message"); ev.CID != cid {
				t.Fatalf("alice's echo %s, want cid %s", ev.raw, cid)
			}
		}
		waitCursors(t, s, "alice/phone", "alice", map[string]int64{dm: 2})
		alice.close()

		// bob connects, catches up (his phone acknowledges both) and reads
		// them: the receipts go out while alice has no device online.
		bob := e.dial("bob/phone", "bob", dialOpts{v5: true})
		for seq := int64(1); seq <= 2; seq++ {
			if ev := bob.nextKind("message"); ev.Seq != seq || ev.Conv != dm {
				t.Fatalf("bob got %s, want seq %d of %s", ev.raw, seq, dm)
			}
		}
		bob.send("im/read", 1, `{"conv":"dm:alice:bob","seq":2}`)

		// Cursors are written every 200 ms: ask until bob's is there.
		want := `{"conv":"dm:alice:bob","receipts":[{"user":"bob","read_seq":2,"delivered_seq":2}]}`
		waitReceipts(t, e, "alice", "/v1/conversations/dm:alice:bob/receipts", want)
		// Either order of the users names the conversation.
		wantReceipts(t, e, "alice", "/v1/conversations/dm:bob:alice/receipts", want)
		// bob sees alice's cursor (her devices acknowledged the echoes of
		// her own messages) and no read marker.
		waitReceipts(t, e, "bob", "/v1/conversations/dm:alice:bob/receipts",
			`{"conv":"dm:alice:bob","receipts":[{"user":"alice","read_seq":0,"delivered_seq":2}]}`)

		// Not a member: the answer of the other conversation routes.
		for _, path := range []string{"/v1/conversations/dm:alice:bob/receipts", "/v1/conversations/dm:alice:bob/messages"} {
			var ae apiErr
			if code := e.do("GET", path, "carol", "", &ae); code != 403 || ae.Error.Code != "not_member" {
				t.Errorf("carol GET %s: %d %+v, want 403 not_member", path, code, ae)
			}
		}

		// A group of three, at the limit: each other member's read marker,
		// no delivered seq; the live read events go out too.
		alice = e.dial("alice/phone", "alice", dialOpts{v5: true})
		if code := e.do("POST", "/v1/groups", "alice", `{"id":"team","name":"Team","members":["bob","carol"]}`, nil); code != 201 {
			t.Fatalf("create team: %d", code)
		}
		if code := e.do("POST", "/v1/conversations/g:team/messages", "alice", `{"body":"hi team"}`, nil); code != 201 {
			t.Fatalf("send to team: %d", code)
		}
		if code := e.do("POST", "/v1/conversations/g:team/read", "bob", `{"seq":2}`, nil); code != 200 {
			t.Fatalf("bob reads team: %d", code)
		}
		if ev := alice.nextKind("read"); ev.Conv != "g:team" || ev.User != "bob" || ev.Seq != 2 {
			t.Fatalf("alice's read event %s, want bob at 2 in g:team", ev.raw)
		}
		wantReceipts(t, e, "alice", "/v1/conversations/g:team/receipts",
			`{"conv":"g:team","receipts":[{"user":"bob","read_seq":2},{"user":"carol","read_seq":0}]}`)
		wantReceipts(t, e, "carol", "/v1/conversations/g:team/receipts",
			`{"conv":"g:team","receipts":[{"user":"alice","read_seq":0},{"user":"bob","read_seq":2}]}`)

		// A group of four, above the limit: hidden, as the live read
		// events are.
		if code := e.do("POST", "/v1/groups", "alice", `{"id":"crowd","name":"Crowd","members":["bob","carol","dave"]}`, nil); code != 201 {
			t.Fatalf("create crowd: %d", code)
		}
		if code := e.do("POST", "/v1/conversations/g:crowd/read", "bob", `{"seq":1}`, nil); code != 200 {
			t.Fatalf("bob reads crowd: %d", code)
		}
		for _, u := range []string{"alice", "dave"} {
			wantReceipts(t, e, u, "/v1/conversations/g:crowd/receipts", `{"conv":"g:crowd","hidden":true,"receipts":[]}`)
		}
		// A fence: bob's message to alice comes after any read event of
		// crowd, which must not come at all.
		if code := e.do("POST", "/v1/users/alice/messages", "bob", `{"cid":"fence","body":"fence"}`, nil); code != 201 {
			t.Fatalf("fence: %d", code)
		}
		for {
			ev := alice.next()
			if ev.Kind == "read" && ev.Conv == "g:crowd" {
				t.Fatalf("alice got a read event of a group above the limit: %s", ev.raw)
			}
			if ev.Kind == "message" && ev.CID == "fence" {
				break
			}
		}
		// Leaving the group ends the right to its receipts.
		if code := e.do("DELETE", "/v1/groups/team/members/carol", "carol", "", nil); code != 200 {
			t.Fatalf("carol leaves team: %d", code)
		}
		var ae apiErr
		if code := e.do("GET", "/v1/conversations/g:team/receipts", "carol", "", &ae); code != 403 || ae.Error.Code != "not_member" {
			t.Errorf("carol, gone, GET team receipts: %d %+v, want 403 not_member", code, ae)
		}
		wantReceipts(t, e, "alice", "/v1/conversations/g:team/receipts", `{"conv":"g:team","receipts":[{"user":"bob","read_seq":2}]}`)
	})
}

// receiptsReply GETs path as user and returns the status and the body.
func receiptsReply(t *testing.T, e *env, user, path string) (int, string) {
	t.Helper()
	resp, body := e.request("GET", path, user, nil)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// wantReceipts fails unless GET path as user answers 200 with want.
func wantReceipts(t *testing.T, e *env, user, path, want string) {
	t.Helper()
	if code, got := receiptsReply(t, e, user, path); code != 200 || got != want {
		t.Errorf("%s GET %s: %d %s, want 200 %s", user, path, code, got, want)
	}
}

// waitReceipts asks GET path as user until it answers want (cursors are
// written every 200 ms), for at most 10 s.
func waitReceipts(t *testing.T, e *env, user, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, got := receiptsReply(t, e, user, path)
		if code == 200 && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s GET %s: %d %s after 10 s, want 200 %s", user, path, code, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
