package parley

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeHistory serves GET /v1/conversations/{conv}/messages?after=N&limit=L
// from a list of messages, with at most pageMax per page, and fails the
// first failN requests with status failStatus.
type fakeHistory struct {
	mu         sync.Mutex
	msgs       map[string][]Message
	pageMax    int
	failN      int
	failStatus int
	requests   []string
}

func (f *fakeHistory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.URL.String())
	if f.failN > 0 {
		f.failN--
		w.WriteHeader(f.failStatus)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"failing on purpose"}}`, map[int]string{403: "forbidden", 503: "unavailable"}[f.failStatus])
		return
	}
	conv := r.PathValue("conv")
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	limit = min(limit, f.pageMax)
	var page []Message
	more := false
	for _, m := range f.msgs[conv] {
		if m.Seq <= after {
			continue
		}
		if len(page) == limit {
			more = true
			break
		}
		page = append(page, m)
	}
	out := map[string]any{"messages": page, "next": nil}
	if more {
		out["next"] = strconv.FormatInt(page[len(page)-1].Seq, 10)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func testToken(user string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"`+user+`","exp":9999999999}`)) + ".sig"
}

// setupDispatch returns a client without MQTT whose dispatcher runs, fed
// with inbox payloads by the test, and a REST history served by f.
func setupDispatch(t *testing.T, f *fakeHistory, mod ...func(*Options)) *Client {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /v1/conversations/{conv}/messages", f)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	opts := Options{HTTP: srv.URL, Token: testToken("alice"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mod {
		m(&opts)
	}
	opts = opts.withDefaults()
	api, err := NewAPI(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{API: api, opts: opts, log: opts.Logger, inbox: "im/inbox/alice", qwake: make(chan struct{}, 1),
		pending: map[string][]*sendWaiter{}, presence: map[string]bool{}, convs: map[string]*convState{},
		events: make(chan Event, 10000)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.dispatch()
	t.Cleanup(func() {
		c.cancel()
		c.wg.Wait()
		api.CloseIdleConnections()
	})
	return c
}

func msg(conv string, seq int64) Message {
	return Message{Conv: conv, Seq: seq, ID: fmt.Sprintf("id%d", seq), CID: fmt.Sprintf("c%d", seq), From: "bob",
		TS: time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC), Type: "text", Body: json.RawMessage(strconv.Quote(fmt.Sprint("m", seq)))}
}

