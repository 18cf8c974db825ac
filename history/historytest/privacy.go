package historytest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// privacyCases are the cases of search, retention, blocks, contacts and
// account deletion (history.Privacy).
var privacyCases = []storeCase{
	{"SearchVisibility", testSearchVisibility},
	{"SearchEditsDeletes", testSearchEditsDeletes},
	{"SearchPaging", testSearchPaging},
	{"Retention", testRetention},
	{"Expire", testExpire},
	{"BlocksRelation", testBlocksRelation},
	{"MaxBlocks", testMaxBlocks},
	{"DeleteUser", testDeleteUser},
	{"Export", testExport},
}

// search returns the (conv, seq) of user's results for q.
func search(t *testing.T, p history.Privacy, user, q string, mod ...func(*history.SearchQuery)) []history.SeqKey {
	t.Helper()
	terms, err := history.SearchTerms(q)
	if err != nil {
		t.Fatal(err)
	}
	sq := history.SearchQuery{User: user, Terms: terms, Limit: 50}
	for _, f := range mod {
		f(&sq)
	}
	msgs, _, err := p.Search(context.Background(), sq)
	if err != nil {
		t.Fatalf("Search(%s, %q): %v", user, q, err)
	}
	out := []history.SeqKey{}
	for _, m := range msgs {
		out = append(out, history.SeqKey{Conv: m.Conv, Seq: m.Seq})
	}
	return out
}

