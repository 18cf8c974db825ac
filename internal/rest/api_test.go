package rest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/rest"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/testkit"
)

// downStore wraps a real store; while down is set, the reads of the REST
// API fail as if the database were unreachable.
type downStore struct {
	history.Store
	mu   sync.Mutex
	down map[string]bool // by method
}

func (s *downStore) set(method string, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down == nil {
		s.down = map[string]bool{}
	}
	s.down[method] = down
}

func (s *downStore) failing(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down[method] {
		return errors.New("connection refused")
	}
	return nil
}

func (s *downStore) History(ctx context.Context, q history.HistoryQuery) ([]history.Message, history.ConvHead, error) {
	if err := s.failing("History"); err != nil {
		return nil, history.ConvHead{}, err
	}
	return s.Store.History(ctx, q)
}

func (s *downStore) Conversations(ctx context.Context, user, cursor string, limit int) ([]history.ConversationView, string, error) {
	if err := s.failing("Conversations"); err != nil {
		return nil, "", err
	}
	return s.Store.Conversations(ctx, user, cursor, limit)
}

func (s *downStore) Changes(ctx context.Context, user, since string, limit int) ([]history.ConversationView, string, bool, error) {
	if err := s.failing("Changes"); err != nil {
		return nil, "", false, err
	}
	return s.Store.Changes(ctx, user, since, limit)
}

// discard is a Deliverer that delivers nowhere.
type discard struct{}

func (discard) DeliverMessage([]string, history.Message) {}
func (discard) DeliverEvent([]string, []byte, byte)      {}

// env is the REST API over a real SQLite store, served by httptest.
type env struct {
	srv    *httptest.Server
	store  *downStore
	tokens *auth.Tokens
}

// setup serves the API over a fresh store; mod changes the send Service
// before it starts (a Limiter, say).
func setup(t testing.TB, maxPayload int, mod ...func(*send.Service)) *env {
	t.Helper()
	s := testkit.OpenSQLite(t)
	ds := &downStore{Store: s}
	log := testkit.Logger()
	svc := &send.Service{Store: ds, Groups: send.NewGroups(ds), Deliver: discard{}, MaxPayload: maxPayload, Log: log}
	for _, f := range mod {
		f(svc)
	}
	if err := svc.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Committer.Close)
	tokens := &auth.Tokens{Secret: []byte("a secret of at least thirty-two bytes")}
	mux := http.NewServeMux()
	(&rest.API{Store: ds, Service: svc, Tokens: tokens, MaxPayload: maxPayload, Log: log}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{srv: srv, store: ds, tokens: tokens}
}

// answer is a decoded response.
type answer struct {
	status int
	header http.Header
	close  bool // the server closes the connection after the answer
	body   map[string]any
}

// code returns the error code of an error answer.
func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// do sends a request as user ("" for none) with body ("" for none).
func (e *env) do(t testing.TB, method, path, user, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return e.doReader(t, method, path, user, r)
}

func (e *env) doReader(t testing.TB, method, path, user string, body io.Reader) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		tok, err := e.tokens.Sign(user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return e.send(t, req)
}

func (e *env) send(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, close: resp.Close}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	return a
}

// want fails the test unless a has status (and, for errors, code).
func (a answer) want(t testing.TB, status int, code string) answer {
	t.Helper()
	if a.status != status || a.code() != code {
		t.Fatalf("answer %d %q, want %d %q: %v", a.status, a.code(), status, code, a.body)
	}
	return a
}

// seqs returns the seqs of the messages of an answer's list.
func seqs(t testing.TB, list any) []int64 {
	t.Helper()
	ms, ok := list.([]any)
	if !ok {
		t.Fatalf("not a list: %v", list)
	}
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = int64(m.(map[string]any)["seq"].(float64))
	}
	return out
}

func TestRoutes(t *testing.T) {
	routes := rest.Routes()
	for _, want := range []string{"GET /v1/conversations", "POST /v1/users/{peer}/messages", "GET /v1/sync", "DELETE /v1/groups/{id}/members/{user}"} {
		if !slices.Contains(routes, want) {
			t.Errorf("Routes lacks %q: %v", want, routes)
		}
	}
}

