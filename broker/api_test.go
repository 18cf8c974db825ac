package broker_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/docs"
	"github.com/parley-im/parley/internal/testkit"
)

// TestOpenAPIMatchesRoutes fails when a route and docs/openapi.yaml
// disagree, and checks that the document is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	pathRe := regexp.MustCompile(`^  (/\S+):\s*$`)
	methodRe := regexp.MustCompile(`^    (get|head|post|put|delete|patch):\s*$`)
	var documented []string
	path := ""
	sc := bufio.NewScanner(bytes.NewReader(docs.OpenAPI))
	for sc.Scan() {
		if m := pathRe.FindStringSubmatch(sc.Text()); m != nil {
			path = m[1]
		} else if m := methodRe.FindStringSubmatch(sc.Text()); m != nil && path != "" {
			documented = append(documented, strings.ToUpper(m[1])+" "+path)
		}
	}
	served := broker.Routes()
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Fatalf("docs/openapi.yaml documents:\n%s\n\nthe server serves:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	e := setup(t, testkit.OpenSQLite(t))
	body, code := e.get("/v1/openapi.yaml")
	if code != 200 || body != string(docs.OpenAPI) {
		t.Fatalf("GET /v1/openapi.yaml = %d", code)
	}
}

type messageOut struct {
	Conv, ID, CID, From, TS, Type string
	Seq                           int64
	Body                          any
}

type messagesOut struct {
	Messages []messageOut
	Next     *string
}

type conversationOut struct {
	ID, Kind, Peer, Group, Name string
	LastSeq                     int64 `json:"last_seq"`
	ReadSeq                     int64 `json:"read_seq"`
	Unread                      int64
	LastMessage                 *messageOut `json:"last_message"`
	Messages                    []messageOut
}

type conversationsOut struct {
	Conversations []conversationOut
	Next          *string
}

