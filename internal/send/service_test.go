package send_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/metrics"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/testkit"
	"github.com/parley-im/parley/internal/wire"
)

// faultStore wraps a real store. Before each call of a wrapped method it
// asks fault, when set, with the method's name and the 1-based number of
// that method's call: a non-nil error is returned instead of calling the
// store (a store that fails the N-th call). block, when set for a method,
// holds its calls until the channel is closed.
type faultStore struct {
	history.Store

	mu    sync.Mutex
	calls map[string]int
	fault func(method string, n int) error
	block map[string]chan struct{}
	// results, when set, rewrites the results of a successful AppendBatch.
	results func([]history.AppendResult)
}

func (f *faultStore) enter(method string) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	n := f.calls[method]
	fault, block := f.fault, f.block[method]
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if fault != nil {
		return fault(method, n)
	}
	return nil
}

// count reports how many times method was called.
func (f *faultStore) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// failNext makes the next call of method fail with errOutage; the returned
// function ends that.
func (f *faultStore) failNext(method string) (restore func()) {
	f.fault = failOn(method, f.count(method)+1, errOutage)
	return func() { f.fault = nil }
}

// wantCalls fails t unless method was called n times.
func (f *faultStore) wantCalls(t testing.TB, method string, n int) {
	t.Helper()
	if got := f.count(method); got != n {
		t.Fatalf("%d %s calls, want %d", got, method, n)
	}
}

func (f *faultStore) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	if err := f.enter("AppendBatch"); err != nil {
		return nil, err
	}
	rs, err := f.Store.AppendBatch(ctx, ms)
	if err == nil && f.results != nil {
		f.results(rs)
	}
	return rs, err
}

func (f *faultStore) Group(ctx context.Context, id string) (history.Group, []history.Member, error) {
	if err := f.enter("Group"); err != nil {
		return history.Group{}, nil, err
	}
	return f.Store.Group(ctx, id)
}

func (f *faultStore) CreateGroup(ctx context.Context, g history.Group, ms []history.Member, m history.NewMessage) (history.Message, error) {
	if err := f.enter("CreateGroup"); err != nil {
		return history.Message{}, err
	}
	return f.Store.CreateGroup(ctx, g, ms, m)
}

func (f *faultStore) ChangeMember(ctx context.Context, c history.MemberChange) (history.Message, []history.Member, error) {
	if err := f.enter("ChangeMember"); err != nil {
		return history.Message{}, nil, err
	}
	return f.Store.ChangeMember(ctx, c)
}

func (f *faultStore) MarkRead(ctx context.Context, user, conv string, seq int64) (int64, bool, error) {
	if err := f.enter("MarkRead"); err != nil {
		return 0, false, err
	}
	return f.Store.MarkRead(ctx, user, conv, seq)
}

// failOn returns a fault that fails the n-th call of method with err.
func failOn(method string, n int, err error) func(string, int) error {
	return func(m string, k int) error {
		if m == method && k == n {
			return err
		}
		return nil
	}
}

var errOutage = errors.New("connection refused")

// delivery is one call of a Deliverer.
type delivery struct {
	users   []string
	msg     history.Message // a message (event false)
	event   bool
	payload []byte
	qos     byte
}

// recorder is a Deliverer that records every call.
type recorder struct{ testkit.Log[delivery] }

func (r *recorder) DeliverMessage(users []string, m history.Message) {
	r.Add(delivery{users: slices.Sorted(slices.Values(users)), msg: m})
}

func (r *recorder) DeliverEvent(users []string, payload []byte, qos byte) {
	r.Add(delivery{users: slices.Sorted(slices.Values(users)), event: true, payload: payload, qos: qos})
}

// one returns the only delivery recorded since the last Take.
func (r *recorder) one(t testing.TB) delivery {
	t.Helper()
	all := r.Take()
	if len(all) != 1 {
		t.Fatalf("%d deliveries, want 1: %+v", len(all), all)
	}
	return all[0]
}