func TestAuthentication(t *testing.T) {
	e := setup(t, 0)
	expired, err := e.tokens.Sign("alice", -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, header, message, challenge string
	}{
		{"ErrMissing", "", "missing Authorization: Bearer <token>", `Bearer realm="parley"`},
		{"ErrBasic", "Basic YWxpY2U6eA==", "missing Authorization: Bearer <token>", `Bearer realm="parley"`},
		{"ErrForged", "Bearer not.a.token", "invalid token", `Bearer realm="parley", error="invalid_token"`},
		{"ErrExpired", "Bearer " + expired, "token expired", `Bearer realm="parley", error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+"/v1/conversations", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			a := e.send(t, req).want(t, http.StatusUnauthorized, "unauthorized")
			if msg := a.body["error"].(map[string]any)["message"]; msg != tc.message {
				t.Fatalf("message %q, want %q", msg, tc.message)
			}
			if got := a.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
		})
	}
	e.do(t, "GET", "/v1/nothing/here", "alice", "").want(t, http.StatusNotFound, "not_found")
}

// TestSend: sends by peer or by conversation are stored once per cid;
// ephemeral ones are accepted and not stored; refusals carry their code.
func TestSend(t *testing.T) {
	e := setup(t, 200)
	a := e.do(t, "POST", "/v1/users/bob/messages", "alice", `{"cid":"c1","body":{"text":"hi"}}`).want(t, http.StatusCreated, "")
	if a.body["seq"] != 1.0 || a.body["conv"] != "dm:alice:bob" || a.body["from"] != "alice" || a.body["cid"] != "c1" {
		t.Fatalf("stored %v", a.body)
	}
	if b, _ := json.Marshal(a.body["body"]); string(b) != `{"text":"hi"}` {
		t.Fatalf("body %s", b)
	}
	retry := e.do(t, "POST", "/v1/users/bob/messages", "alice", `{"cid":"c1","body":"again"}`).want(t, http.StatusOK, "")
	if retry.body["seq"] != 1.0 || retry.body["id"] != a.body["id"] {
		t.Fatalf("retry %v, want the original %v", retry.body, a.body)
	}
	for _, user := range []string{"bob", "alice"} {
		a := e.do(t, "POST", "/v1/conversations/dm:alice:bob/messages", user, `{"body":"via conv"}`).want(t, http.StatusCreated, "")
		if a.body["from"] != user {
			t.Fatalf("stored %v", a.body)
		}
	}
	if a := e.do(t, "POST", "/v1/users/bob/messages", "alice", `{"ephemeral":true,"type":"typing","body":1}`).want(t, http.StatusAccepted, ""); a.body["ephemeral"] != true {
		t.Fatalf("ephemeral answer %v", a.body)
	}
	e.do(t, "POST", "/v1/groups", "alice", `{"id":"team","name":"Team","members":["bob"]}`).want(t, http.StatusCreated, "")
	if a := e.do(t, "POST", "/v1/conversations/g:team/messages", "bob", `{"body":"to the group"}`).want(t, http.StatusCreated, ""); a.body["seq"] != 2.0 {
		t.Fatalf("group message %v", a.body)
	}

	for _, tc := range []struct {
		name, path, user, body string
		status                 int
		code                   string
	}{
		{"ErrOutsider", "/v1/conversations/dm:alice:bob/messages", "carol", `{"body":1}`, http.StatusForbidden, "not_member"},
		{"ErrNotGroupMember", "/v1/conversations/g:team/messages", "carol", `{"body":1}`, http.StatusForbidden, "not_member"},
		{"ErrNoSuchConv", "/v1/conversations/nonsense/messages", "alice", `{"body":1}`, http.StatusNotFound, "not_found"},
		{"ErrSelf", "/v1/users/alice/messages", "alice", `{"body":1}`, http.StatusBadRequest, "invalid_peer"},
		{"ErrPayload", "/v1/users/bob/messages", "alice", `{"body":null}`, http.StatusBadRequest, "invalid_payload"},
		{"ErrTooLarge", "/v1/users/bob/messages", "alice", `{"body":"` + strings.Repeat("x", 200) + `"}`, http.StatusRequestEntityTooLarge, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.do(t, "POST", tc.path, tc.user, tc.body).want(t, tc.status, tc.code)
		})
	}
	t.Run("ErrDeclaredTooLarge", func(t *testing.T) {
		// Refused on its Content-Length, before the body is read.
		big := bytes.Repeat([]byte("x"), 1<<20+1)
		a := e.doReader(t, "POST", "/v1/users/bob/messages", "alice", bytes.NewReader(big)).want(t, http.StatusRequestEntityTooLarge, "too_large")
		if !a.close {
			t.Fatal("the server keeps the connection after refusing a body it did not read")
		}
	})
	t.Run("ErrChunkedTooLarge", func(t *testing.T) {
		// No Content-Length: the body is cut at the limit while read.
		body := io.MultiReader(strings.NewReader(`{"id":"big","name":"`), strings.NewReader(strings.Repeat("n", 1<<20)), strings.NewReader(`"}`))
		e.doReader(t, "POST", "/v1/groups", "alice", body).want(t, http.StatusRequestEntityTooLarge, "too_large")
	})
}

// TestHistory: GET messages pages latest first, after=N ascending and
// before=N descending, with next set while more remain.
func TestHistory(t *testing.T) {
	e := setup(t, 0)
	for i := 1; i <= 5; i++ {
		e.do(t, "POST", "/v1/users/bob/messages", "alice", fmt.Sprintf(`{"body":%d}`, i)).want(t, http.StatusCreated, "")
	}
	const path = "/v1/conversations/dm:alice:bob/messages"
	for _, tc := range []struct {
		name, query string
		seqs        []int64
		next        any
	}{
		{"Latest", "", []int64{5, 4, 3, 2, 1}, nil},
		{"LatestPage", "?limit=2", []int64{5, 4}, "4"},
		{"Before", "?before=4&limit=2", []int64{3, 2}, "2"},
		{"BeforeLast", "?before=2&limit=2", []int64{1}, nil},
		{"BeforeFirst", "?before=1&limit=1", []int64{}, nil},
		{"BeforeZero", "?before=0", []int64{}, nil},
		{"After", "?after=0&limit=2", []int64{1, 2}, "2"},
		{"AfterEnd", "?after=3&limit=2", []int64{4, 5}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, "GET", path+tc.query, "bob", "").want(t, http.StatusOK, "")
			if got := seqs(t, a.body["messages"]); !slices.Equal(got, tc.seqs) || a.body["next"] != tc.next {
				t.Fatalf("seqs %v next %v, want %v next %v", got, a.body["next"], tc.seqs, tc.next)
			}
		})
	}
	for _, tc := range []struct{ name, path, user string }{
		{"ErrBoth", path + "?after=1&before=3", "bob"},
		{"ErrLimitZero", path + "?limit=0", "bob"},
		{"ErrLimitHigh", path + fmt.Sprintf("?limit=%d", rest.MaxPageLimit+1), "bob"},
		{"ErrLimitText", path + "?limit=ten", "bob"},
		{"ErrAfter", path + "?after=-1", "bob"},
		{"ErrBefore", path + "?before=x", "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.do(t, "GET", tc.path, tc.user, "").want(t, http.StatusBadRequest, "invalid")
		})
	}
	e.do(t, "GET", "/v1/conversations/x/messages", "bob", "").want(t, http.StatusNotFound, "not_found")
	e.do(t, "GET", path, "carol", "").want(t, http.StatusForbidden, "not_member")
	e.store.set("History", true)
	e.do(t, "GET", path, "bob", "").want(t, http.StatusServiceUnavailable, "unavailable")
}

// TestConversationsAndRead: the conversation list shows last and read seqs;
// a read marker moves forward only.
func TestConversationsAndRead(t *testing.T) {
	e := setup(t, 0)
	for i := 1; i <= 3; i++ {
		e.do(t, "POST", "/v1/users/bob/messages", "alice", fmt.Sprintf(`{"body":%d}`, i)).want(t, http.StatusCreated, "")
	}
	e.do(t, "POST", "/v1/users/carol/messages", "bob", `{"body":"x"}`).want(t, http.StatusCreated, "")
	const read = "/v1/conversations/dm:alice:bob/read"
	if a := e.do(t, "POST", read, "bob", `{"seq":2}`).want(t, http.StatusOK, ""); a.body["read_seq"] != 2.0 || a.body["conv"] != "dm:alice:bob" {
		t.Fatalf("read %v", a.body)
	}
	if a := e.do(t, "POST", read, "bob", `{"seq":1}`).want(t, http.StatusOK, ""); a.body["read_seq"] != 2.0 {
		t.Fatalf("read back %v, want the marker to stay at 2", a.body)
	}
	for _, tc := range []struct {
		name, body string
		code       string
	}{
		{"ErrNoSeq", `{}`, "invalid"},
		{"ErrJSON", `{"seq":`, "invalid"},
		{"ErrUTF8", "{\"seq\":1,\"x\":\"\xff\"}", "invalid"},
		{"ErrBeyond", `{"seq":9}`, "invalid_payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.do(t, "POST", read, "bob", tc.body).want(t, http.StatusBadRequest, tc.code)
		})
	}
	e.do(t, "POST", "/v1/conversations/dm:alice:bob/read", "carol", `{"seq":1}`).want(t, http.StatusForbidden, "not_member")
	e.do(t, "POST", "/v1/conversations/bad/read", "bob", `{"seq":1}`).want(t, http.StatusNotFound, "not_found")

	a := e.do(t, "GET", "/v1/conversations", "bob", "").want(t, http.StatusOK, "")
	convs := a.body["conversations"].([]any)
	got := map[string][3]float64{}
	for _, c := range convs {
		c := c.(map[string]any)
		got[c["id"].(string)] = [3]float64{c["last_seq"].(float64), c["read_seq"].(float64), c["unread"].(float64)}
	}
	if len(got) != 2 || got["dm:alice:bob"] != [3]float64{3, 2, 1} || got["dm:bob:carol"] != [3]float64{1, 0, 0} {
		t.Fatalf("conversations %v", a.body)
	}
	page := e.do(t, "GET", "/v1/conversations?limit=1", "bob", "").want(t, http.StatusOK, "")
	next, ok := page.body["next"].(string)
	if len(page.body["conversations"].([]any)) != 1 || !ok || next == "" {
		t.Fatalf("first page %v", page.body)
	}
	rest2 := e.do(t, "GET", "/v1/conversations?limit=1&cursor="+next, "bob", "").want(t, http.StatusOK, "")
	if len(rest2.body["conversations"].([]any)) != 1 || rest2.body["next"] != nil {
		t.Fatalf("second page %v", rest2.body)
	}
	e.do(t, "GET", "/v1/conversations?limit=-1", "bob", "").want(t, http.StatusBadRequest, "invalid")
	e.store.set("Conversations", true)
	e.do(t, "GET", "/v1/conversations", "bob", "").want(t, http.StatusServiceUnavailable, "unavailable")
}

// TestSync: each changed conversation comes with its latest messages in
// ascending order, ending at last_seq, within the page's message budget.
func TestSync(t *testing.T) {
	e := setup(t, 64<<10)
	for i := 1; i <= 3; i++ {
		e.do(t, "POST", "/v1/users/bob/messages", "alice", fmt.Sprintf(`{"body":%d}`, i)).want(t, http.StatusCreated, "")
	}
	a := e.do(t, "GET", "/v1/sync", "bob", "").want(t, http.StatusOK, "")
	convs := a.body["conversations"].([]any)
	if len(convs) != 1 || a.body["more"] != false {
		t.Fatalf("sync %v", a.body)
	}
	if got := seqs(t, convs[0].(map[string]any)["messages"]); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("messages %v", got)
	}
	since := a.body["next"].(string)
	if a := e.do(t, "GET", "/v1/sync?since="+since, "bob", "").want(t, http.StatusOK, ""); len(a.body["conversations"].([]any)) != 0 {
		t.Fatalf("nothing changed, yet %v", a.body)
	}

	// 20 messages of 60 KB exceed the 1 MiB budget: the newest that fit
	// come, still ending at last_seq; a conversation after that gets none.
	big := strings.Repeat("b", 60<<10)
	for range 20 {
		e.do(t, "POST", "/v1/users/carol/messages", "bob", `{"body":"`+big+`"}`).want(t, http.StatusCreated, "")
	}
	e.do(t, "POST", "/v1/users/dave/messages", "bob", `{"body":"small"}`).want(t, http.StatusCreated, "")
	a = e.do(t, "GET", "/v1/sync?since="+since, "bob", "").want(t, http.StatusOK, "")
	lists := map[string][]int64{}
	var order []string
	for _, c := range a.body["conversations"].([]any) {
		c := c.(map[string]any)
		lists[c["id"].(string)] = seqs(t, c["messages"])
		order = append(order, c["id"].(string))
	}
	carol := lists["dm:bob:carol"]
	if len(carol) == 0 || len(carol) >= 20 || carol[len(carol)-1] != 20 || carol[0] != int64(20-len(carol)+1) {
		t.Fatalf("the big conversation came with %v, want the newest that fit, ending at 20", carol)
	}
	if slices.Index(order, "dm:bob:dave") > slices.Index(order, "dm:bob:carol") && len(lists["dm:bob:dave"]) != 0 {
		t.Fatalf("a conversation after the budget ran out came with %v", lists["dm:bob:dave"])
	}

	e.do(t, "GET", "/v1/sync?limit=0", "bob", "").want(t, http.StatusBadRequest, "invalid")
	e.do(t, "GET", fmt.Sprintf("/v1/sync?limit=%d", rest.MaxSyncLimit+1), "bob", "").want(t, http.StatusBadRequest, "invalid")
	e.store.set("History", true)
	e.do(t, "GET", "/v1/sync", "bob", "").want(t, http.StatusServiceUnavailable, "unavailable")
	e.store.set("History", false)
	e.store.set("Changes", true)
	e.do(t, "GET", "/v1/sync", "bob", "").want(t, http.StatusServiceUnavailable, "unavailable")
}

// TestGroups: create, read, add, promote and remove members.
func TestGroups(t *testing.T) {
	e := setup(t, 0)
	a := e.do(t, "POST", "/v1/groups", "alice", `{"id":"team","name":"Team","members":["bob"]}`).want(t, http.StatusCreated, "")
	if a.body["id"] != "team" || a.body["conv"] != "g:team" || a.body["name"] != "Team" || a.body["created_by"] != "alice" || len(a.body["members"].([]any)) != 2 {
		t.Fatalf("created %v", a.body)
	}
	if _, err := time.Parse(time.RFC3339, a.body["created_at"].(string)); err != nil {
		t.Fatalf("created_at: %v", err)
	}
	if a := e.do(t, "GET", "/v1/groups/team", "bob", "").want(t, http.StatusOK, ""); len(a.body["members"].([]any)) != 2 {
		t.Fatalf("group %v", a.body)
	}
	e.do(t, "GET", "/v1/groups/team", "carol", "").want(t, http.StatusNotFound, "not_found")

	roles := func(a answer) map[string]string {
		out := map[string]string{}
		for _, m := range a.body["members"].([]any) {
			m := m.(map[string]any)
			out[m["user"].(string)] = m["role"].(string)
		}
		return out
	}
	a = e.do(t, "PUT", "/v1/groups/team/members/carol", "alice", "").want(t, http.StatusOK, "")
	if msg := a.body["message"].(map[string]any); msg["type"] != history.TypeMemberAdded || msg["seq"] != 2.0 || roles(a)["carol"] != history.RoleMember {
		t.Fatalf("added %v", a.body)
	}
	a = e.do(t, "PUT", "/v1/groups/team/members/bob", "alice", `{"role":"admin"}`).want(t, http.StatusOK, "")
	if roles(a)["bob"] != history.RoleAdmin || a.body["message"].(map[string]any)["type"] != history.TypeMemberRole {
		t.Fatalf("promoted %v", a.body)
	}
	a = e.do(t, "DELETE", "/v1/groups/team/members/carol", "bob", "").want(t, http.StatusOK, "")
	if _, ok := roles(a)["carol"]; ok || a.body["message"].(map[string]any)["type"] != history.TypeMemberRemoved {
		t.Fatalf("removed %v", a.body)
	}

	for _, tc := range []struct {
		name, method, path, user, body string
		status                         int
		code                           string
	}{
		{"ErrTaken", "POST", "/v1/groups", "zed", `{"id":"team","name":"Mine"}`, http.StatusConflict, history.ECONFLICT},
		{"ErrName", "POST", "/v1/groups", "zed", `{"id":"z"}`, http.StatusBadRequest, history.EINVALID},
		{"ErrJSON", "POST", "/v1/groups", "zed", `{"id":`, http.StatusBadRequest, "invalid"},
		{"ErrEmptyBody", "POST", "/v1/groups", "zed", ``, http.StatusBadRequest, "invalid"},
		{"ErrRole", "PUT", "/v1/groups/team/members/dave", "alice", `{"role":"king"}`, http.StatusBadRequest, history.EINVALID},
		{"ErrRoleJSON", "PUT", "/v1/groups/team/members/dave", "alice", `[`, http.StatusBadRequest, "invalid"},
		{"ErrForbidden", "DELETE", "/v1/groups/team/members/alice", "bob", ``, http.StatusForbidden, history.EFORBIDDEN},
		{"ErrOutsider", "PUT", "/v1/groups/team/members/zed", "zed", ``, http.StatusNotFound, history.ENOTFOUND},
		{"ErrNoGroup", "GET", "/v1/groups/nope", "alice", ``, http.StatusNotFound, history.ENOTFOUND},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.do(t, tc.method, tc.path, tc.user, tc.body).want(t, tc.status, tc.code)
		})
	}
}
