package broker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/rest"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/testkit"
)

// syncOut is a GET /v1/sync answer.
type syncOut struct {
	Conversations []conversationOut
	Next          string
	More          *bool
}

// TestSyncPaging: GET /v1/sync pages with limit, more and next; a pass
// covers every changed conversation once, a conversation changed during the
// pass comes in the next one, and the limit is bounded.
func TestSyncPaging(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for i := 0; i < 7; i++ {
			e.do("POST", fmt.Sprintf("/v1/users/p%d/messages", i), "alice", `{"body":"hello"}`, nil)
		}
		seen := map[string]bool{}
		since := ""
		for page := 0; ; page++ {
			var out syncOut
			if code := e.do("GET", "/v1/sync?limit=3&since="+since, "alice", "", &out); code != 200 || out.More == nil || out.Next == "" {
				t.Fatalf("page %d = %d %+v", page, code, out)
			}
			if len(out.Conversations) > 3 || (*out.More && len(out.Conversations) != 3) {
				t.Fatalf("page %d: %d conversations, more %v", page, len(out.Conversations), *out.More)
			}
			for _, c := range out.Conversations {
				if seen[c.ID] {
					t.Fatalf("%s twice in one pass", c.ID)
				}
				seen[c.ID] = true
				if len(c.Messages) != 1 || c.Messages[0].Seq != c.LastSeq {
					t.Fatalf("%s: messages %+v", c.ID, c.Messages)
				}
			}
			since = out.Next
			if page == 0 {
				// p0 was written first, so it is not reported yet; it moves
				// to the front now, behind the position.
				e.do("POST", "/v1/users/alice/messages", "p0", `{"body":"later"}`, nil)
			}
			if !*out.More {
				break
			}
			if page > 5 {
				t.Fatal("paging does not end")
			}
		}
		for i := 1; i < 7; i++ {
			if !seen[fmt.Sprintf("dm:alice:p%d", i)] {
				t.Fatalf("dm:alice:p%d missing: %v", i, seen)
			}
		}
		var next syncOut
		e.do("GET", "/v1/sync?since="+since, "alice", "", &next)
		if len(next.Conversations) != 1 || next.Conversations[0].ID != "dm:alice:p0" || next.Conversations[0].LastSeq != 2 || *next.More {
			t.Fatalf("next pass = %+v", next)
		}
		for _, q := range []string{"limit=0", "limit=101", "limit=x"} {
			var out apiErr
			if code := e.do("GET", "/v1/sync?"+q, "alice", "", &out); code != 400 || out.Error.Code != "invalid" {
				t.Fatalf("%s = %d %+v", q, code, out)
			}
		}
		var def syncOut
		if code := e.do("GET", "/v1/sync?limit=100", "alice", "", &def); code != 200 || len(def.Conversations) != 7 || *def.More {
			t.Fatalf("limit=100: %d, %d conversations", code, len(def.Conversations))
		}
	})
}

// TestSyncMessageBudget: the messages of one sync page stay within
// rest.SyncMessageBytes; a conversation beyond the budget gets its newest
// messages that fit (ending at last_seq), or none.
func TestSyncMessageBudget(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		big := `{"body":"` + strings.Repeat("x", 60<<10) + `"}`
		for _, peer := range []string{"p1", "p2"} {
			for i := 0; i < 15; i++ {
				if code := e.do("POST", "/v1/users/"+peer+"/messages", "alice", big, nil); code != 201 {
					t.Fatalf("send = %d", code)
				}
			}
		}
		_, raw := e.request("GET", "/v1/sync", "alice", nil)
		if len(raw) > rest.SyncMessageBytes+256<<10 { // plus each last_message
			t.Fatalf("sync answer of %d bytes", len(raw))
		}
		var out syncOut
		mustUnmarshal(t, raw, &out)
		total := 0
		for _, c := range out.Conversations {
			total += len(c.Messages)
			if n := len(c.Messages); n > 0 && c.Messages[n-1].Seq != c.LastSeq {
				t.Fatalf("%s: messages do not end at last_seq %d", c.ID, c.LastSeq)
			}
		}
		if len(out.Conversations) != 2 || total == 0 || total >= 30 {
			t.Fatalf("%d conversations, %d messages", len(out.Conversations), total)
		}
	})
}

