package historytest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// outboxCases are the cases of the outbox and push (history.Outboxer).
var outboxCases = []storeCase{
	{"OutboxEvents", testOutboxEvents},
	{"OutboxPaging", testOutboxPaging},
	{"SinkPositions", testSinkPositions},
	{"PruneOutbox", testPruneOutbox},
	{"PushTokens", testPushTokens},
	{"PushTargets", testPushTargets},
}

// allEvents returns every event of the outbox after after, read in pages of
// limit, and checks that positions strictly increase.
func allEvents(t *testing.T, o history.Outboxer, after int64, limit int) []history.OutboxEvent {
	t.Helper()
	var out []history.OutboxEvent
	for {
		page, err := o.Outbox(context.Background(), after, limit)
		if err != nil {
			t.Fatalf("Outbox(%d, %d): %v", after, limit, err)
		}
		if len(page) > limit {
			t.Fatalf("Outbox(%d, %d): %d events", after, limit, len(page))
		}
		for _, e := range page {
			if e.Pos <= after {
				t.Fatalf("Outbox: pos %d after pos %d", e.Pos, after)
			}
			after = e.Pos
		}
		out = append(out, page...)
		if len(page) < limit {
			return out
		}
	}
}

// wantEvent is what an outbox event should carry.
type wantEvent struct {
	kind, conv string
	seq        int64
	user       string
	id         string // "" for a read: any new id
}

func msgEvent(m history.Message) wantEvent {
	return wantEvent{kind: history.OutboxMessage, conv: m.Conv, seq: m.Seq, id: m.ID}
}

// checkEvents compares events with want and, for message events, the
// joined message with the message as Messages reads it now.
func checkEvents(t *testing.T, s history.Store, events []history.OutboxEvent, want []wantEvent) {
	t.Helper()
	if len(events) != len(want) {
		for _, e := range events {
			t.Logf("event %d: %s %s seq %d user %q", e.Pos, e.Kind, e.Conv, e.Seq, e.User)
		}
		t.Fatalf("%d events, want %d", len(events), len(want))
	}
	ids := map[string]bool{}
	for i, e := range events {
		w := want[i]
		if e.Kind != w.kind || e.Conv != w.conv || e.Seq != w.seq || e.User != w.user || (w.id != "" && e.ID != w.id) || e.ID == "" {
			t.Fatalf("event %d = %+v, want %+v", i, e, w)
		}
		if ids[e.ID] {
			t.Fatalf("event %d: id %s repeated", i, e.ID)
		}
		ids[e.ID] = true
		if e.TS.IsZero() || e.TS.Location() != time.UTC {
			t.Fatalf("event %d: ts %v", i, e.TS)
		}
		if e.Kind == history.OutboxRead {
			if e.Message != nil {
				t.Fatalf("read event %d carries a message", i)
			}
			continue
		}
		msgs, err := s.Messages(context.Background(), e.Conv, e.Seq-1, 1)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("Messages(%s, %d): %v, %v", e.Conv, e.Seq, msgs, err)
		}
		if e.Message == nil || !reflect.DeepEqual(*e.Message, msgs[0]) {
			t.Fatalf("event %d: message %+v, want %+v", i, e.Message, msgs[0])
		}
		if !e.TS.Equal(msgs[0].TS) {
			t.Fatalf("event %d: ts %v, want the message's %v", i, e.TS, msgs[0].TS)
		}
	}
}