// none fails t if anything was delivered since the last Take.
func (r *recorder) none(t testing.TB) {
	t.Helper()
	if d := r.Take(); len(d) != 0 {
		t.Fatalf("delivered %+v", d)
	}
}

// fixture is a Service over a real SQLite store behind a faultStore.
type fixture struct {
	svc         *send.Service
	store       *faultStore
	rec         *recorder
	invalidated chan string
	registry    *prometheus.Registry
}

// setup returns a Service over a fresh SQLite store; mod, when set, changes
// the Service before Init.
func setup(t testing.TB, mod func(*send.Service)) *fixture {
	t.Helper()
	s := testkit.OpenSQLite(t)
	fs := &faultStore{Store: s}
	f := &fixture{store: fs, rec: &recorder{}, invalidated: make(chan string, 100), registry: prometheus.NewRegistry()}
	f.svc = &send.Service{
		Store:      fs,
		Groups:     send.NewGroups(fs),
		Deliver:    f.rec,
		Invalidate: func(g string) { f.invalidated <- g },
		Metrics:    metrics.NewMetrics(f.registry),
		Log:        testkit.Logger(),
	}
	if mod != nil {
		mod(f.svc)
	}
	if err := f.svc.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.svc.Committer.Close)
	return f
}

// group creates group id owned by owner with members, and forgets the
// deliveries and invalidations of the creation.
func (f *fixture) group(t testing.TB, id, owner string, members ...string) {
	t.Helper()
	if _, _, err := f.svc.CreateGroup(context.Background(), owner, send.CreateGroupRequest{ID: id, Name: id, Members: members}); err != nil {
		t.Fatal(err)
	}
	f.rec.Take()
	<-f.invalidated
}

// noInvalidation fails t if a group was invalidated since the last read of
// f.invalidated, naming what should not have invalidated it.
func (f *fixture) noInvalidation(t testing.TB, what string) {
	t.Helper()
	select {
	case g := <-f.invalidated:
		t.Fatalf("%s invalidated %q", what, g)
	default:
	}
}

// received reads parley_messages_received_total{result} from the registry.
func (f *fixture) received(t testing.TB, result string) float64 {
	t.Helper()
	mfs, err := f.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "parley_messages_received_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// body decodes a delivery payload.
func body(t testing.TB, payload []byte) wire.Delivery {
	t.Helper()
	var d wire.Delivery
	if err := json.Unmarshal(payload, &d); err != nil {
		t.Fatalf("payload %s: %v", payload, err)
	}
	return d
}

func TestServiceInit(t *testing.T) {
	t.Run("ErrMissing", func(t *testing.T) {
		if err := (&send.Service{}).Init(); err == nil || !strings.HasPrefix(err.Error(), "send:") {
			t.Fatalf("Init of a zero Service: %v", err)
		}
	})
	t.Run("Defaults", func(t *testing.T) {
		s := &send.Service{Store: &faultStore{}, Groups: send.NewGroups(nil), Deliver: &recorder{}}
		if err := s.Init(); err != nil {
			t.Fatal(err)
		}
		if s.ReceiptGroupMax != send.DefaultReceiptGroupMax || s.MaxPayload != send.DefaultMaxPayload ||
			s.StoreTimeout != 10*time.Second || s.Log == nil || s.Committer == nil || s.Committer.Store != s.Store {
			t.Fatalf("defaults not applied: %+v", s)
		}
	})
}

// TestSendDirect: a direct message is stored and delivered to both users
// with its body; a retry is not stored again and echoes the original to the
// sender only.
func TestSendDirect(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		msg, created, serr := f.svc.Send(ctx, "alice", wire.TargetUser, "bob", fmt.Appendf(nil, `{"cid":"c%d","body":{"n":%d}}`, i, i))
		if serr != nil || !created {
			t.Fatalf("send %d: created %v, %v", i, created, serr)
		}
		if msg.Seq != int64(i) || msg.Conv != "dm:alice:bob" || msg.CID != fmt.Sprintf("c%d", i) || msg.From != "alice" || msg.Type != history.TypeText {
			t.Fatalf("send %d stored %+v", i, msg)
		}
		d := f.rec.one(t)
		if d.event || !slices.Equal(d.users, []string{"alice", "bob"}) || d.msg.ID != msg.ID || string(d.msg.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("send %d delivered %+v", i, d)
		}
	}
	stored, err := f.store.Messages(ctx, "dm:alice:bob", 0, 10)
	if err != nil || len(stored) != 3 || string(stored[2].Body) != `{"n":3}` {
		t.Fatalf("store holds %+v, %v", stored, err)
	}

	msg, created, serr := f.svc.Send(ctx, "alice", wire.TargetUser, "bob", []byte(`{"cid":"c2","body":"other"}`))
	if serr != nil || created || msg.Seq != 2 || string(msg.Body) != `{"n":2}` {
		t.Fatalf("retry: %+v created %v, %v", msg, created, serr)
	}
	d := f.rec.one(t)
	if !d.event || d.qos != 1 || !slices.Equal(d.users, []string{"alice"}) {
		t.Fatalf("retry delivered %+v", d)
	}
	if echo := body(t, d.payload); echo.Kind != "message" || echo.Seq != 2 || echo.CID != "c2" || string(echo.Body) != `{"n":2}` {
		t.Fatalf("echo %+v", echo)
	}
	if got := f.received(t, "stored"); got != 3 {
		t.Fatalf("stored counter %v, want 3", got)
	}
	if got := f.received(t, "duplicate"); got != 1 {
		t.Fatalf("duplicate counter %v, want 1", got)
	}
}

