package broker_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

type searchOut struct {
	Results []struct {
		Conv       string
		Seq        int64
		Snippet    string
		Highlights []struct{ Start, End int }
		Message    messageOut
	}
	Next *string
}

// TestSearchREST: GET /v1/search finds only the caller's messages, never
// deleted or edited-away text, with a snippet whose highlights mark the
// match; it pages with the cursor.
func TestSearchREST(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for i := range 3 {
			if code := e.do("POST", "/v1/users/bob/messages", "alice", fmt.Sprintf(`{"body":{"text":"the Harbour meeting %d","tag":"secretkey"}}`, i), nil); code != 201 {
				t.Fatalf("send: %d", code)
			}
		}
		e.do("POST", "/v1/users/carol/messages", "mallory", `{"body":"harbour plans of mallory"}`, nil)
		e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"forgotten words"}`, nil)
		e.do("PATCH", "/v1/conversations/dm:alice:bob/messages/4", "alice", `{"body":"new words"}`, nil)
		e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"gone sentence"}`, nil)
		e.do("DELETE", "/v1/conversations/dm:alice:bob/messages/6", "alice", "", nil)

		var out searchOut
		if code := e.do("GET", "/v1/search?q=harb&limit=2", "bob", "", &out); code != 200 || len(out.Results) != 2 || out.Next == nil {
			t.Fatalf("search: %d %+v", code, out)
		}
		r := out.Results[0]
		if r.Conv != "dm:alice:bob" || r.Seq != 3 || len(r.Highlights) != 1 || r.Snippet[r.Highlights[0].Start:r.Highlights[0].End] != "Harbour" {
			t.Fatalf("first result %+v", r)
		}
		var page2 searchOut
		e.do("GET", "/v1/search?q=harb&limit=2&cursor="+*out.Next, "bob", "", &page2)
		if len(page2.Results) != 1 || page2.Results[0].Seq != 1 || page2.Next != nil {
			t.Fatalf("page 2 %+v", page2)
		}
		for _, q := range []string{"mallory", "tag", "text", "forgotten", "gone"} {
			var none searchOut
			if code := e.do("GET", "/v1/search?q="+q, "bob", "", &none); code != 200 || len(none.Results) != 0 {
				t.Errorf("q=%s: %d %+v", q, code, none)
			}
		}
		var words searchOut
		if e.do("GET", "/v1/search?q=new+words", "bob", "", &words); len(words.Results) != 1 || words.Results[0].Seq != 4 {
			t.Errorf("edited text: %+v", words)
		}
	})
}