// TestRESTMessages: sends over REST arrive over MQTT and vice versa; history
// pages both ways without missing or repeating a message while new ones
// arrive; idempotent retries answer 200 with the original.
func TestRESTMessages(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		bob := e.dial("bob/phone", "bob", dialOpts{v5: true})
		alice := e.dial("alice/laptop", "alice", dialOpts{})
		var m messageOut
		if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"cid":"r1","body":{"text":"over REST"}}`, &m); code != 201 {
			t.Fatalf("POST = %d", code)
		}
		if m.Conv != "dm:alice:bob" || m.Seq != 1 || m.From != "alice" || m.CID != "r1" || m.ID == "" {
			t.Fatalf("stored = %+v", m)
		}
		for _, c := range []*client{bob, alice} {
			if ev := c.nextKind("message"); ev.Seq != 1 || ev.ID != m.ID {
				t.Fatalf("%s: %+v", c.id, ev)
			}
		}
		var again messageOut
		if code := e.do("POST", "/v1/conversations/dm:alice:bob/messages", "alice", `{"cid":"r1","body":"changed"}`, &again); code != 200 || again.ID != m.ID || again.Seq != 1 {
			t.Fatalf("retry = %d %+v", code, again)
		}
		bob.send("im/send/u/alice", 1, `{"cid":"m2","body":"over MQTT"}`)
		var page messagesOut
		if code := e.do("GET", "/v1/conversations/dm:alice:bob/messages?after=1", "alice", "", &page); code != 200 || len(page.Messages) != 1 || page.Messages[0].CID != "m2" || page.Next != nil {
			t.Fatalf("history after 1 = %d %+v", code, page)
		}
		// Page forward 3 at a time while more messages arrive.
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for i := 0; i < 30; i++ {
				e.do("POST", "/v1/users/alice/messages", "bob", fmt.Sprintf(`{"cid":"x%d","body":%d}`, i, i), nil)
			}
		}()
		seen := map[int64]bool{}
		after := int64(0)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var p messagesOut
			if code := e.do("GET", fmt.Sprintf("/v1/conversations/dm:alice:bob/messages?after=%d&limit=3", after), "bob", "", &p); code != 200 {
				t.Fatalf("page: %d", code)
			}
			for _, m := range p.Messages {
				if seen[m.Seq] || m.Seq != after+1 {
					t.Fatalf("seq %d after %d (seen %v)", m.Seq, after, seen[m.Seq])
				}
				seen[m.Seq] = true
				after = m.Seq
			}
			if p.Next == nil && after >= 32 {
				break
			}
		}
		<-sent
		if len(seen) != 32 {
			t.Fatalf("paged %d messages, want 32", len(seen))
		}
		// Backwards from the end.
		var back messagesOut
		e.do("GET", "/v1/conversations/dm:alice:bob/messages?limit=5", "alice", "", &back)
		if len(back.Messages) != 5 || back.Messages[0].Seq != 32 || back.Messages[4].Seq != 28 || back.Next == nil || *back.Next != "28" {
			t.Fatalf("latest = %+v next %v", back.Messages, back.Next)
		}
		e.do("GET", "/v1/conversations/dm:alice:bob/messages?before=3&limit=5", "alice", "", &back)
		if len(back.Messages) != 2 || back.Messages[0].Seq != 2 || back.Next != nil {
			t.Fatalf("before 3 = %+v next %v", back.Messages, back.Next)
		}
	})
}

// TestRESTErrors: every error status, and never another user's data.
func TestRESTErrors(t *testing.T) {
	s := testkit.OpenSQLite(t)
	e := setup(t, s, func(o *broker.Options) { o.MaxPayload = 512; o.Rate, o.Burst = 1, 3 })
	e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"private"}`, nil)
	e.do("POST", "/v1/groups", "alice", `{"id":"g","name":"G"}`, nil)
	expired := signed(t, jwt.SigningMethodHS256, testSecret, claims("alice", -time.Minute))
	cases := []struct {
		name, method, path, user, body, token string
		status                                int
		code                                  string
	}{
		{"NoToken", "GET", "/v1/conversations", "", "", "", 401, "unauthorized"},
		{"ExpiredToken", "GET", "/v1/conversations", "", "", expired, 401, "unauthorized"},
		{"BadLimit", "GET", "/v1/conversations?limit=0", "alice", "", "", 400, "invalid"},
		{"HugeLimit", "GET", "/v1/conversations/dm:alice:bob/messages?limit=201", "alice", "", "", 400, "invalid"},
		{"AfterAndBefore", "GET", "/v1/conversations/dm:alice:bob/messages?after=1&before=3", "alice", "", "", 400, "invalid"},
		{"NegativeAfter", "GET", "/v1/conversations/dm:alice:bob/messages?after=-1", "alice", "", "", 400, "invalid"},
		{"BadCursor", "GET", "/v1/conversations?cursor=zzz", "alice", "", "", 400, "invalid"},
		{"BadSyncToken", "GET", "/v1/sync?since=nope", "alice", "", "", 400, "invalid"},
		{"StrangerHistory", "GET", "/v1/conversations/dm:alice:bob/messages", "mallory", "", "", 403, "not_member"},
		{"StrangerSend", "POST", "/v1/conversations/dm:alice:bob/messages", "mallory", `{"body":1}`, "", 403, "not_member"},
		{"StrangerGroupSend", "POST", "/v1/conversations/g:g/messages", "mallory", `{"body":1}`, "", 403, "not_member"},
		{"StrangerRead", "POST", "/v1/conversations/dm:alice:bob/read", "mallory", `{"seq":1}`, "", 403, "not_member"},
		{"StrangerGroup", "GET", "/v1/groups/g", "mallory", "", "", 404, "not_found"},
		{"BadConv", "GET", "/v1/conversations/nonsense/messages", "alice", "", "", 404, "not_found"},
		{"NoGroup", "GET", "/v1/groups/nope", "alice", "", "", 404, "not_found"},
		{"NoGroupSend", "POST", "/v1/conversations/g:nope/messages", "alice", `{"body":1}`, "", 404, "no_such_group"},
		{"NoRoute", "GET", "/v1/nothing", "alice", "", "", 404, "not_found"},
		{"GroupExists", "POST", "/v1/groups", "bob", `{"id":"g","name":"again"}`, "", 409, "conflict"},
		{"BadJSON", "POST", "/v1/groups", "alice", `{`, "", 400, "invalid"},
		{"BadPayload", "POST", "/v1/users/bob/messages", "alice", `{"nobody":1}`, "", 400, "invalid_payload"},
		{"BadPeer", "POST", "/v1/users/b*b/messages", "alice", `{"body":1}`, "", 400, "invalid_peer"},
		{"ReadBeyond", "POST", "/v1/conversations/dm:alice:bob/read", "alice", `{"seq":99}`, "", 400, "invalid_payload"},
		{"ReadNoSeq", "POST", "/v1/conversations/dm:alice:bob/read", "alice", `{}`, "", 400, "invalid"},
		{"TooLarge", "POST", "/v1/users/bob/messages", "alice", `{"body":"` + strings.Repeat("x", 600) + `"}`, "", 413, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.http+tc.path, strings.NewReader(tc.body))
			if tc.user != "" {
				req.Header.Set("Authorization", "Bearer "+testkit.Token(t, tc.user))
			} else if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out apiErr
			buf := new(bytes.Buffer)
			buf.ReadFrom(resp.Body)
			mustUnmarshal(t, buf.Bytes(), &out)
			if resp.StatusCode != tc.status || out.Error.Code != tc.code || out.Error.Message == "" {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, buf, tc.status, tc.code)
			}
			if strings.Contains(buf.String(), "private") {
				t.Fatalf("response leaks data: %s", buf)
			}
		})
	}
	// Rate limit: 429 after the burst.
	got429 := false
	for i := 0; i < 5; i++ {
		var out apiErr
		if code := e.do("POST", "/v1/users/carol/messages", "dave", `{"body":1}`, &out); code == 429 && out.Error.Code == "rate_limited" {
			got429 = true
		}
	}
	if !got429 {
		t.Fatal("no 429 after the burst")
	}
}