func wantHits(t *testing.T, what string, got []history.SeqKey, want ...history.SeqKey) {
	t.Helper()
	if want == nil {
		want = []history.SeqKey{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func testSearchVisibility(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ab, ac := history.DirectConvID("alice", "bob"), history.DirectConvID("alice", "carol")
	m1 := mustAppend(t, s, NewMsg(ab, "alice", "", `{"text":"Meet at the harbour","lang":"harbour-key"}`))
	m2 := mustAppend(t, s, NewMsg(ac, "carol", "", `{"text":"harbour party tonight"}`))
	createGroup(t, s, "g1", "alice")
	g := history.GroupConvID("g1")
	early := mustAppend(t, s, NewMsg(g, "alice", "", `"harbour before dave"`))
	if _, _, err := s.ChangeMember(context.Background(), change("g1", "alice", "dave", history.RoleMember, false)); err != nil {
		t.Fatal(err)
	}
	late := mustAppend(t, s, NewMsg(g, "alice", "", `["harbour", "after dave", 3]`))

	wantHits(t, "alice", search(t, p, "alice", "harbour"),
		history.SeqKey{Conv: g, Seq: late.Seq}, history.SeqKey{Conv: g, Seq: early.Seq},
		history.SeqKey{Conv: ac, Seq: m2.Seq}, history.SeqKey{Conv: ab, Seq: m1.Seq})
	wantHits(t, "bob sees only his conversation", search(t, p, "bob", "HARBOUR"), history.SeqKey{Conv: ab, Seq: m1.Seq})
	wantHits(t, "dave sees the group from his joining", search(t, p, "dave", "harbour"), history.SeqKey{Conv: g, Seq: late.Seq})
	wantHits(t, "mallory sees nothing", search(t, p, "mallory", "harbour"))
	wantHits(t, "keys are not indexed", search(t, p, "alice", "lang"))
	wantHits(t, "prefix of the last word", search(t, p, "alice", "meet harb"), history.SeqKey{Conv: ab, Seq: m1.Seq})
	wantHits(t, "every word must match", search(t, p, "alice", "meet party"))
	wantHits(t, "conv filter", search(t, p, "alice", "harbour", func(q *history.SearchQuery) { q.Conv = ac }), history.SeqKey{Conv: ac, Seq: m2.Seq})
	wantHits(t, "from filter", search(t, p, "alice", "harbour", func(q *history.SearchQuery) { q.From = "carol" }), history.SeqKey{Conv: ac, Seq: m2.Seq})
	wantHits(t, "before filter", search(t, p, "alice", "harbour", func(q *history.SearchQuery) { q.Before = m2.TS }), history.SeqKey{Conv: ab, Seq: m1.Seq})
	// Once removed, dave keeps what he could see.
	if _, _, err := s.ChangeMember(context.Background(), change("g1", "alice", "dave", "", true)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, NewMsg(g, "alice", "", `"harbour after removal"`))
	wantHits(t, "removed dave", search(t, p, "dave", "harbour"), history.SeqKey{Conv: g, Seq: late.Seq})
}

func testSearchEditsDeletes(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ab := history.DirectConvID("alice", "bob")
	m := mustAppend(t, s, NewMsg(ab, "alice", "", `{"text":"secret plan"}`))
	other := mustAppend(t, s, NewMsg(ab, "bob", "", `{"text":"plan b"}`))
	if r := appendOne(t, s, Op(ab, "alice", history.OpEdit, m.Seq, `{"text":"public notice"}`)); r.Err != nil {
		t.Fatal(r.Err)
	}
	wantHits(t, "edited-away text", search(t, p, "bob", "secret"))
	wantHits(t, "new text", search(t, p, "bob", "notice"), history.SeqKey{Conv: ab, Seq: m.Seq})
	wantHits(t, "the edit event is not a result", search(t, p, "bob", "plan"), history.SeqKey{Conv: ab, Seq: other.Seq})
	if r := appendOne(t, s, Op(ab, "alice", history.OpDelete, m.Seq, `null`)); r.Err != nil {
		t.Fatal(r.Err)
	}
	wantHits(t, "deleted text", search(t, p, "bob", "notice"))
	// Escapes that PostgreSQL's json cannot decode are indexed too.
	esc := mustAppend(t, s, NewMsg(ab, "alice", "", `{"t":"escaped\u0000word","\u0000":"\ud800","n":[1e400]}`))
	wantHits(t, "escaped body", search(t, p, "bob", "escaped"), history.SeqKey{Conv: ab, Seq: esc.Seq})
}

func testSearchPaging(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ab := history.DirectConvID("alice", "bob")
	base := time.Now().Add(-time.Hour)
	for i := range 7 {
		nm := NewMsg(ab, "alice", "", `"paging word"`)
		nm.TS = base.Add(time.Duration(i) * time.Minute)
		mustAppend(t, s, nm)
	}
	terms, _ := history.SearchTerms("word")
	var got []int64
	cursor := ""
	for range 5 {
		msgs, next, err := p.Search(context.Background(), history.SearchQuery{User: "bob", Terms: terms, Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got = append(got, m.Seq)
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if !slices.Equal(got, []int64{7, 6, 5, 4, 3, 2, 1}) {
		t.Fatalf("pages gave %v, want 7..1", got)
	}
	_, _, err := p.Search(context.Background(), history.SearchQuery{User: "bob", Terms: terms, Limit: 3, Cursor: "garbage"})
	wantCode(t, err, history.EINVALID)
}

func testRetention(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ctx := context.Background()
	ab := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(ab, "alice", "", `"x"`))
	createGroup(t, s, "g1", "alice", "bob")
	g := history.GroupConvID("g1")
	if d, err := p.SetRetention(ctx, "bob", ab, time.Hour); err != nil || d != time.Hour {
		t.Fatalf("direct party: %v, %v", d, err)
	}
	if d, _ := p.Retention(ctx, ab); d != time.Hour {
		t.Fatalf("Retention = %v", d)
	}
	_, err := p.SetRetention(ctx, "bob", g, time.Hour)
	wantCode(t, err, history.ENOTALLOWED)
	_, err = p.SetRetention(ctx, "carol", g, time.Hour)
	wantCode(t, err, history.ENOTMEMBER)
	if _, err := p.SetRetention(ctx, "alice", g, 0); err != nil {
		t.Fatal(err)
	}
	if d, _ := p.Retention(ctx, g); d != 0 {
		t.Fatalf("cleared retention = %v", d)
	}
}

func testExpire(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ctx := context.Background()
	ab, ac := history.DirectConvID("alice", "bob"), history.DirectConvID("alice", "carol")
	now := time.Now()
	for i := range 10 {
		nm := NewMsg(ab, "alice", "", `"old words"`)
		nm.TS = now.Add(-48*time.Hour + time.Duration(i)*time.Minute)
		mustAppend(t, s, nm)
		nm = NewMsg(ac, "alice", "", `"old words"`)
		nm.TS = now.Add(-3 * time.Hour)
		mustAppend(t, s, nm)
	}
	mustAppend(t, s, NewMsg(ab, "bob", "", `"new words"`))
	if r := appendOne(t, s, React(ab, "bob", history.OpReact, 2, "👍")); r.Err != nil {
		t.Fatal(r.Err)
	}
	// No retention anywhere: nothing expires.
	if n, err := p.Expire(ctx, now, 0, 100); err != nil || n != 0 {
		t.Fatalf("Expire without retention = %d, %v", n, err)
	}
	// Global 24h: ab's 10 old messages go, in batches of 4.
	var total int
	for range 10 {
		n, err := p.Expire(ctx, now, 24*time.Hour, 4)
		if err != nil || n > 4 {
			t.Fatalf("Expire = %d, %v", n, err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != 10 {
		t.Fatalf("expired %d, want 10", total)
	}
	msgs := allMessages(t, s, ab)
	if len(msgs) == 0 || msgs[0].Seq != 11 {
		t.Fatalf("ab kept %v", msgs)
	}
	hist, h, err := s.History(ctx, history.HistoryQuery{User: "bob", Conv: ab, Limit: 50})
	if err != nil || h.First != 11 || h.ExpiredBefore != 11 || len(hist) == 0 || hist[0].Seq != 11 {
		t.Fatalf("History after expiry: head %+v, %d msgs, %v", h, len(hist), err)
	}
	if len(allMessages(t, s, ac)) != 10 {
		t.Fatal("ac lost messages under a 24h retention")
	}
	wantHits(t, "expired messages are not found", search(t, p, "bob", "old"))
	// ac's own retention of 1h is shorter than the global 24h.
	if _, err := p.SetRetention(ctx, "carol", ac, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Expire(ctx, now, 24*time.Hour, 100); err != nil || n != 10 {
		t.Fatalf("Expire with ac's 1h = %d, %v", n, err)
	}
	st, err := s.Device(ctx, "bob/phone", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Convs {
		if h.Conv == ab && (h.First != 11 || h.ExpiredBefore != 11) {
			t.Fatalf("Device head %+v", h)
		}
	}
	// Seq numbering goes on.
	if m := mustAppend(t, s, NewMsg(ab, "alice", "", `"next"`)); m.Seq != 13 {
		t.Fatalf("next seq %d, want 13", m.Seq)
	}
}

func testBlocksRelation(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ctx := context.Background()
	rel := func(a, b string) history.Relation {
		t.Helper()
		r, err := p.Relation(ctx, a, b)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ab := history.DirectConvID("alice", "bob")
	mustAppend(t, s, NewMsg(ab, "alice", "", `"hi stranger"`))
	if r := rel("alice", "bob"); r.Contacts() || !r.Started || r.Talked {
		t.Fatalf("one message: %+v, contacts %v", r, r.Contacts())
	}
	mustAppend(t, s, NewMsg(ab, "bob", "", `"hi"`))
	if r := rel("bob", "alice"); !r.Contacts() || !r.Talked {
		t.Fatalf("both wrote: %+v", r)
	}
	createGroup(t, s, "g1", "carol", "dave")
	if r := rel("dave", "carol"); !r.Contacts() || !r.SharesGroup {
		t.Fatalf("group: %+v", r)
	}
	now := time.Now()
	for range 2 {
		if err := p.Block(ctx, "bob", "alice", now); err != nil {
			t.Fatal(err)
		}
	}
	if r := rel("alice", "bob"); !r.Blocked() || !r.BBlocksA || r.ABlocksB || r.Contacts() {
		t.Fatalf("blocked: %+v", r)
	}
	bs, err := p.Blocks(ctx, "bob")
	if err != nil || len(bs) != 1 || bs[0].User != "alice" {
		t.Fatalf("Blocks = %v, %v", bs, err)
	}
	if err := p.Unblock(ctx, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.Unblock(ctx, "bob", "alice"); err != nil {
		t.Fatal(err)
	}
	if r := rel("alice", "bob"); r.Blocked() {
		t.Fatalf("unblocked: %+v", r)
	}
}

// testMaxBlocks: a user blocks at most MaxBlocks users, also when the last
// blocks race; re-blocking a blocked user and blocks after an unblock
// succeed.
func testMaxBlocks(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ctx := context.Background()
	now := time.Now()
	const racing = 10
	for i := range history.MaxBlocks - racing/2 {
		if err := p.Block(ctx, "alice", fmt.Sprintf("u%04d", i), now); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
	}
	// racing new blocks at once: exactly the room left is taken.
	errs := make(chan error, racing)
	var wg sync.WaitGroup
	for i := range racing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.Block(ctx, "alice", fmt.Sprintf("r%02d", i), now)
		}()
	}
	wg.Wait()
	close(errs)
	refused := 0
	for err := range errs {
		switch history.ErrorCode(err) {
		case "":
		case history.EINVALID:
			refused++
		default:
			t.Fatalf("racing block: %v", err)
		}
	}
	bs, err := p.Blocks(ctx, "alice")
	if err != nil || len(bs) != history.MaxBlocks || refused != racing/2 {
		t.Fatalf("%d blocks (%v), %d refused; want %d and %d", len(bs), err, refused, history.MaxBlocks, racing/2)
	}
	wantCode(t, p.Block(ctx, "alice", "one-more", now), history.EINVALID)
	if err := p.Block(ctx, "alice", "u0000", now); err != nil {
		t.Fatalf("re-block at the limit: %v", err)
	}
	if err := p.Block(ctx, "bob", "alice", now); err != nil {
		t.Fatalf("another user's block: %v", err)
	}
	if err := p.Unblock(ctx, "alice", "u0000"); err != nil {
		t.Fatal(err)
	}
	if err := p.Block(ctx, "alice", "one-more", now); err != nil {
		t.Fatalf("block after an unblock: %v", err)
	}
	if r, err := p.Relation(ctx, "alice", "one-more"); err != nil || !r.ABlocksB {
		t.Fatalf("relation after the block: %+v %v", r, err)
	}
}

func testDeleteUser(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ctx := context.Background()
	ab := history.DirectConvID("alice", "bob")
	a1 := mustAppend(t, s, NewMsg(ab, "alice", "", `"alice one"`))
	mustAppend(t, s, NewMsg(ab, "bob", "", `"bob one"`))
	a2 := mustAppend(t, s, NewMsg(ab, "alice", "", `"alice two"`))
	createGroup(t, s, "g1", "bob", "alice", "carol")
	g := history.GroupConvID("g1")
	ga := mustAppend(t, s, NewMsg(g, "alice", "", `"alice in group"`))
	if err := p.Block(ctx, "alice", "carol", time.Now()); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	del, err := p.DeleteUser(ctx, "alice", at, func() string { return history.NewID(time.Now()) })
	if err != nil {
		t.Fatal(err)
	}
	if len(del.Events) != 3 {
		t.Fatalf("events %+v, want 3", del.Events)
	}
	for _, e := range del.Events {
		if e.Type != history.TypeMessageDeleted || e.From != "alice" {
			t.Fatalf("event %+v", e)
		}
	}
	if !slices.Equal(del.Members[g], []string{"bob", "carol"}) || !slices.Equal(del.Members[ab], []string{"alice", "bob"}) {
		t.Fatalf("members after: %v", del.Members)
	}
	for _, k := range []history.SeqKey{{Conv: ab, Seq: a1.Seq}, {Conv: ab, Seq: a2.Seq}, {Conv: g, Seq: ga.Seq}} {
		m := seen(t, s, "bob", k.Conv, k.Seq)
		if !m.Deleted || string(m.Body) != "null" {
			t.Fatalf("%v after deletion: %+v", k, m)
		}
	}
	if m := seen(t, s, "alice", ab, 2); string(m.Body) != `"bob one"` {
		t.Fatalf("bob's message: %+v", m)
	}
	_, gm, err := s.Group(ctx, "g1")
	if err != nil || len(gm) != 2 {
		t.Fatalf("group members %v, %v", gm, err)
	}
	va, err := p.TokensValidAfter(ctx, "alice")
	if err != nil || va.Sub(at).Abs() > time.Millisecond {
		t.Fatalf("TokensValidAfter = %v, %v; want %v", va, err, at)
	}
	if va, _ := p.TokensValidAfter(ctx, "bob"); !va.IsZero() {
		t.Fatalf("bob's TokensValidAfter = %v", va)
	}
	if bs, _ := p.Blocks(ctx, "alice"); len(bs) != 0 {
		t.Fatalf("blocks remain: %v", bs)
	}
	wantHits(t, "deleted user's text", search(t, p, "bob", "alice"))
}

// testExport checks that an export holds the user's conversations, then
// everything the user sent: messages and the user's own edits, deletes and
// reactions (bodies as stored: a deleted message's edits are null), not
// others' changes nor the membership events the user caused.
func testExport(t *testing.T, s history.Store) {
	p := as[history.Privacy](t, s)
	ab := history.DirectConvID("alice", "bob")
	one := mustAppend(t, s, NewMsg(ab, "alice", "", `"one"`))
	bobs := mustAppend(t, s, NewMsg(ab, "bob", "", `"not mine"`))
	mustAppend(t, s, Op(ab, "alice", history.OpEdit, one.Seq, `"one, edited"`))
	mustAppend(t, s, React(ab, "bob", history.OpReact, one.Seq, "👀"))
	mustAppend(t, s, React(ab, "alice", history.OpReact, bobs.Seq, "👍"))
	mustAppend(t, s, React(ab, "alice", history.OpUnreact, bobs.Seq, "👍"))
	gone := mustAppend(t, s, NewMsg(ab, "alice", "", `"gone"`))
	mustAppend(t, s, Op(ab, "alice", history.OpEdit, gone.Seq, `"gone, edited"`))
	mustAppend(t, s, Op(ab, "alice", history.OpDelete, gone.Seq, `null`))
	mustAppend(t, s, Op(ab, "bob", history.OpDelete, bobs.Seq, `null`))
	createGroup(t, s, "g1", "alice")
	mustAppend(t, s, NewMsg(history.GroupConvID("g1"), "alice", "", `"two"`))
	var convs, lines []string
	err := p.Export(context.Background(), "alice", func(it history.ExportItem) error {
		if it.Conversation != nil {
			convs = append(convs, it.Conversation.ID)
			return nil
		}
		m := it.Message
		if m.From != "alice" {
			t.Errorf("exported %s %d from %s", m.Conv, m.Seq, m.From)
		}
		lines = append(lines, fmt.Sprintf("%s %d %s %d %s %s", m.Conv, m.Seq, m.Type, m.Target, m.Emoji, m.Body))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		ab + " 1 text 0  \"one, edited\"",
		ab + " 3 message.edited 1  \"one, edited\"",
		ab + " 5 reaction.added 2 👍 null",
		ab + " 6 reaction.removed 2 👍 null",
		ab + " 7 text 0  null",
		ab + " 8 message.edited 7  null",
		ab + " 9 message.deleted 7  null",
		"g:g1 2 text 0  \"two\"",
	}
	if !slices.Equal(convs, []string{ab, "g:g1"}) || !slices.Equal(lines, want) {
		t.Fatalf("export: convs %v, messages\n%s\nwant\n%s", convs, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