// TestExportChanges: GET /v1/users/me/export holds everything the caller
// sent, its edits, deletes and reactions included (an erased body stays
// null), and nothing another user did.
func TestExportChanges(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		dm := "/v1/conversations/dm:alice:bob/messages/"
		steps := []struct{ method, path, user, body string }{
			{"POST", "/v1/users/bob/messages", "alice", `{"body":"one"}`},   // 1
			{"POST", "/v1/users/alice/messages", "bob", `{"body":"bob's"}`}, // 2
			{"PATCH", dm + "1", "alice", `{"body":"one, edited"}`},          // 3
			{"PUT", dm + "2/reactions/%F0%9F%91%8D", "alice", ""},           // 4
			{"PUT", dm + "1/reactions/%F0%9F%91%80", "bob", ""},             // 5
			{"DELETE", dm + "2/reactions/%F0%9F%91%8D", "alice", ""},        // 6
			{"POST", "/v1/users/bob/messages", "alice", `{"body":"gone"}`},  // 7
			{"PATCH", dm + "7", "alice", `{"body":"gone, edited"}`},         // 8
			{"DELETE", dm + "7", "alice", ""},                               // 9
		}
		for _, st := range steps {
			if code := e.do(st.method, st.path, st.user, st.body, nil); code/100 != 2 {
				t.Fatalf("%s %s by %s: %d", st.method, st.path, st.user, code)
			}
		}
		resp, body := e.request("GET", "/v1/users/me/export", "alice", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("export: %d %s", resp.StatusCode, body)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			var line struct {
				Record, From, Type, Emoji string
				Seq, Target               int64
				Body                      json.RawMessage
			}
			mustUnmarshal(t, []byte(l), &line)
			if line.Record == "message" {
				got = append(got, fmt.Sprintf("%d %s %s %d %s %s", line.Seq, line.From, line.Type, line.Target, line.Emoji, line.Body))
			}
		}
		want := []string{
			`1 alice text 0  "one, edited"`,
			`3 alice message.edited 1  "one, edited"`,
			`4 alice reaction.added 2 👍 null`,
			`6 alice reaction.removed 2 👍 null`,
			`7 alice text 0  null`,
			`8 alice message.edited 7  null`,
			`9 alice message.deleted 7  null`,
		}
		if !slices.Equal(got, want) {
			t.Fatalf("export's messages:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestRetentionWhileSending: with a short retention, the background job
// deletes old messages in batches while clients keep sending; every send
// is stored, seq numbering goes on, and history starts at expired_before.
func TestRetentionWhileSending(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) {
			o.Retention, o.RetentionEvery, o.RetentionBatch = time.Second, 20*time.Millisecond, 7
			o.Rate = -1
		})
		const senders, each = 4, 80
		var wg sync.WaitGroup
		errs := make(chan error, senders*each)
		start := time.Now()
		for w := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					status, err := post(e, fmt.Sprintf("/v1/users/peer%d/messages", w), "alice", fmt.Sprintf(`{"body":"m%d"}`, i))
					if err != nil || status != 201 {
						errs <- fmt.Errorf("sender %d message %d: %d %v", w, i, status, err)
						return
					}
					time.Sleep(30 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if time.Since(start) < 2*time.Second {
			t.Fatalf("sends took %v: too fast for the retention to act", time.Since(start))
		}
		// Let the job catch up, then read what is left.
		time.Sleep(500 * time.Millisecond)
		var page struct {
			Messages      []messageOut
			ExpiredBefore int64 `json:"expired_before"`
		}
		if code := e.do("GET", "/v1/conversations/dm:alice:peer0/messages?after=0&limit=200", "alice", "", &page); code != 200 {
			t.Fatalf("history: %d", code)
		}
		if page.ExpiredBefore < 2 || len(page.Messages) == 0 || page.Messages[0].Seq != page.ExpiredBefore {
			t.Fatalf("expired_before %d, first kept %+v", page.ExpiredBefore, page.Messages[:min(1, len(page.Messages))])
		}
		last := page.Messages[len(page.Messages)-1].Seq
		if last != each {
			t.Fatalf("last seq %d, want %d: numbering must go on", last, each)
		}
		for i, m := range page.Messages {
			if m.Seq != page.ExpiredBefore+int64(i) {
				t.Fatalf("kept messages not contiguous at %d: %+v", i, m)
			}
		}
	})
}

