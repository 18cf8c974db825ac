// Package historytest is the conformance suite that every history.Store
// passes. A store's tests call Run with a function that returns a fresh,
// migrated, empty store for each subtest.
package historytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/migrations"
)

// Run runs the conformance suite against the stores that open returns.
func Run(t *testing.T, open func(t *testing.T) history.Store) {
	t.Run("Ping", func(t *testing.T) {
		s := open(t)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	runCases(t, open, baseCases)
	runCases(t, open, rulesCases)
	runCases(t, open, opsCases)
	runCases(t, open, outboxCases)
	runCases(t, open, privacyCases)
	runCases(t, open, uploadCases)
}

// storeCase is one subtest of the suite: run on a fresh store.
type storeCase struct {
	name string
	run  func(t *testing.T, s history.Store)
}

// runCases runs each of cases as a subtest on a store of its own.
func runCases(t *testing.T, open func(t *testing.T) history.Store, cases []storeCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

// baseCases are the cases of messages, groups, devices, cursors and reads.
var baseCases = []storeCase{
	{"AppendDirect", testAppendDirect},
	{"AppendIdempotent", testAppendIdempotent},
	{"AppendConcurrentSeq", testAppendConcurrent},
	{"AppendInvalid", testAppendInvalid},
	{"AppendBatch", testAppendBatch},
	{"Messages", testMessages},
	{"Groups", testGroups},
	{"GroupErrors", testGroupErrors},
	{"Device", testDevice},
	{"Cursors", testCursors},
	{"MarkRead", testMarkRead},
	{"Receipts", testReceipts},
	{"SharesConversation", testShares},
	{"History", testHistory},
	{"Conversations", testConversations},
	{"Changes", testChanges},
	{"ChangesPaging", testChangesPaging},
	{"ClaimFencesCursors", testClaim},
	{"BatchedClaimsAndDevices", testBatched},
	{"MemberVersion", testMemberVersion},
	{"PruneDevices", testPruneDevices},
}

// MigrateTwice checks a store's migration report: migrate, run on a new
// database, applies every migration in fsys (see migrations.Latest); run
// again, it applies none and reports the same version.
func MigrateTwice(t *testing.T, fsys fs.FS, migrate func() (migrations.Report, error)) {
	t.Helper()
	latest := migrations.Latest(fsys)
	// Count the files: numbers may have gaps while branches are merged.
	files, _ := fs.Glob(fsys, "*.sql")
	r, err := migrate()
	if err != nil || len(r.Applied) != len(files) || r.Applied[0] != 1 || r.Version != latest {
		t.Fatalf("first run: %+v, %v", r, err)
	}
	if r, err = migrate(); err != nil || len(r.Applied) != 0 || r.Version != latest {
		t.Fatalf("second run: %+v, %v", r, err)
	}
}

// NewMsg returns a NewMessage from from in conv with a fresh id.
func NewMsg(conv, from, cid, body string) history.NewMessage {
	return history.NewMessage{Conv: conv, ID: history.NewID(time.Now()), CID: cid, From: from,
		TS: time.Now(), Type: history.TypeText, Body: json.RawMessage(body)}
}

func mustAppend(t *testing.T, s history.Store, nm history.NewMessage) history.Message {
	t.Helper()
	m, created, err := s.Append(context.Background(), nm)
	if err != nil {
		t.Fatalf("Append(%s from %s): %v", nm.Conv, nm.From, err)
	}
	if !created {
		t.Fatalf("Append(%s, cid %q): created = false, want true", nm.Conv, nm.CID)
	}
	return m
}

// allMessages returns every message of conv (up to 1000), failing t when the
// store cannot read them.
func allMessages(t *testing.T, s history.Store, conv string) []history.Message {
	t.Helper()
	msgs, err := s.Messages(context.Background(), conv, 0, 1000)
	if err != nil {
		t.Fatalf("Messages(%s): %v", conv, err)
	}
	return msgs
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := history.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func testAppendDirect(t *testing.T, s history.Store) {
	conv := history.DirectConvID("bob", "alice")
	for i := 1; i <= 3; i++ {
		nm := NewMsg(conv, "alice", fmt.Sprintf("c%d", i), fmt.Sprintf(`{"n":%d}`, i))
		m := mustAppend(t, s, nm)
		if m.Seq != int64(i) || m.Conv != conv || m.From != "alice" || m.ID != nm.ID || m.CID != nm.CID {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	// A message from the other side continues the same sequence.
	m := mustAppend(t, s, NewMsg(conv, "bob", "", `"hi"`))
	if m.Seq != 4 {
		t.Fatalf("bob's seq = %d, want 4", m.Seq)
	}
	// Another conversation has its own sequence.
	m = mustAppend(t, s, NewMsg(history.DirectConvID("alice", "carol"), "carol", "", `"x"`))
	if m.Seq != 1 {
		t.Fatalf("second conversation seq = %d, want 1", m.Seq)
	}
}

func testAppendIdempotent(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	first := mustAppend(t, s, NewMsg(conv, "alice", "same", `"one"`))
	mustAppend(t, s, NewMsg(conv, "alice", "other", `"two"`))
	again, created, err := s.Append(ctx, NewMsg(conv, "alice", "same", `"one again"`))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if created || again.Seq != first.Seq || again.ID != first.ID || string(again.Body) != `"one"` {
		t.Fatalf("retry = %+v created=%v, want the original %+v", again, created, first)
	}
	// The same cid from the other user is a different message.
	m := mustAppend(t, s, NewMsg(conv, "bob", "same", `"bob"`))
	if m.Seq != 3 {
		t.Fatalf("bob's seq = %d, want 3", m.Seq)
	}
	if msgs := allMessages(t, s, conv); len(msgs) != 3 {
		t.Fatalf("Messages = %d, want 3", len(msgs))
	}
}

func testAppendConcurrent(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	// ids[w][i] is the id the store returned for writer w's i-th cid; both
	// sends of a cid must return the same message.
	ids := make([][]string, writers)
	for w := 0; w < writers; w++ {
		ids[w] = make([]string, each)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				from := []string{"alice", "bob"}[w%2]
				// Every cid is sent twice, as a DUP resend would.
				nm := NewMsg(conv, from, fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				for r := 0; r < 2; r++ {
					m, _, err := s.Append(ctx, nm)
					if err != nil {
						errs <- err
						continue
					}
					switch {
					case r == 0:
						ids[w][i] = m.ID
					case m.ID != ids[w][i]:
						errs <- fmt.Errorf("w%d-%d: retry returned id %s, first send %s", w, i, m.ID, ids[w][i])
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append: %v", err)
	}
	msgs := allMessages(t, s, conv)
	// Exactly the cids sent, each once, under the id its Append returned,
	// with its own body, at seqs 1..N, and each writer's cids in the order
	// it sent them.
	type sent struct{ w, i int }
	want := map[string]sent{}
	for w := 0; w < writers; w++ {
		for i := 0; i < each; i++ {
			want[fmt.Sprintf("w%d-%d", w, i)] = sent{w, i}
		}
	}
	seen := map[string]int64{}
	lastOf := make([]int, writers)
	for w := range lastOf {
		lastOf[w] = -1
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: gap or duplicate", i, m.Seq)
		}
		k, ok := want[m.CID]
		if !ok {
			t.Fatalf("seq %d: cid %q was never sent", m.Seq, m.CID)
		}
		if seq, dup := seen[m.CID]; dup {
			t.Fatalf("cid %s stored twice, at seqs %d and %d", m.CID, seq, m.Seq)
		}
		seen[m.CID] = m.Seq
		if from := []string{"alice", "bob"}[k.w%2]; m.From != from {
			t.Fatalf("cid %s from %s, want %s", m.CID, m.From, from)
		}
		if m.ID != ids[k.w][k.i] {
			t.Fatalf("cid %s stored with id %s, Append returned %s", m.CID, m.ID, ids[k.w][k.i])
		}
		var body struct{ W, I int }
		if err := json.Unmarshal(m.Body, &body); err != nil || body.W != k.w || body.I != k.i {
			t.Fatalf("cid %s has body %s (%v)", m.CID, m.Body, err)
		}
		if k.i != lastOf[k.w]+1 {
			t.Fatalf("writer %d: cid %d stored after cid %d: not in send order", k.w, k.i, lastOf[k.w])
		}
		lastOf[k.w] = k.i
	}
	if len(seen) != len(want) {
		t.Fatalf("stored %d distinct cids of %d sent (%d messages)", len(seen), len(want), len(msgs))
	}
}

func testAppendInvalid(t *testing.T, s history.Store) {
	ctx := context.Background()
	_, _, err := s.Append(ctx, NewMsg("nonsense", "alice", "", `1`))
	wantCode(t, err, history.EINVALID)
	_, _, err = s.Append(ctx, NewMsg(history.DirectConvID("bob", "carol"), "alice", "", `1`))
	wantCode(t, err, history.ENOTMEMBER)
	_, _, err = s.Append(ctx, NewMsg(history.GroupConvID("nogroup"), "alice", "", `1`))
	wantCode(t, err, history.ENOTFOUND)
}

func testMessages(t *testing.T, s history.Store) {
	ctx := context.Background()
	conv := history.DirectConvID("alice", "bob")
	for i := 0; i < 10; i++ {
		mustAppend(t, s, NewMsg(conv, "alice", "", fmt.Sprintf(`{"i":%d,"s":"é\u2028"}`, i)))
	}
	msgs, err := s.Messages(ctx, conv, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[0].Seq != 5 || msgs[2].Seq != 7 {
		t.Fatalf("Messages(after 4, limit 3) = %+v", msgs)
	}
	var body struct {
		I int
		S string
	}
	if err := json.Unmarshal(msgs[0].Body, &body); err != nil || body.I != 4 || body.S != "é\u2028" {
		t.Fatalf("body = %s (%v)", msgs[0].Body, err)
	}
	if msgs[0].TS.IsZero() || msgs[0].Type != history.TypeText {
		t.Fatalf("message = %+v", msgs[0])
	}
	msgs, err = s.Messages(ctx, conv, 10, 5)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("Messages past the end = %v, %v", msgs, err)
	}
	msgs, err = s.Messages(ctx, "dm:nobody:here", 0, 5)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("Messages of an unknown conversation = %v, %v", msgs, err)
	}
}

func testAppendBatch(t *testing.T, s history.Store) {
	ctx := context.Background()
	createGroup(t, s, "g", "alice", "bob")
	dm := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(dm, "alice", "old", `"old"`))
	batch := []history.NewMessage{
		NewMsg(dm, "alice", "a1", `1`),                               // seq 2
		NewMsg("g:g", "bob", "b1", `2`),                              // seq 2
		NewMsg("g:g", "carol", "c1", `3`),                            // not a member
		NewMsg(dm, "bob", "", `4`),                                   // seq 3
		NewMsg(dm, "alice", "old", `"again"`),                        // retry of seq 1
		NewMsg(dm, "alice", "a1", `"repeat"`),                        // repeat within the batch
		NewMsg("g:nope", "alice", "", `5`),                           // no such group
		NewMsg("bad", "alice", "", `6`),                              // invalid
		NewMsg(dm, "carol", "", `7`),                                 // not part of it
		NewMsg("g:g", "alice", "", `8`),                              // seq 3
		NewMsg(history.DirectConvID("alice", "zed"), "zed", "", `9`), // new conversation, seq 1
	}
	rs, err := s.AppendBatch(ctx, batch)
	if err != nil || len(rs) != len(batch) {
		t.Fatalf("AppendBatch: %d results, %v", len(rs), err)
	}
	want := []struct {
		seq     int64
		created bool
		code    string
	}{
		{2, true, ""}, {2, true, ""}, {0, false, history.ENOTMEMBER}, {3, true, ""}, {1, false, ""}, {2, false, ""},
		{0, false, history.ENOTFOUND}, {0, false, history.EINVALID}, {0, false, history.ENOTMEMBER}, {3, true, ""}, {1, true, ""},
	}
	for i, w := range want {
		r := rs[i]
		if history.ErrorCode(r.Err) != w.code || r.Message.Seq != w.seq || r.Created != w.created {
			t.Fatalf("result %d = %+v (err %v), want seq %d created %v code %q", i, r.Message, r.Err, w.seq, w.created, w.code)
		}
	}
	if string(rs[4].Message.Body) != `"old"` || string(rs[5].Message.Body) != `1` {
		t.Fatalf("retries returned %s and %s, want the originals", rs[4].Message.Body, rs[5].Message.Body)
	}
	if msgs := allMessages(t, s, dm); len(msgs) != 3 {
		t.Fatalf("dm holds %d messages, want 3", len(msgs))
	}
	if msgs := allMessages(t, s, "g:g"); len(msgs) != 3 || msgs[2].From != "alice" {
		t.Fatalf("group holds %d messages", len(msgs))
	}
	st, _ := s.Device(ctx, "zed/1", "zed")
	if len(st.Convs) != 1 || st.Convs[0].Last != 1 {
		t.Fatalf("zed's conversations = %+v", st.Convs)
	}
}

// Reopen checks that seqs survive a restart: open returns the same database
// each time it is called (a new Store over it, as a restarted node would
// open). Messages appended before and after each close keep contiguous seqs
// in append order, and no seq ever names a different message: every seq
// still holds the id, cid, sender and body its Append returned.
func Reopen(t *testing.T, open func(t *testing.T) history.Store) {
	ctx := context.Background()
	direct := history.DirectConvID("alice", "bob")
	var want []history.Message
	for run := 0; run < 3; run++ {
		s := open(t)
		for i := 0; i < 2; i++ {
			from := []string{"alice", "bob"}[i]
			m := mustAppend(t, s, NewMsg(direct, from, fmt.Sprintf("r%d-%d", run, i), fmt.Sprintf(`{"run":%d,"i":%d}`, run, i)))
			if m.Seq != int64(len(want)+1) {
				t.Fatalf("run %d: message %d got seq %d, want %d (the seq did not continue after reopening)", run, i, m.Seq, len(want)+1)
			}
			want = append(want, m)
		}
		// A group commit after the reopen continues the same counter.
		batch := []history.NewMessage{
			NewMsg(direct, "alice", fmt.Sprintf("r%d-b0", run), fmt.Sprintf(`{"run":%d,"b":0}`, run)),
			NewMsg(direct, "bob", fmt.Sprintf("r%d-b1", run), fmt.Sprintf(`{"run":%d,"b":1}`, run)),
		}
		rs, err := s.AppendBatch(ctx, batch)
		if err != nil {
			t.Fatalf("run %d: AppendBatch: %v", run, err)
		}
		for i, r := range rs {
			if r.Err != nil || !r.Created {
				t.Fatalf("run %d: batch message %d: created %v, %v", run, i, r.Created, r.Err)
			}
			if r.Message.Seq != int64(len(want)+1) {
				t.Fatalf("run %d: batch message %d got seq %d, want %d", run, i, r.Message.Seq, len(want)+1)
			}
			want = append(want, r.Message)
		}
		got, err := s.Messages(ctx, direct, 0, 1000)
		if err != nil {
			t.Fatalf("run %d: Messages: %v", run, err)
		}
		if len(got) != len(want) {
			t.Fatalf("run %d: %d messages stored, want %d", run, len(got), len(want))
		}
		for i, m := range got {
			w := want[i]
			if m.Seq != w.Seq || m.ID != w.ID || m.CID != w.CID || m.From != w.From || string(m.Body) != string(w.Body) {
				t.Fatalf("run %d: seq %d holds id %s cid %s from %s body %s; Append returned seq %d id %s cid %s from %s body %s",
					run, m.Seq, m.ID, m.CID, m.From, m.Body, w.Seq, w.ID, w.CID, w.From, w.Body)
			}
		}
		// A retry of a message stored before the reopen is still a duplicate.
		if run > 0 {
			old := want[0]
			m, created, err := s.Append(ctx, history.NewMessage{Conv: direct, ID: history.NewID(time.Now()), CID: old.CID,
				From: old.From, TS: time.Now(), Type: history.TypeText, Body: json.RawMessage(`"retry"`)})
			if err != nil || created || m.Seq != old.Seq || m.ID != old.ID {
				t.Fatalf("run %d: retry of cid %s after reopen: seq %d id %s created %v %v; want the original seq %d id %s",
					run, old.CID, m.Seq, m.ID, created, err, old.Seq, old.ID)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("run %d: Close: %v", run, err)
		}
	}
}

// as returns s as T, an interface of package history beside Store that
// every store implements (history.Outboxer, history.Privacy); it fails t if
// s does not.
func as[T any](t testing.TB, s history.Store) T {
	t.Helper()
	v, ok := s.(T)
	if !ok {
		t.Fatalf("%T does not implement %v", s, reflect.TypeFor[T]())
	}
	return v
}