// TestSendRefused: sends that fail validation get their wire code and the cid
// they named, and nothing is stored or delivered.
func TestSendRefused(t *testing.T) {
	f := setup(t, func(s *send.Service) {
		s.MaxPayload = 64
		s.Limiter = send.NewRateLimiter(0.0001, 1)
	})
	ctx := context.Background()
	f.group(t, "team", "carol", "dave")
	// The group creation spent carol's only token.
	for _, tc := range []struct {
		name, from, kind, target, payload, code, cid string
	}{
		{"ErrTooLarge", "alice", wire.TargetUser, "bob", `{"body":"` + strings.Repeat("x", 64) + `"}`, wire.CodeTooLarge, ""},
		{"ErrInvalidPayload", "alice", wire.TargetUser, "bob", `{"cid":"k","body":null}`, wire.CodeInvalidPayload, "k"},
		{"ErrSelf", "alice", wire.TargetUser, "alice", `{"cid":"k","body":1}`, wire.CodeInvalidPeer, "k"},
		{"ErrInvalidPeer", "alice", wire.TargetUser, "b b", `{"body":1}`, wire.CodeInvalidPeer, ""},
		{"ErrUnknownKind", "alice", "x", "bob", `{"body":1}`, wire.CodeInvalidPeer, ""},
		{"ErrInvalidGroup", "alice", wire.TargetGroup, "a/b", `{"cid":"g","body":1}`, wire.CodeNoSuchGroup, "g"},
		{"ErrNoSuchGroup", "erin", wire.TargetGroup, "nope", `{"body":1}`, wire.CodeNoSuchGroup, ""},
		{"ErrNotMember", "frank", wire.TargetGroup, "team", `{"body":1}`, wire.CodeNotMember, ""},
		{"ErrRateLimited", "carol", wire.TargetGroup, "team", `{"cid":"r","body":1}`, wire.CodeRateLimited, "r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, created, serr := f.svc.Send(ctx, tc.from, tc.kind, tc.target, []byte(tc.payload))
			if serr == nil || serr.Code != tc.code || serr.CID != tc.cid || created || msg.Seq != 0 {
				t.Fatalf("Send = %+v, %v, %+v; want code %s cid %q", msg, created, serr, tc.code, tc.cid)
			}
			f.rec.none(t)
		})
	}
	f.store.wantCalls(t, "AppendBatch", 0)
}