func post(e *env, path, user, body string) (int, error) {
	req, _ := http.NewRequest("POST", e.http+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testkit.Token(e.t, user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestBlocking: a blocked user's direct sends are refused with blocked
// over MQTT 5 and REST and not stored; neither sees the other's presence;
// a shared group is unaffected; unblocking restores everything.
func TestBlocking(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		alice := e.dial("alice", "alice", dialOpts{v5: true})
		bob := e.dial("bob", "bob", dialOpts{v5: true})
		alice.send("im/send/u/bob", 1, `{"body":"hi"}`)
		bob.send("im/send/u/alice", 1, `{"body":"hi"}`)
		e.do("POST", "/v1/groups", "alice", `{"id":"both","name":"B","members":["bob"]}`, nil)
		if code := e.do("PUT", "/v1/blocks/alice", "bob", "", nil); code != 200 {
			t.Fatalf("block: %d", code)
		}
		if code, _ := alice.publish("im/send/u/bob", 1, `{"cid":"x1","body":"let me in"}`); code != 0x87 {
			t.Fatalf("blocked MQTT 5 send: reason %#x, want 0x87", code)
		}
		if ev := alice.nextKind("error"); ev.Code != "blocked" {
			t.Fatalf("error event %+v", ev)
		}
		var er apiErr
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"rest"}`, &er); code != 403 || er.Error.Code != "blocked" {
			t.Fatalf("blocked REST send: %d %+v", code, er)
		}
		if code := e.do("POST", "/v1/users/alice/messages", "bob", `{"body":"the blocker"}`, &er); code != 403 || er.Error.Code != "blocked" {
			t.Fatalf("blocker's REST send: %d %+v", code, er)
		}
		var hist struct{ Messages []messageOut }
		e.do("GET", "/v1/conversations/dm:alice:bob/messages", "bob", "", &hist)
		if len(hist.Messages) != 2 {
			t.Fatalf("stored: %+v", hist.Messages)
		}
		for _, c := range []*client{alice, bob} {
			other := "bob"
			if c == bob {
				other = "alice"
			}
			if code := c.subscribe("im/presence/"+other, 1); code != 0x87 {
				t.Fatalf("%s subscribing to %s's presence: %#x", c.id, other, code)
			}
		}
		if code := e.do("POST", "/v1/conversations/g:both/messages", "alice", `{"body":"group still works"}`, nil); code != 201 {
			t.Fatalf("group send: %d", code)
		}
		var blocks struct{ Blocks []struct{ User string } }
		if e.do("GET", "/v1/blocks", "bob", "", &blocks); len(blocks.Blocks) != 1 || blocks.Blocks[0].User != "alice" {
			t.Fatalf("blocks %+v", blocks)
		}
		if code := e.do("DELETE", "/v1/blocks/alice", "bob", "", nil); code != 200 {
			t.Fatalf("unblock: %d", code)
		}
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"again"}`, nil); code != 201 {
			t.Fatalf("send after unblock: %d", code)
		}
		if code := alice.subscribe("im/presence/bob", 1); code != 1 {
			t.Fatalf("presence after unblock: %#x", code)
		}
	})
}