// TestGroupChangesRateLimited: group creations and membership changes take
// from the sender's rate limit and are refused like sends, 429
// rate_limited.
func TestGroupChangesRateLimited(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) { o.Rate, o.Burst = 0.01, 3 })
		for i := 0; i < 3; i++ {
			if code := e.do("POST", "/v1/groups", "alice", fmt.Sprintf(`{"id":"g%d","name":"G"}`, i), nil); code != 201 {
				t.Fatalf("create %d = %d", i, code)
			}
		}
		var out apiErr
		if code := e.do("POST", "/v1/groups", "alice", `{"id":"g9","name":"G"}`, &out); code != 429 || out.Error.Code != "rate_limited" {
			t.Fatalf("4th create = %d %+v", code, out)
		}
		if code := e.do("PUT", "/v1/groups/g0/members/bob", "alice", "", &out); code != 429 || out.Error.Code != "rate_limited" {
			t.Fatalf("member change = %d %+v", code, out)
		}
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":1}`, &out); code != 429 || out.Error.Code != "rate_limited" {
			t.Fatalf("send after group changes = %d %+v", code, out)
		}
		// The limit is per user: bob is not affected.
		if code := e.do("POST", "/v1/groups", "bob", `{"name":"B"}`, nil); code != 201 {
			t.Fatalf("bob's create = %d", code)
		}
	})
}

// TestBodyCap: every REST route refuses a body over its cap with 413
// too_large in the usual error form, declared or chunked.
func TestBodyCap(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		hook := newReceiver(t, []byte("s")) // the push routes serve with a webhook
		// Uploads have their own cap (MaxUpload), here below the huge body.
		e := setup(t, s, func(o *broker.Options) {
			o.WebhookURLs, o.WebhookSecret = []string{hook.srv.URL}, []byte("s")
			o.BlobDir, o.MaxUpload = t.TempDir(), 1<<20
		})
		e.do("POST", "/v1/groups", "alice", `{"id":"team","name":"T"}`, nil)
		huge := `{"name":"x","members":["` + strings.Repeat("a", 2<<20) + `"]}`
		for _, r := range broker.Routes() {
			method, path, _ := strings.Cut(r, " ")
			path = strings.NewReplacer("{conv}", "g:team", "{peer}", "bob", "{id}", "team", "{user}", "bob", "{seq}", "1", "{emoji}", "x", "{device}", "phone").Replace(path)
			readsNoBody := method == "GET" || method == "DELETE" || method == "HEAD" || strings.HasSuffix(r, "/reactions/{emoji}") || strings.HasSuffix(r, "/url")
			upload := r == "POST /v1/uploads"
			for _, chunked := range []bool{false, true} {
				if chunked && r == "DELETE /v1/users/me" {
					continue // it reads no body and would delete the caller
				}
				t.Run(fmt.Sprintf("%s/chunked=%v", r, chunked), func(t *testing.T) {
					var body io.Reader = strings.NewReader(huge)
					if chunked {
						body = io.MultiReader(body) // no length: sent chunked
					}
					p := path
					if r == "PATCH /v1/uploads/{id}" {
						// A PATCH of a resumable upload is bounded by what
						// the upload lacks: here 1,000 bytes.
						p = e.tusCreate("alice", "text/plain", 1000)
					}
					req, _ := http.NewRequest(method, e.http+p, body)
					for _, h := range [][2]string{{"Tus-Resumable", "1.0.0"}, {"Upload-Offset", "0"}, {"Content-Type", "application/offset+octet-stream"}} {
						if r == "PATCH /v1/uploads/{id}" {
							req.Header.Set(h[0], h[1])
						}
					}
					req.Header.Set("Authorization", "Bearer "+testkit.Token(t, "alice"))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						// The server may close before reading it all.
						if chunked || readsNoBody {
							return
						}
						t.Fatal(err)
					}
					defer resp.Body.Close()
					raw, _ := io.ReadAll(resp.Body)
					if chunked && readsNoBody {
						return // a route that reads no body ignores an undeclared one
					}
					if method == "HEAD" {
						if resp.StatusCode != 413 {
							t.Fatalf("%d", resp.StatusCode)
						}
						return // no body
					}
					var out apiErr
					mustUnmarshal(t, raw, &out)
					if upload && chunked {
						// An upload must declare its length.
						if resp.StatusCode != 400 || out.Error.Code != "invalid_payload" {
							t.Fatalf("%d %s", resp.StatusCode, raw)
						}
						return
					}
					if resp.StatusCode != 413 || out.Error.Code != "too_large" || out.Error.Message == "" {
						t.Fatalf("%d %s", resp.StatusCode, raw)
					}
				})
			}
		}
		// A body just under the cap still works.
		members := make([]string, 0, 1000)
		for i := 0; i < 1000; i++ {
			members = append(members, fmt.Sprintf("user%04d", i))
		}
		b, _ := json.Marshal(map[string]any{"id": "ok", "name": "ok", "members": members})
		if code := e.do("POST", "/v1/groups", "alice", string(b), nil); code != 201 {
			t.Fatalf("create with 1,000 members = %d", code)
		}
	})
}