// TestSendGroup: a group message reaches every member; a member removed
// behind the cache's back is refused by the store and the cache forgets the
// group; a member added behind its back gets the message (delivered to the
// members as of the commit).
func TestSendGroup(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	f.group(t, "team", "alice", "bob", "carol")
	msg, created, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"cid":"1","body":"hi"}`))
	if serr != nil || !created || msg.Seq != 2 || msg.Conv != "g:team" {
		t.Fatalf("Send = %+v, %v, %v", msg, created, serr)
	}
	if d := f.rec.one(t); !slices.Equal(d.users, []string{"alice", "bob", "carol"}) || d.msg.ID != msg.ID || string(d.msg.Body) != `"hi"` {
		t.Fatalf("delivered %+v", d)
	}

	t.Run("AddedElsewhere", func(t *testing.T) {
		// Another node adds dave: this node's cache still has the old list.
		if _, _, err := f.store.Store.ChangeMember(ctx, history.MemberChange{Group: "team", Actor: "alice", User: "dave", Role: history.RoleMember,
			MessageID: history.NewID(time.Now()), TS: time.Now()}); err != nil {
			t.Fatal(err)
		}
		msg, _, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"body":"to four"}`))
		if serr != nil {
			t.Fatal(serr)
		}
		if d := f.rec.one(t); !slices.Equal(d.users, []string{"alice", "bob", "carol", "dave"}) || d.msg.Seq != msg.Seq {
			t.Fatalf("delivered %+v, want the members as of the commit", d)
		}
	})
	t.Run("ReloadFails", func(t *testing.T) {
		if _, _, err := f.store.Store.ChangeMember(ctx, history.MemberChange{Group: "team", Actor: "alice", User: "erin", Role: history.RoleMember,
			MessageID: history.NewID(time.Now()), TS: time.Now()}); err != nil {
			t.Fatal(err)
		}
		// The reload after the commit fails: the cached members get it.
		defer f.store.failNext("Group")()
		if _, _, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"body":"cached"}`)); serr != nil {
			t.Fatal(serr)
		}
		if d := f.rec.one(t); !slices.Equal(d.users, []string{"alice", "bob", "carol", "dave"}) {
			t.Fatalf("delivered %+v, want the cached members", d)
		}
	})
	t.Run("ErrRemovedElsewhere", func(t *testing.T) {
		if _, _, err := f.store.Store.ChangeMember(ctx, history.MemberChange{Group: "team", Actor: "alice", User: "carol", Remove: true,
			MessageID: history.NewID(time.Now()), TS: time.Now()}); err != nil {
			t.Fatal(err)
		}
		before := f.store.count("Group")
		_, _, serr := f.svc.Send(ctx, "carol", wire.TargetGroup, "team", []byte(`{"body":"still here?"}`))
		if serr == nil || serr.Code != wire.CodeNotMember {
			t.Fatalf("Send by a removed member: %v", serr)
		}
		f.rec.none(t)
		// The cache forgot the group: the next send reads the store.
		if _, _, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"body":"x"}`)); serr != nil {
			t.Fatal(serr)
		}
		if got := f.store.count("Group") - before; got != 1 {
			t.Fatalf("%d Group reads after the refusal, want 1", got)
		}
		f.rec.Take()
	})
	t.Run("ErrGroupLoad", func(t *testing.T) {
		f.svc.Groups.Forget("team")
		defer f.store.failNext("Group")()
		_, _, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"body":"x"}`))
		if serr == nil || serr.Code != wire.CodeUnavailable {
			t.Fatalf("Send with the store down: %v", serr)
		}
	})
}

// TestSendStoreErrors: the committer's errors map to wire codes, and the
// group cache forgets a group the store no longer knows.
func TestSendStoreErrors(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	f.group(t, "team", "alice", "bob")
	for _, tc := range []struct {
		name string
		err  error // of the one message
		code string
	}{
		{"ErrNotFound", history.Errorf(history.ENOTFOUND, "gone"), wire.CodeNoSuchGroup},
		{"ErrNotMember", history.Errorf(history.ENOTMEMBER, "left"), wire.CodeNotMember},
		{"ErrInvalid", history.Errorf(history.EINVALID, "bad text"), wire.CodeInvalidPayload},
		{"ErrUnavailable", errOutage, wire.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.store.results = func(rs []history.AppendResult) {
				for i := range rs {
					rs[i] = history.AppendResult{Err: tc.err}
				}
			}
			defer func() { f.store.results = nil }()
			before := f.store.count("Group")
			_, created, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"cid":"e","body":1}`))
			if serr == nil || serr.Code != tc.code || serr.CID != "e" || created {
				t.Fatalf("Send = %v, created %v; want %s", serr, created, tc.code)
			}
			f.rec.none(t)
			f.store.results = nil
			if _, _, serr := f.svc.Send(ctx, "bob", wire.TargetGroup, "team", []byte(`{"body":1}`)); serr != nil {
				t.Fatal(serr)
			}
			f.rec.Take()
			forgot := tc.code == wire.CodeNoSuchGroup || tc.code == wire.CodeNotMember
			if reread := f.store.count("Group") > before; reread != forgot {
				t.Fatalf("group re-read %v, want %v", reread, forgot)
			}
		})
	}
	t.Run("ErrBatchOutage", func(t *testing.T) {
		defer f.store.failNext("AppendBatch")()
		_, _, serr := f.svc.Send(ctx, "alice", wire.TargetUser, "bob", []byte(`{"body":1}`))
		if serr == nil || serr.Code != wire.CodeUnavailable {
			t.Fatalf("Send in an outage: %v", serr)
		}
	})
	if got := f.received(t, "stored"); got != 4 {
		t.Fatalf("stored counter %v, want 4", got)
	}
}

