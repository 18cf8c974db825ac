package broker_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/wire"
)

// statusOfCode is the one table of docs/api.md: the HTTP status of every
// error code the REST API answers with.
var statusOfCode = map[string]int{
	"invalid": 400, "invalid_payload": 400, "invalid_peer": 400,
	"unauthorized": 401, "not_member": 403, "forbidden": 403,
	"not_found": 404, "no_such_group": 404, "conflict": 409,
	"too_large": 413, "rate_limited": 429, "unavailable": 503,
}

// FuzzREST sends arbitrary path parameters, query strings and bodies to every
// REST route as an authenticated user, on a healthy store. The API never
// fails internally (no 5xx), always answers JSON, answers errors with the
// documented {"error":{...}} object and status, and treats a send body
// exactly as the MQTT send pipeline's parser does: accepted and stored
// unchanged when ParseSendPayload accepts it, refused with its code when not.
func FuzzREST(f *testing.F) {
	const maxPayload = 4096
	e := setup(f, openSQLite(f), func(o *broker.Options) { o.MaxPayload = maxPayload })
	if code := e.do("POST", "/v1/groups", "alice", `{"id":"g1","name":"G","members":["bob"]}`, nil); code != 201 {
		f.Fatalf("create group: %d", code)
	}
	if code := e.do("POST", "/v1/users/bob/messages", "alice", `{"body":"first"}`, nil); code != 201 {
		f.Fatalf("send: %d", code)
	}
	routes := broker.Routes()
	h := e.b.Handler()
	tok := token(f, "alice")
	defaults := strings.NewReplacer("{conv}", "g:g1", "{peer}", "bob", "{id}", "g1", "{user}", "bob")

	for i := range routes {
		f.Add(uint8(i), "", "", []byte(nil))
	}
	f.Add(uint8(0), "", "limit=0&cursor=%ff", []byte(nil))
	f.Add(uint8(1), "dm:alice:bob", "after=1&before=2", []byte(nil))
	f.Add(uint8(1), "g:g1", "before=9223372036854775807&limit=200", []byte(nil))
	f.Add(uint8(2), "", "", []byte(`{"cid":"c1","type":"note","body":{"n":1},"ephemeral":false}`))
	f.Add(uint8(2), "dm:alice:bob", "", []byte(`{"cid":"c1","body":"\u003chi\u003e & bye"}`))
	f.Add(uint8(3), "", "", []byte(`{"body":1e400}`))
	f.Add(uint8(3), "", "", []byte(`{"cid":"a\u0000b","body":"x"}`))
	f.Add(uint8(3), "", "", []byte(`{"type":"x\u0000","body":{"t":"\u0000"}}`))
	f.Add(uint8(3), "alice", "", []byte(`{"body":true,"ephemeral":true}`))
	f.Add(uint8(4), "", "", []byte(`{"seq":-1}`))
	f.Add(uint8(4), "dm:alice:bob", "", []byte(`{"seq":1.5}`))
	f.Add(uint8(5), "", "since=AAAA", []byte(nil))
	f.Add(uint8(6), "", "", []byte(`{"id":"","name":"`+strings.Repeat("n", 201)+`","members":["bob","bob","alice"]}`))
	f.Add(uint8(6), "", "", []byte(`{"name":"x","members":[1]}`))
	f.Add(uint8(6), "", "", []byte(`{"name":"a\u0000","members":["bob"]}`))
	f.Add(uint8(6), "", "", []byte("{\"name\":\"\xff\"}"))
	f.Add(uint8(8), "", "", []byte(`{"role":"owner"}`))
	f.Add(uint8(8), "g1/members/x", "", []byte(``))
	f.Add(uint8(9), "../../v1/groups", "", []byte(nil))

	f.Fuzz(func(t *testing.T, route uint8, param, query string, body []byte) {
		method, pattern, _ := strings.Cut(routes[int(route)%len(routes)], " ")
		path := defaults.Replace(pattern)
		if param != "" {
			p := url.PathEscape(param)
			path = strings.NewReplacer("{conv}", p, "{peer}", p, "{id}", p, "{user}", "bob").Replace(pattern)
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
		// send parser accepts.
		isSend := method == "POST" && strings.HasSuffix(pattern, "/messages")
		if !isSend || param != "" {
			return
		}
		p, perr := wire.ParseSendPayload(body, maxPayload)
		if perr != nil {
			var e apiErr
			json.Unmarshal(rec.Body.Bytes(), &e)
			if rec.Code != statusOfCode[perr.Code] || e.Error.Code != perr.Code {
				t.Fatalf("send %q: %d %s, want %s", body, rec.Code, rec.Body, perr.Code)
			}
			return
		}
		switch {
		case p.Ephemeral && rec.Code == 202:
		case !p.Ephemeral && (rec.Code == 201 || rec.Code == 200):
			var m struct {
				Seq  int64
				From string
				Type string
				Body json.RawMessage
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if m.Seq < 1 || m.From != "alice" {
				t.Fatalf("send %q: stored %s", body, rec.Body)
			}
			if rec.Code == 201 && (m.Type != p.Type || !sameJSON(m.Body, p.Body)) {
				t.Fatalf("send %q: body stored as %s", body, m.Body)
			}
		default:
			t.Fatalf("send %q (valid, ephemeral %v): %d %s", body, p.Ephemeral, rec.Code, rec.Body)
		}
	})
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