func history(conv string, seqs ...int64) []Message {
	out := make([]Message, len(seqs))
	for i, s := range seqs {
		out[i] = msg(conv, s)
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// deliver feeds a message delivery as it arrives on the inbox.
func deliver(c *Client, m Message) {
	b, _ := json.Marshal(struct {
		Kind string `json:"kind"`
		Message
	}{"message", m})
	c.onInbox(b)
}

func deliverRaw(c *Client, s string) { c.onInbox([]byte(s)) }

// surfaced collects the seqs of the message events of conv until want
// messages arrived, failing after a timeout; other events are returned too.
func surfaced(t *testing.T, c *Client, conv string, want int) ([]int64, []Event) {
	t.Helper()
	var seqs []int64
	var others []Event
	deadline := time.After(5 * time.Second)
	for len(seqs) < want {
		select {
		case ev := <-c.events:
			if ev.Kind == EventMessage && ev.Message.Conv == conv {
				seqs = append(seqs, ev.Message.Seq)
			} else {
				others = append(others, ev)
			}
		case <-deadline:
			t.Fatalf("surfaced %v, want %d messages", seqs, want)
		}
	}
	return seqs, others
}

// quiet fails when a message event arrives within d.
func quiet(t *testing.T, c *Client, d time.Duration) {
	t.Helper()
	select {
	case ev := <-c.events:
		if ev.Kind == EventMessage {
			t.Fatalf("unexpected message seq %d", ev.Message.Seq)
		}
	case <-time.After(d):
	}
}

func TestDispatch(t *testing.T) {
	const conv = "dm:alice:bob"
	tests := []struct {
		name    string
		history []int64 // seqs the REST history holds
		in      []int64 // seqs delivered over MQTT, in order; 0 stands for the gap event
		gap     Gap
		want    []int64
	}{
		{name: "InOrder", in: []int64{1, 2, 3}, want: []int64{1, 2, 3}},
		{name: "Duplicates", in: []int64{1, 2, 2, 1, 3, 3}, want: []int64{1, 2, 3}},
		{name: "StartsAnywhere", in: []int64{7, 8, 7}, want: []int64{7, 8}},
		{name: "SeqJump", history: span(1, 9), in: []int64{1, 5, 6}, want: span(1, 6)},
		{name: "SeqJumpPaged", history: span(1, 30), in: []int64{2, 30}, want: span(2, 30)},
		{name: "GapEvent", history: span(1, 40), in: []int64{0, 38, 39, 40}, gap: Gap{Conv: conv, After: 3, Before: 38}, want: span(4, 40)},
		{name: "GapEventAlone", history: span(1, 12), in: []int64{0}, gap: Gap{Conv: conv, After: 0, Before: 13}, want: span(1, 12)},
		{name: "InvisibleSeqsSkipped", history: []int64{1, 2, 6, 7}, in: []int64{1, 7}, want: []int64{1, 2, 6, 7}},
		{name: "LiveDuringFill", history: span(1, 10), in: []int64{1, 4, 5, 3, 6}, want: span(1, 6)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeHistory{msgs: map[string][]Message{conv: history(conv, tc.history...)}, pageMax: 7}
			c := setupDispatch(t, f)
			for _, s := range tc.in {
				if s == 0 {
					b, _ := json.Marshal(map[string]any{"kind": "gap", "conv": tc.gap.Conv, "after": tc.gap.After, "before": tc.gap.Before})
					deliverRaw(c, string(b))
					continue
				}
				deliver(c, msg(conv, s))
			}
			got, _ := surfaced(t, c, conv, len(tc.want))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("surfaced %v, want %v", got, tc.want)
			}
			quiet(t, c, 100*time.Millisecond)
		})
	}
}