// TestGroupCreatedBody: group.created lists the members of a small group and
// only counts those of a large one.
func TestGroupCreatedBody(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		create := func(id string, n int) map[string]json.RawMessage {
			t.Helper()
			members := make([]string, n-1)
			for i := range members {
				members[i] = fmt.Sprintf("m%04d", i)
			}
			b, _ := json.Marshal(map[string]any{"id": id, "name": id, "members": members})
			if code := e.do("POST", "/v1/groups", "alice", string(b), nil); code != 201 {
				t.Fatalf("create %s = %d", id, code)
			}
			var page messagesOut
			e.do("GET", "/v1/conversations/g:"+id+"/messages?after=0", "alice", "", &page)
			if len(page.Messages) != 1 || page.Messages[0].Type != "group.created" {
				t.Fatalf("%s: %+v", id, page.Messages)
			}
			raw, _ := json.Marshal(page.Messages[0].Body)
			var body map[string]json.RawMessage
			mustUnmarshal(t, raw, &body)
			if string(body["member_count"]) != fmt.Sprint(n) || string(body["name"]) != `"`+id+`"` {
				t.Fatalf("%s: body %s", id, raw)
			}
			return body
		}
		if small := create("small", send.GroupCreatedMembersMax); len(small["members"]) == 0 {
			t.Fatal("a group of 100 has no member list in group.created")
		}
		if large := create("large", send.GroupCreatedMembersMax+1); large["members"] != nil {
			t.Fatal("a group of 101 lists its members in group.created")
		}
		var g struct{ Members []history.Member }
		if code := e.do("GET", "/v1/groups/large", "m0000", "", &g); code != 200 || len(g.Members) != send.GroupCreatedMembersMax+1 {
			t.Fatalf("GET large = %d, %d members", code, len(g.Members))
		}
	})
}

// TestGroupMemberCap: additions cannot grow a group beyond
// send.MaxGroupMembers, even in parallel.
func TestGroupMemberCap(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		members := make([]string, send.MaxGroupMembers-2) // with alice: one below the cap
		for i := range members {
			members[i] = fmt.Sprintf("m%05d", i)
		}
		b, _ := json.Marshal(map[string]any{"id": "big", "name": "Big", "members": members})
		if code := e.do("POST", "/v1/groups", "alice", string(b), nil); code != 201 {
			t.Fatalf("create = %d", code)
		}
		const n = 8
		codes := make([]int, n)
		errs := make([]apiErr, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				codes[i] = e.do("PUT", fmt.Sprintf("/v1/groups/big/members/new%d", i), "alice", "", &errs[i])
			}(i)
		}
		wg.Wait()
		ok := 0
		for i, c := range codes {
			switch {
			case c == 200:
				ok++
			case c != 400 || errs[i].Error.Code != "invalid":
				t.Fatalf("add %d = %d %+v", i, c, errs[i])
			}
		}
		if ok != 1 {
			t.Fatalf("%d parallel additions succeeded, want 1 (codes %v)", ok, codes)
		}
		var g struct{ Members []history.Member }
		if e.do("GET", "/v1/groups/big", "alice", "", &g); len(g.Members) != send.MaxGroupMembers {
			t.Fatalf("%d members, want %d", len(g.Members), send.MaxGroupMembers)
		}
		// Leaving and role changes still work in a full group; after a
		// leave there is room for one again.
		if code := e.do("PUT", "/v1/groups/big/members/m00000", "alice", `{"role":"admin"}`, nil); code != 200 {
			t.Fatalf("promote = %d", code)
		}
		if code := e.do("DELETE", "/v1/groups/big/members/m00001", "m00001", "", nil); code != 200 {
			t.Fatalf("leave = %d", code)
		}
		if code := e.do("PUT", "/v1/groups/big/members/late", "alice", "", nil); code != 200 {
			t.Fatalf("add after a leave = %d", code)
		}
	})
}