// TestSendEphemeral: an ephemeral send is delivered at QoS 0 to the other
// members only, with its body, and is not stored.
func TestSendEphemeral(t *testing.T) {
	f := setup(t, nil)
	ctx := context.Background()
	f.group(t, "team", "alice", "bob", "carol")
	for _, tc := range []struct {
		name, kind, target, conv string
		others                   []string
	}{
		{"Direct", wire.TargetUser, "bob", "dm:alice:bob", []string{"bob"}},
		{"Group", wire.TargetGroup, "team", "g:team", []string{"bob", "carol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, created, serr := f.svc.Send(ctx, "alice", tc.kind, tc.target, []byte(`{"cid":"t","type":"typing","ephemeral":true,"body":{"on":true}}`))
			if serr != nil || created || msg.Seq != 0 {
				t.Fatalf("Send = %+v, %v, %v", msg, created, serr)
			}
			d := f.rec.one(t)
			if !d.event || d.qos != 0 || !slices.Equal(d.users, tc.others) {
				t.Fatalf("delivered %+v", d)
			}
			if e := body(t, d.payload); e.Kind != "ephemeral" || e.Conv != tc.conv || e.From != "alice" || e.Type != "typing" || e.CID != "t" || string(e.Body) != `{"on":true}` {
				t.Fatalf("event %+v", e)
			}
		})
	}
	if ms, err := f.store.Messages(ctx, "dm:alice:bob", 0, 10); err != nil || len(ms) != 0 {
		t.Fatalf("stored %+v, %v", ms, err)
	}
	if got := f.received(t, "ephemeral"); got != 2 {
		t.Fatalf("ephemeral counter %v, want 2", got)
	}
}

// TestServiceWait: Wait returns only once the sends in progress finished.
func TestServiceWait(t *testing.T) {
	f := setup(t, nil)
	release := make(chan struct{})
	f.store.block = map[string]chan struct{}{"AppendBatch": release}
	done := make(chan *wire.Error, 1)
	go func() {
		_, _, serr := f.svc.Send(context.Background(), "alice", wire.TargetUser, "bob", []byte(`{"body":1}`))
		done <- serr
	}()
	testkit.Eventually(t, 10*time.Second, func() bool { return f.store.count("AppendBatch") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.svc.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a send held: %v", err)
	}
	close(release)
	if err := f.svc.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Wait returned, so Send has finished: its result is on its way (the
	// goroutine sends it after Send returns).
	select {
	case serr := <-done:
		if serr != nil {
			t.Fatal(serr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the send did not finish after Wait returned")
	}
}