// TestDMPolicyContacts: with DMPolicy contacts, a stranger's first direct
// message is refused with not_allowed; a group mate's is not, nor a reply.
func TestDMPolicyContacts(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.DMPolicy = "contacts" })
		var er apiErr
		if code := e.do("POST", "/v1/users/bob/messages", "mallory", `{"body":"hi"}`, &er); code != 403 || er.Error.Code != "not_allowed" {
			t.Fatalf("stranger: %d %+v", code, er)
		}
		e.do("POST", "/v1/groups", "alice", `{"id":"g","name":"G","members":["bob"]}`, nil)
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"hi"}`, nil); code != 201 {
			t.Fatalf("group mate: %d", code)
		}
		if code := e.do("POST", "/v1/users/alice/messages", "bob", `{"body":"reply"}`, nil); code != 201 {
			t.Fatalf("reply: %d", code)
		}
	})
}

// TestDeleteAccount: DELETE /v1/users/me disconnects the user, revokes its
// tokens, turns its messages into deleted events for the others and
// removes its data, as SQL on the store shows.
func TestDeleteAccount(t *testing.T) {
	testkit.ForEachStoreSQL(t, func(t *testing.T, s history.Store, db *sql.DB) {
		e := setup(t, s, func(o *broker.Options) {
			o.WebhookURLs, o.WebhookSecret = []string{newReceiver(t, []byte("s")).srv.URL}, []byte("s")
		})
		alice := e.dial("alice/phone", "alice", dialOpts{v5: true})
		bob := e.dial("bob", "bob", dialOpts{v5: true})
		alice.send("im/send/u/bob", 1, `{"body":"alice secret one"}`)
		bob.send("im/send/u/alice", 1, `{"body":"bob's words"}`)
		e.do("POST", "/v1/groups", "bob", `{"id":"g","name":"G","members":["alice","carol"]}`, nil)
		alice.send("im/send/g/g", 1, `{"body":"alice secret two"}`)
		e.do("PUT", "/v1/conversations/dm:alice:bob/messages/2/reactions/%F0%9F%91%8D", "alice", "", nil)
		e.do("PUT", "/v1/blocks/mallory", "alice", "", nil)
		e.do("PUT", "/v1/blocks/alice", "carol", "", nil)
		e.do("POST", "/v1/conversations/dm:alice:bob/read", "alice", `{"seq":2}`, nil)
		e.do("PUT", "/v1/devices/phone/push", "alice", `{"provider":"webhook","token":"t"}`, nil)
		oldToken := testkit.Token(t, "alice")
		time.Sleep(1100 * time.Millisecond) // tokens have whole seconds

		var out struct {
			Deleted  bool
			Messages int
		}
		if code := e.do("DELETE", "/v1/users/me", "alice", "", &out); code != 200 || !out.Deleted || out.Messages != 2 {
			t.Fatalf("delete: %d %+v", code, out)
		}
		// The others get the deletes.
		for deleted := 0; deleted < 2; {
			if ev := bob.nextKind("message"); ev.Type == "message.deleted" && ev.From == "alice" {
				deleted++
			}
		}
		// The old token no longer works, on REST and at CONNECT.
		req, _ := http.NewRequest("GET", e.http+"/v1/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+oldToken)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
			t.Fatalf("old token on REST: %v %v", resp, err)
		}
		if _, ca, err := e.connectV5("alice/laptop", "alice", oldToken); err == nil || ca == nil || ca.ReasonCode != 0x86 {
			t.Fatalf("old token at CONNECT: %+v %v", ca, err)
		}
		// Its data is gone.
		q := func(query string) string {
			return strings.Join(testkit.QueryStrings(t, db, query), ",")
		}
		checks := map[string]string{
			`SELECT count(*) FROM messages WHERE sender = 'alice' AND (deleted = false OR CAST(body AS TEXT) <> 'null') AND event = false`: "0",
			`SELECT count(*) FROM messages WHERE sender = 'alice' AND type = 'message.deleted'`:                                            "2",
			`SELECT count(*) FROM members WHERE user_id = 'alice' AND conv = 'g:g'`:                                                        "0",
			`SELECT count(*) FROM members WHERE user_id = 'alice' AND read_seq <> 0`:                                                       "0",
			`SELECT count(*) FROM reactions WHERE user_id = 'alice'`:                                                                       "0",
			`SELECT count(*) FROM blocks WHERE user_id = 'alice' OR blocked = 'alice'`:                                                     "0",
			`SELECT count(*) FROM push_tokens WHERE user_id = 'alice'`:                                                                     "0",
			`SELECT count(*) FROM devices WHERE user_id = 'alice'`:                                                                         "0",
			`SELECT count(*) FROM cursors WHERE device LIKE 'alice%'`:                                                                      "0",
			`SELECT count(*) FROM users WHERE id = 'alice' AND tokens_valid_after IS NOT NULL`:                                             "1",
			`SELECT CAST(body AS TEXT) FROM messages WHERE sender = 'bob' AND conv = 'dm:alice:bob' AND event = false`:                     `"bob's words"`,
		}
		for query, want := range checks {
			if got := q(query); got != want {
				t.Errorf("%s = %s, want %s", query, got, want)
			}
		}
		// A token issued after the deletion works again: a new user with no
		// history.
		time.Sleep(1100 * time.Millisecond)
		var convs struct{ Conversations []struct{ ID string } }
		if code := e.do("GET", "/v1/search?q=secret", "alice", "", nil); code != 200 {
			t.Fatalf("new token: %d", code)
		}
		e.do("GET", "/v1/conversations", "alice", "", &convs)
		for _, c := range convs.Conversations {
			if c.ID == "g:g" {
				t.Errorf("deleted alice still lists %s", c.ID)
			}
		}
	})
}
