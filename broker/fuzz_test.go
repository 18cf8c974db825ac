package broker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// statusOfCode is the one table of docs/api.md: the HTTP status of every
// error code the REST API answers with.
var statusOfCode = map[string]int{
	"invalid": 400, "invalid_payload": 400, "invalid_peer": 400,
	"unauthorized": 401, "not_member": 403, "forbidden": 403,
	"not_found": 404, "no_such_group": 404, "no_such_message": 404, "not_allowed": 403, "blocked": 403, "conflict": 409,
	"too_large": 413, "quota_exceeded": 413, "rejected": 422, "rate_limited": 429, "unavailable": 503,
}

// FuzzREST sends arbitrary path parameters, query strings and bodies to every
// REST route as an authenticated user, on a healthy store. The API never
// fails internally (no 5xx), always answers JSON, answers errors with the
// documented {"error":{...}} object and status, and treats a send body as
// the documents say: accepted and stored unchanged when sendOracle, written
// from docs/protocol.md and docs/api.md, accepts it, refused with its code
// when not.
func FuzzREST(f *testing.F) {
	const maxPayload = 4096
	e := setup(f, testkit.OpenSQLite(f), func(o *broker.Options) { o.MaxPayload, o.BlobDir, o.MaxUpload = maxPayload, f.TempDir(), 1<<16 })
	if code := e.do("POST", "/v1/groups", "alice", `{"id":"g1","name":"G","members":["bob"]}`, nil); code != 201 {
		f.Fatalf("create group: %d", code)
	}
	if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"first"}`, nil); code != 201 {
		f.Fatalf("send: %d", code)
	}
	routes := broker.Routes()
	h := e.b.Handler()
	tok := testkit.Token(f, "alice")
	defaults := strings.NewReplacer("{conv}", "g:g1", "{peer}", "bob", "{id}", "g1", "{user}", "bob", "{seq}", "1", "{emoji}", "%F0%9F%91%8D", "{device}", "phone")

	for i := range routes {
		f.Add(uint8(i), "", "", []byte(nil))
	}
	// at is the index of a route: seeds name their route, so that a route
	// added in between does not move them onto another.
	at := func(route string) uint8 {
		i := slices.Index(routes, route)
		if i < 0 {
			f.Fatalf("no route %q", route)
		}
		return uint8(i)
	}
	f.Add(at("GET /v1/conversations"), "", "limit=0&cursor=%ff", []byte(nil))
	f.Add(at("GET /v1/conversations/{conv}/messages"), "dm:alice:bob", "after=1&before=2", []byte(nil))
	f.Add(at("GET /v1/conversations/{conv}/messages"), "g:g1", "before=9223372036854775807&limit=200", []byte(nil))
	f.Add(at("POST /v1/conversations/{conv}/messages"), "", "", []byte(`{"cid":"c1","type":"note","body":{"n":1},"ephemeral":false}`))
	f.Add(at("POST /v1/conversations/{conv}/messages"), "dm:alice:bob", "", []byte(`{"cid":"c1","body":"\u003chi\u003e & bye"}`))
	f.Add(at("POST /v1/users/{peer}/messages"), "", "", []byte(`{"body":1e400}`))
	f.Add(at("POST /v1/users/{peer}/messages"), "", "", []byte(`{"cid":"a\u0000b","body":"x"}`))
	f.Add(at("POST /v1/users/{peer}/messages"), "", "", []byte(`{"type":"x\u0000","body":{"t":"\u0000"}}`))
	f.Add(at("POST /v1/users/{peer}/messages"), "alice", "", []byte(`{"body":true,"ephemeral":true}`))
	f.Add(at("PATCH /v1/conversations/{conv}/messages/{seq}"), "", "", []byte(`{"body":null}`))
	f.Add(at("POST /v1/conversations/{conv}/read"), "", "", []byte(`{"seq":-1}`))
	f.Add(at("POST /v1/conversations/{conv}/read"), "dm:alice:bob", "", []byte(`{"seq":1.5}`))
	f.Add(at("GET /v1/conversations/{conv}/receipts"), "dm:bob:alice", "", []byte(nil))
	f.Add(at("GET /v1/sync"), "", "since=AAAA", []byte(nil))
	f.Add(at("POST /v1/groups"), "", "", []byte(`{"id":"","name":"`+strings.Repeat("n", 201)+`","members":["bob","bob","alice"]}`))
	f.Add(at("POST /v1/groups"), "", "", []byte(`{"name":"x","members":[1]}`))
	f.Add(at("POST /v1/groups"), "", "", []byte(`{"name":"a\u0000","members":["bob"]}`))
	f.Add(at("POST /v1/groups"), "", "", []byte("{\"name\":\"\xff\"}"))
	f.Add(at("PUT /v1/groups/{id}/members/{user}"), "", "", []byte(`{"role":"owner"}`))
	f.Add(at("PUT /v1/groups/{id}/members/{user}"), "g1/members/x", "", []byte(``))
	f.Add(at("DELETE /v1/groups/{id}/members/{user}"), "../../v1/groups", "", []byte(nil))
	f.Add(at("POST /v1/uploads"), "", "", []byte("\x89PNG\r\n\x1a\n"))
	f.Add(at("GET /v1/files/{id}"), "f0123456789abcdef0123456789abcdef", "exp=1&sig=zz", []byte(nil))
	f.Add(at("GET /v1/files/{id}"), "f0123456789abcdef0123456789abcdeft", "", []byte(nil))
	f.Add(at("POST /v1/files/{id}/url"), "..", "", []byte(nil))
	f.Add(at("HEAD /v1/uploads/{id}"), "f0123456789abcdef0123456789abcdef", "", []byte(nil))
	f.Add(at("PATCH /v1/uploads/{id}"), "f0123456789abcdef0123456789abcdef", "", []byte("part"))
	f.Add(at("PATCH /v1/uploads/{id}"), "../partial", "", []byte("part"))
	f.Add(at("DELETE /v1/uploads/{id}"), "f0123456789abcdef0123456789abcdef.info", "", []byte(nil))
	f.Add(at("GET /v1/uploads/{id}"), "f0123456789abcdef0123456789abcdeft", "", []byte(nil))
	// The committed corpus (testdata/fuzz/FuzzREST) names its routes by
	// index: each must still be the route it was written for.
	for file, route := range map[string]string{
		"group_bad_members":     "POST /v1/groups",
		"member_role":           "PUT /v1/groups/{id}/members/{user}",
		"read_marker_too_far":   "POST /v1/conversations/{conv}/read",
		"sync_bad_token":        "GET /v1/sync",
		"history_paging":        "GET /v1/conversations/{conv}/messages",
		"send_cid_case":         "POST /v1/conversations/{conv}/messages",
		"send_direct_ephemeral": "POST /v1/users/{peer}/messages",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzREST", file))
		if err != nil {
			f.Fatal(err)
		}
		want := fmt.Sprintf("byte(%q)", rune(at(route)))
		if line := strings.Split(string(b), "\n")[1]; line != want {
			f.Fatalf("corpus %s names route %s, want %s (%s): routes moved, fix the file", file, line, want, route)
		}
	}

	f.Fuzz(func(t *testing.T, route uint8, param, query string, body []byte) {
		method, pattern, _ := strings.Cut(routes[int(route)%len(routes)], " ")
		if method == "DELETE" && pattern == "/v1/users/me" {
			return // it would delete the caller, leaving nothing to fuzz
		}
		if strings.HasPrefix(pattern, "/v1/blocks/") {
			// Block someone the sends below do not go to: a block of bob
			// would refuse them (blocked), which the send oracle does not
			// model.
			pattern = strings.Replace(pattern, "{user}", "mallory", 1)
		}
		path := defaults.Replace(pattern)
		if param != "" {
			p := url.PathEscape(param)
			path = strings.NewReplacer("{conv}", p, "{peer}", p, "{id}", p, "{user}", "bob", "{seq}", "1", "{emoji}", p, "{device}", p).Replace(pattern)
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(method, "http://parley"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body)
		}
		if method == "HEAD" {
			return // no body: the status is the answer
		}
		if pattern == "/v1/users/me/export" && rec.Code == 200 {
			return // JSON lines, not one JSON value
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, target, ct)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: reply is not JSON: %q", method, target, rec.Body)
		}
		if rec.Code >= 400 {
			var reply map[string]json.RawMessage
			var e apiErr
			if json.Unmarshal(rec.Body.Bytes(), &reply) != nil || len(reply) != 1 || json.Unmarshal(rec.Body.Bytes(), &e) != nil ||
				e.Error.Message == "" || statusOfCode[e.Error.Code] != rec.Code {
				t.Fatalf("%s %s: error reply %d %s is not the documented error object", method, target, rec.Code, rec.Body)
			}
		}

		// A send to a valid target: the REST API accepts exactly what the
		// rules of docs/protocol.md (Sending a message) and docs/api.md
		// accept, as judged by sendOracle, written from those documents
		// and not from the server's parser.
		isSend := method == "POST" && strings.HasSuffix(pattern, "/messages")
		if !isSend || param != "" {
			return
		}
		want := sendOracle(body, maxPayload)
		if want.other {
			return
		}
		if want.code != "" {
			var e apiErr
			json.Unmarshal(rec.Body.Bytes(), &e)
			if rec.Code != statusOfCode[want.code] || e.Error.Code != want.code {
				t.Fatalf("send %q: %d %s, want %s (%s)", body, rec.Code, rec.Body, want.code, want.why)
			}
			return
		}
		switch {
		case want.ephemeral && rec.Code == 202:
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || !reflect.DeepEqual(m, map[string]any{"ephemeral": true}) {
				t.Fatalf("ephemeral send %q: reply %s, want {\"ephemeral\":true}", body, rec.Body)
			}
		case !want.ephemeral && (rec.Code == 201 || rec.Code == 200):
			var m struct {
				Seq  int64
				From string
				CID  string
				Type string
				Body json.RawMessage
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if m.Seq < 1 || m.From != "alice" || m.CID != want.cid {
				t.Fatalf("send %q: stored %s, want from alice with cid %q", body, rec.Body, want.cid)
			}
			if rec.Code == 201 && (m.Type != want.typ || !sameJSON(m.Body, want.body)) {
				t.Fatalf("send %q: stored as type %q body %s, want type %q body %s", body, m.Type, m.Body, want.typ, want.body)
			}
			if rec.Code == 200 && want.cid == "" {
				t.Fatalf("send %q without a cid answered 200 (a retry): %s", body, rec.Body)
			}
		default:
			t.Fatalf("send %q (valid, ephemeral %v): %d %s", body, want.ephemeral, rec.Code, rec.Body)
		}
	})
}

// sendVerdict is what the documents say of a send body: refused with code
// (and why), or accepted as cid, typ, body and ephemeral.
type sendVerdict struct {
	code, why string
	cid, typ  string
	body      json.RawMessage
	ephemeral bool
	// other is set for a body that replies, mentions or changes a message:
	// whether it succeeds depends on the messages and members, which the
	// end-to-end tests (TestMessagesLive) judge.
	other bool
}

// sendOracle judges a send body by the rules of docs/protocol.md ("Sending a
// message") and docs/api.md, independently of hooks.ParseSendPayload: at
// most max bytes (too_large); UTF-8; one JSON object (RFC 8259 whitespace
// only around it); the fields named exactly cid, type, body and ephemeral,
// others ignored; cid a string of at most 64 characters, type a string of at
// most 32 characters (default "text"), neither holding U+0000, type not
// starting with group., member., message., reaction. or system.; body
// present and not null;
// ephemeral a boolean. A JSON null for an optional field counts as absent.
func sendOracle(b []byte, max int) sendVerdict {
	bad := func(why string) sendVerdict { return sendVerdict{code: "invalid_payload", why: why} }
	if len(b) > max {
		return sendVerdict{code: "too_large", why: "over PARLEY_MAX_PAYLOAD"}
	}
	if !utf8.Valid(b) {
		return bad("not UTF-8")
	}
	if t := strings.TrimLeft(string(b), " \t\r\n"); t == "" || t[0] != '{' {
		return bad("not a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return bad("not a JSON object: " + err.Error())
	}
	isNull := func(r json.RawMessage) bool { return string(r) == "null" }
	text := func(name string, maxLen int) (string, string) {
		r, ok := fields[name]
		if !ok || isNull(r) {
			return "", ""
		}
		var v string
		if err := json.Unmarshal(r, &v); err != nil {
			return "", name + " is not a string"
		}
		if utf8.RuneCountInString(v) > maxLen {
			return "", fmt.Sprintf("%s longer than %d characters", name, maxLen)
		}
		if strings.ContainsRune(v, 0) {
			return "", name + " holds U+0000"
		}
		return v, ""
	}
	v := sendVerdict{typ: "text"}
	var why string
	if v.cid, why = text("cid", 64); why != "" {
		return bad(why)
	}
	typ, why := text("type", 32)
	if why != "" {
		return bad(why)
	}
	if typ != "" {
		v.typ = typ
	}
	for _, f := range []string{"op", "reply_to", "mentions", "target", "emoji"} {
		if r, ok := fields[f]; ok && !isNull(r) && !(f == "op" && string(r) == `"send"`) {
			return sendVerdict{other: true}
		}
	}
	for _, r := range []string{"group.", "member.", "message.", "reaction.", "system."} {
		if strings.HasPrefix(v.typ, r) {
			return bad("reserved type")
		}
	}
	if r, ok := fields["ephemeral"]; ok && !isNull(r) {
		if err := json.Unmarshal(r, &v.ephemeral); err != nil {
			return bad("ephemeral is not a boolean")
		}
	}
	r, ok := fields["body"]
	if !ok || isNull(r) {
		return bad("no body")
	}
	v.body = r
	return v
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