// TestRESTConversationsAndRead: the list shows peer, name, last message,
// read marker and unread; a read marker set over REST reaches MQTT devices.
func TestRESTConversationsAndRead(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		phone := e.dial("alice/phone", "alice", dialOpts{v5: true})
		for i := 0; i < 3; i++ {
			if code := e.do("POST", "/v1/users/alice/messages", "bob", fmt.Sprintf(`{"body":%d}`, i), nil); code != 201 {
				t.Fatalf("send %d: status %d", i, code)
			}
		}
		if code := e.do("POST", "/v1/groups", "carol", `{"id":"club","name":"The Club","members":["alice"]}`, nil); code != 201 {
			t.Fatalf("create group: status %d", code)
		}
		var list conversationsOut
		if code := e.do("GET", "/v1/conversations?limit=1", "alice", "", &list); code != 200 || len(list.Conversations) != 1 || list.Next == nil {
			t.Fatalf("page 1 = %d %+v", code, list)
		}
		g := list.Conversations[0]
		if g.ID != "g:club" || g.Kind != "group" || g.Group != "club" || g.Name != "The Club" || g.LastSeq != 1 || g.Unread != 0 || g.LastMessage == nil {
			t.Fatalf("group = %+v", g)
		}
		if code := e.do("GET", "/v1/conversations?limit=1&cursor="+*list.Next, "alice", "", &list); code != 200 {
			t.Fatalf("page 2: status %d", code)
		}
		d := list.Conversations[0]
		if d.ID != "dm:alice:bob" || d.Kind != "direct" || d.Peer != "bob" || d.LastSeq != 3 || d.ReadSeq != 0 || d.Unread != 3 || d.LastMessage.Seq != 3 || list.Next != nil {
			t.Fatalf("direct = %+v next %v", d, list.Next)
		}
		var read struct {
			Conv    string
			ReadSeq int64 `json:"read_seq"`
		}
		if code := e.do("POST", "/v1/conversations/dm:alice:bob/read", "alice", `{"seq":2}`, &read); code != 200 || read.ReadSeq != 2 {
			t.Fatalf("read = %d %+v", code, read)
		}
		if ev := phone.nextKind("read"); ev.Seq != 2 || ev.User != "alice" {
			t.Fatalf("read event = %+v", ev)
		}
		if code := e.do("GET", "/v1/conversations", "alice", "", &list); code != 200 {
			t.Fatalf("list after read: status %d", code)
		}
		found := false
		for _, c := range list.Conversations {
			if c.ID == "dm:alice:bob" {
				found = true
				if c.ReadSeq != 2 || c.Unread != 1 {
					t.Fatalf("after read: %+v", c)
				}
			}
		}
		if !found {
			t.Fatalf("after read: dm:alice:bob missing from %+v", list.Conversations)
		}
	})
}