// testOutboxEvents: every stored change writes its event, in order; what
// stores nothing writes none; events carry their messages as they are now.
func testOutboxEvents(t *testing.T, s history.Store) {
	ctx := context.Background()
	o := as[history.Outboxer](t, s)
	if head, err := o.OutboxHead(ctx); err != nil || head != 0 {
		t.Fatalf("OutboxHead of an empty store = %d, %v", head, err)
	}
	dm := history.DirectConvID("alice", "bob")
	var want []wantEvent
	add := func(m history.Message) { want = append(want, msgEvent(m)) }
	m1 := mustAppend(t, s, NewMsg(dm, "alice", "c1", `"one"`)) // 1
	add(m1)
	m2 := NewMsg(dm, "alice", "c2", `"two"`)
	m2.Mentions, m2.ReplyTo = []string{"bob"}, 1
	add(mustAppend(t, s, m2))                                                              // 2
	add(appendOne(t, s, Op(dm, "alice", history.OpEdit, 1, `"one, edited"`)).Message)      // 3
	add(appendOne(t, s, React(dm, "bob", history.OpReact, 2, "👍")).Message)                // 4
	unchanged(t, s, React(dm, "bob", history.OpReact, 2, "👍"))                             // nothing
	refuse(t, s, NewMsg(history.GroupConvID("nope"), "alice", "", `1`), history.ENOTFOUND) // nothing
	add(appendOne(t, s, Op(dm, "alice", history.OpDelete, 1, `null`)).Message)             // 5
	// A retry of a stored cid stores nothing.
	if _, created, err := s.Append(ctx, NewMsg(dm, "alice", "c1", `"one"`)); err != nil || created {
		t.Fatalf("retry: created %v, %v", created, err)
	}
	// A batch over conversations: its events in the batch's order.
	dm2 := history.DirectConvID("alice", "carol")
	rs, err := s.AppendBatch(ctx, []history.NewMessage{NewMsg(dm2, "carol", "", `1`), NewMsg(dm, "bob", "", `2`),
		NewMsg(history.GroupConvID("nope"), "bob", "", `3`), NewMsg(dm2, "alice", "", `4`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Created {
			add(r.Message)
		}
	}
	add(createGroup(t, s, "g", "alice", "bob"))
	mc, _, err := s.ChangeMember(ctx, change("g", "alice", "carol", history.RoleMember, false))
	if err != nil {
		t.Fatal(err)
	}
	add(mc)
	if _, _, err := s.ChangeMember(ctx, change("g", "bob", "carol", history.RoleAdmin, false)); err == nil {
		t.Fatal("a member changed a role")
	}
	if _, moved, err := s.MarkRead(ctx, "bob", dm, 5); err != nil || !moved {
		t.Fatalf("MarkRead: %v, %v", moved, err)
	}
	want = append(want, wantEvent{kind: history.OutboxRead, conv: dm, seq: 5, user: "bob"})
	if _, moved, err := s.MarkRead(ctx, "bob", dm, 4); err != nil || moved { // does not move: no event
		t.Fatalf("MarkRead back: %v, %v", moved, err)
	}
	_, _, err = s.MarkRead(ctx, "bob", dm, 99)
	wantCode(t, err, history.EINVALID)

	events := allEvents(t, o, 0, 100)
	checkEvents(t, s, events, want)
	// The deleted message and its edit event carry a null body now.
	for _, i := range []int{0, 2} {
		if m := events[i].Message; string(m.Body) != "null" || m.Deleted != (i == 0) {
			t.Fatalf("event %d after the delete: %+v", i, m)
		}
	}
	if m := events[1].Message; m.ReplyTo != 1 || !slices.Equal(m.Mentions, []string{"bob"}) {
		t.Fatalf("reply event's message: %+v", m)
	}
	if m := events[3].Message; m.Target != 2 || m.Emoji != "👍" || m.Type != history.OpType(history.OpReact) {
		t.Fatalf("reaction event's message: %+v", m)
	}
	if head, err := o.OutboxHead(ctx); err != nil || head != events[len(events)-1].Pos {
		t.Fatalf("OutboxHead = %d, %v; want %d", head, err, events[len(events)-1].Pos)
	}
}

// fillOutbox stores n messages and returns their events.
func fillOutbox(t *testing.T, s history.Store, n int) []history.OutboxEvent {
	t.Helper()
	for i := range n {
		mustAppend(t, s, NewMsg(history.DirectConvID("alice", fmt.Sprintf("u%d", i%3)), "alice", "", fmt.Sprint(i)))
	}
	events := allEvents(t, as[history.Outboxer](t, s), 0, 1000)
	if len(events) != n {
		t.Fatalf("%d events, want %d", len(events), n)
	}
	return events
}

func testOutboxPaging(t *testing.T, s history.Store) {
	ctx := context.Background()
	o := as[history.Outboxer](t, s)
	all := fillOutbox(t, s, 7)
	for _, limit := range []int{1, 2, 3, 7, 8} {
		if got := allEvents(t, o, 0, limit); !reflect.DeepEqual(got, all) {
			t.Fatalf("pages of %d: %d events, differ from one page", limit, len(got))
		}
	}
	page, err := o.Outbox(ctx, all[2].Pos, 2)
	if err != nil || len(page) != 2 || page[0].Pos != all[3].Pos || page[1].Pos != all[4].Pos {
		t.Fatalf("Outbox(after the 3rd, 2) = %+v, %v", page, err)
	}
	if page, err := o.Outbox(ctx, all[6].Pos, 10); err != nil || len(page) != 0 {
		t.Fatalf("Outbox(after the last) = %+v, %v", page, err)
	}
	_, err = o.Outbox(ctx, 0, 0)
	wantCode(t, err, history.EINVALID)
}

func testSinkPositions(t *testing.T, s history.Store) {
	ctx := context.Background()
	o := as[history.Outboxer](t, s)
	check := func(sink string, want int64, wantOK bool) {
		t.Helper()
		pos, ok, err := o.SinkPosition(ctx, sink)
		if err != nil || pos != want || ok != wantOK {
			t.Fatalf("SinkPosition(%s) = %d, %v, %v; want %d, %v", sink, pos, ok, err, want, wantOK)
		}
	}
	save := func(sink string, pos int64) {
		t.Helper()
		if err := o.SaveSinkPosition(ctx, sink, pos); err != nil {
			t.Fatalf("SaveSinkPosition(%s, %d): %v", sink, pos, err)
		}
	}
	check("webhook", 0, false)
	save("webhook", 0)
	check("webhook", 0, true)
	save("webhook", 5)
	check("webhook", 5, true)
	check("kafka", 0, false)
	save("kafka", 9)
	save("webhook", 3) // back: stored as given
	check("webhook", 3, true)
	check("kafka", 9, true)
}

func testPruneOutbox(t *testing.T, s history.Store) {
	ctx := context.Background()
	o := as[history.Outboxer](t, s)
	all := fillOutbox(t, s, 10)
	prune := func(upTo int64, limit, want int) {
		t.Helper()
		n, err := o.PruneOutbox(ctx, upTo, limit)
		if err != nil || n != want {
			t.Fatalf("PruneOutbox(%d, %d) = %d, %v; want %d", upTo, limit, n, err, want)
		}
	}
	prune(all[5].Pos, 4, 4)
	if got := allEvents(t, o, 0, 100); !reflect.DeepEqual(got, all[4:]) {
		t.Fatalf("after pruning 4: %d events from pos %d", len(got), got[0].Pos)
	}
	prune(all[5].Pos, 100, 2)
	prune(all[5].Pos, 100, 0)
	if got := allEvents(t, o, 0, 100); !reflect.DeepEqual(got, all[6:]) {
		t.Fatalf("after pruning up to the 6th: %d events", len(got))
	}
	_, err := o.PruneOutbox(ctx, all[9].Pos, 0)
	wantCode(t, err, history.EINVALID)
	prune(all[9].Pos, 100, 4)
	// The head survives the pruning of every event, and new events go on
	// above it.
	if head, err := o.OutboxHead(ctx); err != nil || head != all[9].Pos {
		t.Fatalf("OutboxHead after pruning all = %d, %v; want %d", head, err, all[9].Pos)
	}
	mustAppend(t, s, NewMsg(history.DirectConvID("alice", "bob"), "alice", "", `1`))
	if got := allEvents(t, o, 0, 100); len(got) != 1 || got[0].Pos <= all[9].Pos {
		t.Fatalf("after pruning all, a new message's events: %+v", got)
	}
}

// OutboxConcurrent checks the outbox's order under concurrent writers:
// sends on many conversations, group creations and membership changes
// (which lock conversations too) and read markers, while a reader polls the
// outbox from the last position it saw. Positions must become visible in
// commit order: the reader never sees a position below one it saw, and at
// the end it saw every event (none committed below its position after it
// passed). Every stored message has exactly one event, and each
// conversation's events are in seq order.
func OutboxConcurrent(t *testing.T, s history.Store, writers, rounds int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := as[history.Outboxer](t, s)
	var wg sync.WaitGroup
	errs := make(chan error, writers+8)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
		cancel()
	}
	createGroup(t, s, "shared", "owner", "m0")
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me := fmt.Sprintf("w%d", w)
			for r := range rounds {
				// Batches over one or two conversations, one of them
				// the shared group's, whose membership changes go on.
				ms := []history.NewMessage{NewMsg(history.DirectConvID(me, "peer"), me, "", fmt.Sprint(r))}
				if r%3 == 0 {
					ms = append(ms, NewMsg(history.DirectConvID(me, "peer2"), me, "", fmt.Sprint(r)))
				}
				if r%4 == 0 {
					ms = append(ms, NewMsg("g:shared", "owner", "", fmt.Sprint(r)))
				}
				if _, err := s.AppendBatch(ctx, ms); err != nil {
					fail(fmt.Errorf("writer %d: AppendBatch: %w", w, err))
					return
				}
				if r%5 == 4 {
					if _, _, err := s.MarkRead(ctx, "peer", history.DirectConvID(me, "peer"), int64(r+1)); err != nil {
						fail(fmt.Errorf("writer %d: MarkRead: %w", w, err))
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // group creations and membership changes
		defer wg.Done()
		for r := range rounds {
			g := history.Group{ID: fmt.Sprintf("g%d", r), Name: "g", CreatedBy: "owner", CreatedAt: time.Now()}
			nm := NewMsg("", "owner", "", `{}`)
			nm.Type = history.TypeGroupCreated
			if _, err := s.CreateGroup(ctx, g, []history.Member{{User: "owner", Role: history.RoleOwner}}, nm); err != nil {
				fail(fmt.Errorf("CreateGroup: %w", err))
				return
			}
			c := change("shared", "owner", "m1", history.RoleMember, r%2 == 1)
			if _, _, err := s.ChangeMember(ctx, c); err != nil {
				fail(fmt.Errorf("ChangeMember: %w", err))
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var seen []int64
	var last int64
	poll := func() bool {
		page, err := o.Outbox(ctx, last, 50)
		if err != nil {
			fail(fmt.Errorf("Outbox: %w", err))
			return false
		}
		for _, e := range page {
			if e.Pos <= last {
				fail(fmt.Errorf("reader: pos %d after %d", e.Pos, last))
				return false
			}
			last = e.Pos
			seen = append(seen, e.Pos)
		}
		return len(page) == 50
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			if !poll() && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	for ctx.Err() == nil && poll() { // drain
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if ctx.Err() != nil {
		t.Fatal(ctx.Err())
	}
	all := allEvents(t, o, 0, 500)
	positions := make([]int64, len(all))
	for i, e := range all {
		positions[i] = e.Pos
	}
	if !slices.Equal(seen, positions) {
		missed := 0
		seenSet := map[int64]bool{}
		for _, p := range seen {
			seenSet[p] = true
		}
		for _, p := range positions {
			if !seenSet[p] {
				missed++
			}
		}
		t.Fatalf("the reader saw %d events, %d are stored: it missed %d committed below a position it had passed", len(seen), len(all), missed)
	}
	// One event per stored message, in seq order per conversation.
	perConv := map[string][]int64{}
	for _, e := range all {
		if e.Kind == history.OutboxMessage {
			perConv[e.Conv] = append(perConv[e.Conv], e.Seq)
		}
	}
	total := 0
	for conv, seqs := range perConv {
		n := int(lastSeq(t, s, conv))
		total += n
		if len(seqs) != n {
			t.Fatalf("%s: %d events for %d messages", conv, len(seqs), n)
		}
		for i, q := range seqs {
			if q != int64(i+1) {
				t.Fatalf("%s: events of seqs %v, want 1..%d in order", conv, seqs, n)
			}
		}
	}
	t.Logf("%d events (%d messages), the reader polled them all in order", len(all), total)
}