// TestGroupProbing: a non-member cannot tell an existing group from a
// missing one: GET and member changes answer the same 404; creating a taken
// id answers 409 without telling anything about the group.
func TestGroupProbing(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.do("POST", "/v1/groups", "alice", `{"id":"secret","name":"Secret Plans","members":["bob","carol"]}`, nil)
		e.do("DELETE", "/v1/groups/secret/members/carol", "alice", "", nil)
		answer := func(method, path, user, body string) string {
			var out apiErr
			code := e.do(method, path, user, body, &out)
			return fmt.Sprintf("%d %s %s", code, out.Error.Code, strings.ReplaceAll(out.Error.Message, "nosuch", "secret"))
		}
		for _, user := range []string{"mallory", "carol"} {
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/v1/groups/%s", ""},
				{"PUT", "/v1/groups/%s/members/mallory", ""},
				{"PUT", "/v1/groups/%s/members/bob", `{"role":"admin"}`},
				{"DELETE", "/v1/groups/%s/members/bob", ""},
				{"DELETE", "/v1/groups/%s/members/" + user, ""},
			} {
				got := answer(r.method, fmt.Sprintf(r.path, "secret"), user, r.body)
				want := answer(r.method, fmt.Sprintf(r.path, "nosuch"), user, r.body)
				if got != want || !strings.HasPrefix(got, "404 not_found") {
					t.Fatalf("%s %s as %s: existing group %q, missing group %q", r.method, r.path, user, got, want)
				}
			}
		}
		var g struct{ Members []history.Member }
		if code := e.do("GET", "/v1/groups/secret", "alice", "", &g); code != 200 || len(g.Members) != 2 {
			t.Fatalf("members changed: %d %+v", code, g)
		}
		// Create: the id is taken, whoever asks, and nothing more is said.
		for _, user := range []string{"mallory", "bob"} {
			var out apiErr
			code := e.do("POST", "/v1/groups", user, `{"id":"secret","name":"Mine"}`, &out)
			if code != 409 || out.Error.Code != "conflict" || strings.Contains(out.Error.Message, "Secret Plans") || strings.Contains(out.Error.Message, "alice") {
				t.Fatalf("create taken id as %s = %d %+v", user, code, out)
			}
		}
	})
}

// TestHTTPTimeouts: the REST listener closes an idle keep-alive connection,
// a request whose headers or body drip in, and the WebSocket listener an
// idle connection, while an upgraded MQTT connection outlives them all.
func TestHTTPTimeouts(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s, func(o *broker.Options) {
			o.HTTPReadHeaderTimeout, o.HTTPReadTimeout, o.HTTPIdleTimeout = 300*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond
		})
		host := strings.TrimPrefix(e.http, "http://")
		// closedWithin reports whether the server closes conn within d,
		// while drip writes to it.
		closedWithin := func(conn net.Conn, d time.Duration, drip func() error) bool {
			t.Helper()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = io.Copy(io.Discard, conn)
			}()
			deadline := time.After(d)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return true
				case <-deadline:
					conn.Close()
					return false
				case <-tick.C:
					if drip != nil {
						if err := drip(); err != nil {
							<-done
							return true
						}
					}
				}
			}
		}
		dial := func(addr string) net.Conn {
			t.Helper()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}

		t.Run("IdleKeepAlive", func(t *testing.T) {
			c := dial(host)
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz: %v", err)
			}
			resp.Body.Close()
			if !closedWithin(c, 3*time.Second, nil) {
				t.Fatal("idle keep-alive connection still open")
			}
		})
		t.Run("DrippedHeaders", func(t *testing.T) {
			c := dial(host)
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\n")
			if !closedWithin(c, 3*time.Second, func() error { _, err := c.Write([]byte("X-A: b\r\n")); return err }) {
				t.Fatal("connection with dripping headers still open")
			}
		})
		t.Run("DrippedBody", func(t *testing.T) {
			c := dial(host)
			fmt.Fprintf(c, "POST /v1/users/bob/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 10000\r\n\r\n{", testkit.Token(t, "alice"))
			if !closedWithin(c, 3*time.Second, func() error { _, err := c.Write([]byte(" ")); return err }) {
				t.Fatal("connection with a dripping body still open")
			}
		})
		t.Run("WebSocketIdle", func(t *testing.T) {
			c := dial(e.ws)
			if !closedWithin(c, 3*time.Second, nil) {
				t.Fatal("idle WebSocket listener connection still open")
			}
		})
		t.Run("WebSocketUpgradedLives", func(t *testing.T) {
			o := pahov3.NewClientOptions().AddBroker("ws://" + e.ws + broker.WebsocketPath).SetClientID("alice/ws").
				SetUsername("alice").SetPassword(testkit.Token(t, "alice")).SetAutoReconnect(false).SetKeepAlive(30 * time.Second)
			got := make(chan string, 1)
			o.SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { got <- string(m.Payload()) })
			lost := make(chan error, 1)
			o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
			c := pahov3.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("connect over WebSocket: %v", tok.Error())
			}
			defer c.Disconnect(0)
			if tok := c.Subscribe("im/inbox/alice", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			select {
			case err := <-lost:
				t.Fatalf("upgraded connection lost: %v", err)
			case <-time.After(1500 * time.Millisecond): // 3× every HTTP timeout
			}
			if code := e.do("POST", "/v1/users/alice/messages", "bob", `{"body":"still there?"}`, nil); code != 201 {
				t.Fatalf("send = %d", code)
			}
			select {
			case p := <-got:
				if !strings.Contains(p, "still there?") {
					t.Fatalf("got %s", p)
				}
			case err := <-lost:
				t.Fatalf("upgraded connection lost: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("no delivery over WebSocket")
			}
		})
	})
}