// TestSync: after 1,000 changes over 50 conversations, GET /v1/sync returns
// exactly the changed conversations, and a client converges without
// per-conversation calls.
func TestSync(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for i := 0; i < 60; i++ {
			if code := e.do("POST", fmt.Sprintf("/v1/users/p%02d/messages", i), "alice", `{"body":"hello"}`, nil); code != 201 {
				t.Fatalf("send to p%02d: status %d", i, code)
			}
		}
		var snap struct {
			Conversations []conversationOut
			Next          string
		}
		if code := e.do("GET", "/v1/sync?limit=100", "alice", "", &snap); code != 200 || len(snap.Conversations) != 60 || snap.Next == "" {
			t.Fatalf("snapshot = %d, %d conversations", code, len(snap.Conversations))
		}
		last := map[string]int64{}
		for _, c := range snap.Conversations {
			last[c.ID] = c.LastSeq
		}
		// 1,000 changes over 50 of the 60 conversations: 20 messages each
		// (half from the peers), plus a read marker in 10 of them.
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				peer := fmt.Sprintf("p%02d", i)
				for j := 0; j < 10; j++ {
					if code := e.do("POST", "/v1/users/"+peer+"/messages", "alice", `{"body":"a"}`, nil); code != 201 {
						t.Errorf("alice to %s: status %d", peer, code)
					}
					if code := e.do("POST", "/v1/users/alice/messages", peer, `{"body":"b"}`, nil); code != 201 {
						t.Errorf("%s to alice: status %d", peer, code)
					}
				}
			}(i)
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for i := 50; i < 60; i++ {
			if code := e.do("POST", fmt.Sprintf("/v1/conversations/dm:alice:p%02d/read", i), "alice", `{"seq":1}`, nil); code != 200 {
				t.Fatalf("read marker in dm:alice:p%02d: status %d", i, code)
			}
		}
		var changes struct {
			Conversations []conversationOut
			Next          string
		}
		if code := e.do("GET", "/v1/sync?limit=100&since="+snap.Next, "alice", "", &changes); code != 200 {
			t.Fatalf("sync = %d", code)
		}
		if len(changes.Conversations) != 60 {
			t.Fatalf("%d changed conversations, want 60 (50 with messages, 10 read markers)", len(changes.Conversations))
		}
		// Exactly the 60 changed conversations, each once.
		changed := map[string]bool{}
		for _, c := range changes.Conversations {
			if changed[c.ID] {
				t.Fatalf("%s reported twice", c.ID)
			}
			changed[c.ID] = true
		}
		for i := 0; i < 60; i++ {
			if id := fmt.Sprintf("dm:alice:p%02d", i); !changed[id] {
				t.Fatalf("%s changed and was not reported", id)
			}
		}
		for _, c := range changes.Conversations {
			if c.LastSeq == last[c.ID] {
				if c.ReadSeq != 1 {
					t.Fatalf("%s reported without a change: %+v", c.ID, c)
				}
				continue
			}
			if c.LastSeq != last[c.ID]+20 || len(c.Messages) != 20 || c.Messages[19].Seq != c.LastSeq || c.Messages[0].Seq != last[c.ID]+1 {
				t.Fatalf("%s: last_seq %d, %d messages", c.ID, c.LastSeq, len(c.Messages))
			}
		}
		var none struct {
			Conversations []conversationOut
		}
		if changes.Next == "" {
			t.Fatal("sync: no next token after the changes")
		}
		if code := e.do("GET", "/v1/sync?since="+changes.Next, "alice", "", &none); code != 200 {
			t.Fatalf("sync after the changes: status %d", code)
		}
		if len(none.Conversations) != 0 {
			t.Fatalf("nothing changed, got %d", len(none.Conversations))
		}
	})
}

// TestCORS: preflights and responses carry CORS headers for allowed
// origins only.
func TestCORS(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) { o.CORSOrigins = []string{"https://app.example"} })
	for _, tc := range []struct {
		origin string
		want   string
	}{{"https://app.example", "https://app.example"}, {"https://evil.example", ""}} {
		req, _ := http.NewRequest("OPTIONS", e.http+"/v1/conversations", nil)
		req.Header.Set("Origin", tc.origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.want {
			t.Fatalf("origin %s: allow-origin %q, want %q", tc.origin, got, tc.want)
		}
		if tc.want != "" && (resp.StatusCode != 204 || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization")) {
			t.Fatalf("preflight = %d %v", resp.StatusCode, resp.Header)
		}
	}
}
