package parley

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestTokenSubject(t *testing.T) {
	tests := []struct {
		name  string
		token string
		want  string
		ok    bool
	}{
		{"OK", testToken("alice"), "alice", true},
		{"Padded", testToken("bob") + "\n", "bob", true},
		{"NotAJWT", "abc", "", false},
		{"BadBase64", "a.!!!.c", "", false},
		{"NotJSON", "a.bm90IGpzb24.c", "", false},
		{"NoSub", "a.e30.c", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TokenSubject(tc.token)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("TokenSubject = %q, %v", got, err)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, me   string
		want     Target
		wantConv string
		ok       bool
	}{
		{"bob", "alice", User("bob"), "dm:alice:bob", true},
		{"aaron", "alice", User("aaron"), "dm:aaron:alice", true},
		{"g:team", "alice", Group("team"), "g:team", true},
		{"dm:alice:bob", "alice", User("bob"), "dm:alice:bob", true},
		{"dm:alice:bob", "bob", User("alice"), "dm:alice:bob", true},
		{"dm:alice:bob", "carol", Target{}, "", false},
		{"dm:alice", "alice", Target{}, "", false},
		{"g:", "alice", Target{}, "", false},
		{"", "alice", Target{}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in, tc.me)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseTarget(%q, %q) = %v, %v", tc.in, tc.me, got, err)
			}
			if tc.ok && got.Conv(tc.me) != tc.wantConv {
				t.Fatalf("Conv = %q, want %q", got.Conv(tc.me), tc.wantConv)
			}
		})
	}
}

func TestMessageText(t *testing.T) {
	tests := []struct{ body, want string }{
		{`"hi"`, "hi"},
		{`"a \"quote\""`, `a "quote"`},
		{`{"x":1}`, `{"x":1}`},
		{`true`, `true`},
	}
	for _, tc := range tests {
		if got := (Message{Body: json.RawMessage(tc.body)}).Text(); got != tc.want {
			t.Errorf("Text(%s) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestAPIError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		code   string
		is     error
	}{
		{"Wire", 403, `{"error":{"code":"not_member","message":"no"}}`, "not_member", ErrNotMember},
		{"Forbidden", 403, `{"error":{"code":"forbidden","message":"no"}}`, "forbidden", ErrForbidden},
		{"RateLimited", 429, `{"error":{"code":"rate_limited","message":"slow"}}`, "rate_limited", ErrRateLimited},
		{"QuotaExceeded", 413, `{"error":{"code":"quota_exceeded","message":"full"}}`, "quota_exceeded", ErrQuotaExceeded},
		{"PlainNotFound", 404, `404 page not found`, "not_found", ErrNotFound},
		{"PlainBadGateway", 502, `<html>`, "unavailable", ErrUnavailable},
		{"PlainTeapot", 418, ``, "http_418", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := apiError(tc.status, []byte(tc.body))
			if err.Code != tc.code || err.Status != tc.status || err.Message == "" {
				t.Fatalf("apiError = %+v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("%v is not %v", err, tc.is)
			}
			if errors.Is(err, ErrConflict) {
				t.Fatalf("%v matches ErrConflict", err)
			}
		})
	}
	if !transient(apiError(http.StatusServiceUnavailable, nil)) || transient(apiError(http.StatusForbidden, nil)) || !transient(errors.New("dial tcp: refused")) {
		t.Fatal("transient misclassifies")
	}
}

func TestCursor(t *testing.T) {
	tests := []struct{ in, want string }{{`null`, ""}, {`"42"`, "42"}, {`42`, "42"}, {`"abc=="`, "abc=="}}
	for _, tc := range tests {
		var c cursor
		if err := json.Unmarshal([]byte(tc.in), &c); err != nil || string(c) != tc.want {
			t.Errorf("cursor(%s) = %q, %v", tc.in, c, err)
		}
	}
}

// FuzzInbox feeds arbitrary inbox payloads to a client's dispatcher:
// nothing panics.
func FuzzInbox(f *testing.F) {
	f.Add([]byte(`{"kind":"message","conv":"dm:alice:bob","seq":2,"id":"x","from":"bob","ts":"2026-11-27T06:00:00.123Z","type":"text","body":"hi"}`))
	f.Add([]byte(`{"kind":"gap","conv":"g:t","after":1,"before":3}`))
	f.Add([]byte(`{"kind":"error","cid":"c","code":"not_member","message":"m","topic":"im/send/g/t"}`))
	f.Add([]byte(`{"kind":"read","conv":"dm:a:b","user":"a","seq":-1}`))
	f.Add([]byte(`{"kind":"message","conv":"","seq":-5}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var got []Event
		opts := Options{Handler: func(ev Event) { got = append(got, ev) }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.withDefaults()
		c := &Client{API: &API{base: "http://127.0.0.1:1", hc: http.DefaultClient, tokens: &tokens{fixed: testToken("alice")}, user: "alice"},
			opts: opts, log: opts.Logger, pending: map[string][]*sendWaiter{}, convs: map[string]*convState{}, qwake: make(chan struct{}, 1)}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		c.onInbox(payload)
		for _, it := range c.queue {
			c.handle(it)
		}
		c.cancel()
		c.wg.Wait()
		// Whatever surfaces as a message says what the payload says, read
		// here independently: the same conversation, seq, id and body.
		var fields map[string]json.RawMessage
		if json.Unmarshal(payload, &fields) != nil {
			for _, ev := range got {
				if ev.Kind == EventMessage || ev.Kind == EventEphemeral {
					t.Fatalf("payload %q is not a JSON object, yet surfaced %+v", payload, ev)
				}
			}
			return
		}
		for k := range fields {
			if l := strings.ToLower(k); l != k && (l == "kind" || l == "conv" || l == "seq" || l == "id" || l == "body") {
				return // Go's decoder folds the case of field names; the server never sends such keys
			}
		}
		str := func(key string) string {
			var v string
			_ = json.Unmarshal(fields[key], &v)
			return v
		}
		for _, ev := range got {
			if ev.Kind != EventMessage {
				continue
			}
			var seq int64
			_ = json.Unmarshal(fields["seq"], &seq)
			m := ev.Message
			if str("kind") != "message" || m.Conv != str("conv") || m.Seq != seq || m.ID != str("id") ||
				!bytes.Equal(bytes.TrimSpace(m.Body), bytes.TrimSpace(fields["body"])) {
				t.Fatalf("payload %q surfaced as %+v", payload, m)
			}
		}
	})
}