// TestDispatchFillRetries: a history that fails with 503 is asked again
// until it answers; later messages wait.
func TestDispatchFillRetries(t *testing.T) {
	const conv = "g:team"
	f := &fakeHistory{msgs: map[string][]Message{conv: history(conv, span(1, 5)...)}, pageMax: 200, failN: 2, failStatus: 503}
	c := setupDispatch(t, f)
	deliver(c, msg(conv, 1))
	deliver(c, msg(conv, 5))
	deliver(c, msg(conv, 6))
	got, _ := surfaced(t, c, conv, 6)
	if !slices.Equal(got, span(1, 6)) {
		t.Fatalf("surfaced %v", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 3 {
		t.Fatalf("requests %v, want 2 failures and 1 success", f.requests)
	}
}

// TestDispatchFillFails: a history that refuses (403) ends the fill with an
// error event; the conversation goes on after the gap.
func TestDispatchFillFails(t *testing.T) {
	const conv = "g:team"
	f := &fakeHistory{pageMax: 200, failN: 1, failStatus: 403}
	c := setupDispatch(t, f, func(o *Options) { o.ReportGaps = true })
	deliver(c, msg(conv, 1))
	deliver(c, msg(conv, 4))
	got, others := surfaced(t, c, conv, 2)
	if !slices.Equal(got, []int64{1, 4}) {
		t.Fatalf("surfaced %v", got)
	}
	var ge *GapError
	if len(others) != 1 || others[0].Kind != EventError || !errors.As(others[0].Err, &ge) {
		t.Fatalf("events besides messages: %+v, want one gap error", others)
	}
	if ge.Conv != conv || ge.After != 1 || ge.Before != 4 || !errors.Is(ge, ErrForbidden) {
		t.Fatalf("gap error %+v", ge)
	}
	if others[0].Conv() != conv {
		t.Fatalf("Conv() = %q", others[0].Conv())
	}
}

// TestDispatchEvents: receipts, ephemeral messages and unmatched errors are
// surfaced as they come; unknown kinds are ignored; gaps only when asked.
func TestDispatchEvents(t *testing.T) {
	c := setupDispatch(t, &fakeHistory{pageMax: 200}, func(o *Options) { o.ReportGaps = true })
	deliverRaw(c, `{"kind":"future","conv":"x"}`)
	deliverRaw(c, `not json`)
	deliverRaw(c, `{"kind":"read","conv":"dm:alice:bob","user":"bob","seq":4}`)
	deliverRaw(c, `{"kind":"delivered","conv":"dm:alice:bob","user":"bob","seq":5}`)
	deliverRaw(c, `{"kind":"ephemeral","conv":"dm:alice:bob","cid":"e","from":"bob","ts":"2026-11-27T06:00:01.456Z","type":"typing","body":true}`)
	deliverRaw(c, `{"kind":"error","cid":"zz","code":"not_member","message":"no","topic":"im/send/g/team"}`)
	deliverRaw(c, `{"kind":"gap","conv":"g:x","after":0,"before":1}`)
	var got []Event
	for len(got) < 5 {
		select {
		case ev := <-c.events:
			got = append(got, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %+v", got)
		}
	}
	if got[0].Kind != EventRead || got[0].Receipt != (Receipt{Conv: "dm:alice:bob", User: "bob", Seq: 4}) {
		t.Errorf("read: %+v", got[0])
	}
	if got[1].Kind != EventDelivered || got[1].Receipt.Seq != 5 {
		t.Errorf("delivered: %+v", got[1])
	}
	if got[2].Kind != EventEphemeral || got[2].Message.Type != "typing" || got[2].Message.From != "bob" || got[2].Message.TS.IsZero() {
		t.Errorf("ephemeral: %+v", got[2])
	}
	if got[3].Kind != EventError || !errors.Is(got[3].Err, ErrNotMember) {
		t.Errorf("error: %+v", got[3])
	}
	if got[4].Kind != EventGap || got[4].Gap != (Gap{Conv: "g:x", After: 0, Before: 1}) {
		t.Errorf("gap: %+v", got[4])
	}
}

// TestMatchSend: echoes and error events complete the send waiting for
// their conversation and cid, and only that one.
func TestMatchSend(t *testing.T) {
	c := setupDispatch(t, &fakeHistory{pageMax: 200})
	w := &sendWaiter{key: "dm:alice:bob\x00c1", result: make(chan sendResult, 4), resend: make(chan struct{}, 1)}
	g := &sendWaiter{key: "g:team\x00c1", result: make(chan sendResult, 4), resend: make(chan struct{}, 1)}
	c.register(w)
	c.register(g)
	echo := msg("dm:alice:bob", 3)
	echo.From, echo.CID = "alice", "c1"
	deliver(c, echo)
	select {
	case r := <-w.result:
		if r.err != nil || r.msg.Seq != 3 {
			t.Fatalf("result %+v", r)
		}
	default:
		t.Fatal("echo did not complete the send")
	}
	deliverRaw(c, `{"kind":"error","cid":"c1","code":"not_member","message":"no","topic":"im/send/g/team"}`)
	select {
	case r := <-g.result:
		if !errors.Is(r.err, ErrNotMember) {
			t.Fatalf("result %+v", r)
		}
	default:
		t.Fatal("error did not complete the send")
	}
	if len(w.result) != 0 {
		t.Fatal("the error went to the direct send too")
	}
	// Someone else's message with the same cid completes nothing.
	other := msg("dm:alice:bob", 4)
	other.CID = "c1"
	deliver(c, other)
	if len(w.result) != 0 {
		t.Fatal("bob's message completed alice's send")
	}
}
