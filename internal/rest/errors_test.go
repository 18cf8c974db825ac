package rest_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-im/parley/internal/send"
)

// message returns the error message of an error answer.
func (a answer) message() string {
	e, _ := a.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// TestErrorTexts: the messages of 400 answers say which field is wrong and
// what type it must be, in JSON's terms, for every body the API decodes.
func TestErrorTexts(t *testing.T) {
	e := setup(t, 0)
	e.do(t, "POST", "/v1/users/bob/messages", "alice", `{"body":"hi"}`).want(t, http.StatusCreated, "")
	e.do(t, "POST", "/v1/groups", "alice", `{"id":"team","name":"Team","members":["bob"]}`).want(t, http.StatusCreated, "")
	cases := []struct {
		name, method, path, body string
		status                   int
		code, message            string
	}{
		{"ReadSeqString", "POST", "/v1/conversations/dm:alice:bob/read", `{"seq":"1"}`, 400, "invalid",
			`field "seq" must be an integer, got a string`},
		{"ReadSeqFraction", "POST", "/v1/conversations/dm:alice:bob/read", `{"seq":1.5}`, 400, "invalid",
			`field "seq" must be an integer, got 1.5`},
		{"ReadBodyArray", "POST", "/v1/conversations/dm:alice:bob/read", `[1]`, 400, "invalid",
			`request body must be a JSON object, got an array`},
		{"ReadBodySyntax", "POST", "/v1/conversations/dm:alice:bob/read", `{"seq":1`, 400, "invalid",
			`request body is not valid JSON: unexpected end of JSON input (at byte 8)`},
		{"GroupMembersNumbers", "POST", "/v1/groups", `{"name":"x","members":["bob",7]}`, 400, "invalid",
			`field "members" must be an array of strings, got a number in it`},
		{"GroupMembersString", "POST", "/v1/groups", `{"name":"x","members":"bob"}`, 400, "invalid",
			`field "members" must be an array, got a string`},
		{"GroupName", "POST", "/v1/groups", `{"name":42}`, 400, "invalid",
			`field "name" must be a string, got a number`},
		{"MemberRole", "PUT", "/v1/groups/team/members/carol", `{"role":1}`, 400, "invalid",
			`field "role" must be a string, got a number`},
		{"SendCID", "POST", "/v1/users/bob/messages", `{"cid":1,"body":"hi"}`, 400, "invalid_payload",
			`field "cid" must be a string, got a number`},
		{"SendEphemeral", "POST", "/v1/users/bob/messages", `{"ephemeral":"yes","body":"hi"}`, 400, "invalid_payload",
			`field "ephemeral" must be true or false, got a string`},
		{"SendToSelf", "POST", "/v1/users/alice/messages", `{"body":"hi"}`, 400, "invalid_peer",
			`you cannot send a direct message to yourself`},
		{"SendToSelfByConv", "POST", "/v1/conversations/dm:alice:alice/messages", `{"body":"hi"}`, 404, "not_found",
			`no such conversation: a direct conversation is between two different users`},
		{"SendInvalidPeer", "POST", "/v1/users/al%20ice/messages", `{"body":"hi"}`, 400, "invalid_peer",
			`invalid user id "al ice" (1 to 64 of A-Z a-z 0-9 . _ @ -)`},
		{"MalformedConv", "GET", "/v1/conversations/alice/messages", ``, 404, "not_found",
			`no such conversation: ids are dm:USER1:USER2 or g:GROUP`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, tc.method, tc.path, "alice", tc.body).want(t, tc.status, tc.code)
			if a.message() != tc.message {
				t.Fatalf("message %q, want %q", a.message(), tc.message)
			}
		})
	}
}

// TestConvEitherOrder: dm:bob:alice is accepted wherever a conversation id
// is in the path, and the answers carry the canonical dm:alice:bob.
func TestConvEitherOrder(t *testing.T) {
	e := setup(t, 0)
	a := e.do(t, "POST", "/v1/conversations/dm:bob:alice/messages", "alice", `{"body":"hi"}`).want(t, http.StatusCreated, "")
	if a.body["conv"] != "dm:alice:bob" {
		t.Fatalf("sent to %v, want dm:alice:bob", a.body["conv"])
	}
	a = e.do(t, "GET", "/v1/conversations/dm:bob:alice/messages", "bob", "").want(t, http.StatusOK, "")
	ms := a.body["messages"].([]any)
	if len(ms) != 1 || ms[0].(map[string]any)["conv"] != "dm:alice:bob" {
		t.Fatalf("history %v", a.body)
	}
	a = e.do(t, "POST", "/v1/conversations/dm:bob:alice/read", "bob", `{"seq":1}`).want(t, http.StatusOK, "")
	if a.body["conv"] != "dm:alice:bob" || a.body["read_seq"] != 1.0 {
		t.Fatalf("read %v", a.body)
	}
	e.do(t, "GET", "/v1/conversations/dm:bob:carol/messages", "alice", "").want(t, http.StatusForbidden, "not_member")
}

// TestRetryAfter: a 429 says in Retry-After how many seconds until the
// user's bucket holds a token again, and says so in its message too.
func TestRetryAfter(t *testing.T) {
	e := setup(t, 0, func(s *send.Service) { s.Limiter = send.NewRateLimiter(0.1, 2) }) // a token every 10 s
	for _, tc := range []struct{ name, method, path, body string }{
		{"Send", "POST", "/v1/users/bob/messages", `{"body":"hi"}`},
		{"CreateGroup", "POST", "/v1/groups", `{"name":"Team"}`},
		{"ChangeMember", "PUT", "/v1/groups/team/members/carol", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "u" + tc.name
			e.do(t, "POST", "/v1/users/bob/messages", user, `{"body":"1"}`).want(t, http.StatusCreated, "")
			e.do(t, "POST", "/v1/users/bob/messages", user, `{"body":"2"}`).want(t, http.StatusCreated, "")
			a := e.do(t, tc.method, tc.path, user, tc.body).want(t, http.StatusTooManyRequests, "rate_limited")
			s, err := strconv.Atoi(a.header.Get("Retry-After"))
			if err != nil || s < 9 || s > 10 {
				t.Fatalf("Retry-After %q, want 9 or 10 seconds", a.header.Get("Retry-After"))
			}
			if want := "slow down: try again in " + strconv.Itoa(s) + " s"; !strings.Contains(a.message(), want) {
				t.Fatalf("message %q lacks %q", a.message(), want)
			}
		})
	}
	e.do(t, "GET", "/v1/conversations", "uSend", "").want(t, http.StatusOK, "")
}
