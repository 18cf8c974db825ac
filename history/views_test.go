package history_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"testing"

	"github.com/parley-im/parley/history"
)

func TestChangeToken(t *testing.T) {
	cases := []struct {
		name string
		tok  history.ChangeToken
		want string
	}{
		{"Start", history.ChangeToken{From: 42}, "x42"},
		{"Zero", history.ChangeToken{}, "x0"},
		{"Paging", history.ChangeToken{From: 42, Upto: 50, At: "1700000000000000", ID: "dm:alice:bob"}, ""},
		{"PagingEmptyAt", history.ChangeToken{From: 1, Upto: 2, ID: "g:team"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.tok.Encode("x")
			if tc.want != "" && s != tc.want {
				t.Fatalf("Encode = %q, want %q", s, tc.want)
			}
			got, err := history.ParseChangeToken(s, "x")
			if err != nil || got != tc.tok {
				t.Fatalf("ParseChangeToken(%q) = %+v, %v; want %+v", s, got, err, tc.tok)
			}
		})
	}
}

func TestParseChangeTokenInvalid(t *testing.T) {
	for _, s := range []string{"x", "s1", "x-1", "xa", "x1.2", "x1.2.!!", "x1.-2.YQ", "x1.2.YQ", "x1.2.fA", "x1.2.3.4"} {
		t.Run(s, func(t *testing.T) {
			if _, err := history.ParseChangeToken(s, "x"); history.ErrorCode(err) != history.EINVALID {
				t.Fatalf("ParseChangeToken(%q) = %v, want EINVALID", s, err)
			}
		})
	}
	if tok, err := history.ParseChangeToken("", "x"); err != nil || tok != (history.ChangeToken{}) {
		t.Fatalf("empty token = %+v, %v", tok, err)
	}
}

func TestNextChangeToken(t *testing.T) {
	cur := history.ChangeToken{From: 3, Upto: 9}
	if got := history.NextChangeToken(cur, true, "at", "g:x"); got != (history.ChangeToken{From: 3, Upto: 9, At: "at", ID: "g:x"}) {
		t.Fatalf("more: %+v", got)
	}
	if got := history.NextChangeToken(cur, false, "at", "g:x"); got != (history.ChangeToken{From: 9}) {
		t.Fatalf("end: %+v", got)
	}
}

func TestParseChanges(t *testing.T) {
	paging := history.ChangeToken{From: 3, Upto: 9, At: "at", ID: "g:x"}
	cases := []struct {
		name  string
		since string
		limit int
		want  history.ChangeToken
		code  string
	}{
		{"Start", "", 1, history.ChangeToken{}, ""},
		{"Pass", "x5", 10, history.ChangeToken{From: 5}, ""},
		{"Paging", paging.Encode("x"), 10, paging, ""},
		{"BadToken", "y5", 10, history.ChangeToken{}, history.EINVALID},
		{"ZeroLimit", "x5", 0, history.ChangeToken{}, history.EINVALID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := history.ParseChanges(tc.since, "x", tc.limit)
			if got != tc.want || history.ErrorCode(err) != tc.code {
				t.Fatalf("ParseChanges(%q, %d) = %+v, %v; want %+v, code %q", tc.since, tc.limit, got, err, tc.want, tc.code)
			}
		})
	}
}

func TestChangeTokenNext(t *testing.T) {
	tok := history.ChangeToken{From: 3, Upto: 9}
	if !tok.Position().Top() {
		t.Fatalf("a pass's first token has position %+v", tok.Position())
	}
	pos := history.Position{At: "at", ID: "g:x"}
	next, err := history.ParseChangeToken(tok.Next("x", pos, true), "x")
	if err != nil || next.Position() != pos || next.From != 3 || next.Upto != 9 {
		t.Fatalf("Next(more) = %+v, %v", next, err)
	}
	if got := tok.Next("x", pos, false); got != "x9" {
		t.Fatalf("Next(done) = %q, want x9", got)
	}
}

func TestMemberRowHead(t *testing.T) {
	cases := []tableCase[history.MemberRow, history.ConvHead]{
		{"Direct", history.MemberRow{Conv: "dm:a:b", Kind: history.KindDirect, Last: 9}, history.ConvHead{Conv: "dm:a:b", First: 1, Last: 9}},
		{"DirectEmpty", history.MemberRow{Conv: "dm:a:b", Kind: history.KindDirect}, history.ConvHead{Conv: "dm:a:b", First: 1}},
		{"GroupMember", history.MemberRow{Conv: "g:x", Kind: history.KindGroup, Joined: 3, Last: 9}, history.ConvHead{Conv: "g:x", First: 3, Last: 9}},
		{"GroupFormer", history.MemberRow{Conv: "g:x", Kind: history.KindGroup, Joined: 3, Left: 5, Last: 9}, history.ConvHead{Conv: "g:x", First: 3, Last: 5}},
	}
	runTable(t, "MemberRow.Head", history.MemberRow.Head, cases)
	if got := history.Heads(nil); got != nil {
		t.Fatalf("Heads(nil) = %v", got)
	}
	rows := []history.MemberRow{cases[0].in, cases[3].in}
	if got := history.Heads(rows); !slices.Equal(got, []history.ConvHead{cases[0].want, cases[3].want}) {
		t.Fatalf("Heads = %+v", got)
	}
}

func TestHistoryRange(t *testing.T) {
	member := history.ConvHead{First: 1, Last: 10}
	former := history.ConvHead{First: 3, Last: 5}
	cases := []struct {
		name string
		q    history.HistoryQuery
		h    history.ConvHead
		want string
	}{
		{"FirstPage", history.HistoryQuery{}, member, "1..10 asc"},
		{"After", history.HistoryQuery{After: 8}, member, "9..10 asc"},
		{"PastEnd", history.HistoryQuery{After: 10}, member, "11..10 asc"},
		{"Before", history.HistoryQuery{Before: 5}, member, "1..4 desc"},
		{"BeforeWins", history.HistoryQuery{After: 2, Before: 5}, member, "1..4 desc"},
		{"BeforeEnd", history.HistoryQuery{Before: 11}, member, "1..10 desc"},
		{"FormerFromJoin", history.HistoryQuery{}, former, "3..5 asc"},
		{"FormerAfter", history.HistoryQuery{After: 4}, former, "5..5 asc"},
		{"FormerBefore", history.HistoryQuery{Before: 100}, former, "3..5 desc"},
		{"FormerBeforeJoin", history.HistoryQuery{Before: 2}, former, "3..1 desc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi, desc := tc.q.Range(tc.h)
			dir := "asc"
			if desc {
				dir = "desc"
			}
			if got := fmt.Sprintf("%d..%d %s", lo, hi, dir); got != tc.want {
				t.Fatalf("Range = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestMarkReadRule(t *testing.T) {
	cases := []struct {
		name            string
		member          bool
		read, last, seq int64
		after           int64
		move            bool
		code            string
	}{
		{"Forward", true, 2, 5, 4, 4, true, ""},
		{"ToEnd", true, 2, 5, 5, 5, true, ""},
		{"Same", true, 2, 5, 2, 2, false, ""},
		{"Backward", true, 4, 5, 1, 4, false, ""},
		{"Zero", true, 0, 0, 0, 0, false, ""},
		{"Beyond", true, 2, 5, 6, 0, false, history.EINVALID},
		{"Negative", true, 2, 5, -1, 0, false, history.EINVALID},
		{"NotMember", false, 2, 5, 3, 0, false, history.ENOTMEMBER},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			after, move, err := history.MarkReadRule("dm:a:b", tc.member, tc.read, tc.last, tc.seq)
			if after != tc.after || move != tc.move || history.ErrorCode(err) != tc.code {
				t.Fatalf("MarkReadRule = %d, %v, %v; want %d, %v, code %q", after, move, err, tc.after, tc.move, tc.code)
			}
		})
	}
}

func TestCursor(t *testing.T) {
	p := history.Position{At: "2026-11-30T06:00:00.000000Z", ID: "dm:a:b"}
	got, err := history.ParseCursor(p.Cursor())
	if err != nil || got != p {
		t.Fatalf("ParseCursor(Cursor(%+v)) = %+v, %v", p, got, err)
	}
	if got, err := history.ParseCursor(""); err != nil || !got.Top() {
		t.Fatalf(`ParseCursor("") = %+v, %v; want the top`, got, err)
	}
	if p.Top() {
		t.Fatal("a position is the top")
	}
	for _, s := range []string{"!!", "bm8tc2VwYXJhdG9y", "1|", "1|dm:\x00", "1|\xff", "\x00|x"} {
		c := s
		if s != "!!" && s != "bm8tc2VwYXJhdG9y" {
			c = base64.RawURLEncoding.EncodeToString([]byte(s))
		}
		if _, err := history.ParseCursor(c); history.ErrorCode(err) != history.EINVALID {
			t.Fatalf("ParseCursor(%q) = %v, want EINVALID", s, err)
		}
	}
	if c := history.NextCursor(p, false); c != "" {
		t.Fatalf("NextCursor at the end = %q", c)
	}
	if c := history.NextCursor(p, true); c != p.Cursor() {
		t.Fatalf("NextCursor = %q, want %q", c, p.Cursor())
	}
}

func TestPage(t *testing.T) {
	views := func(n int) []history.ConversationView {
		var out []history.ConversationView
		for i := 0; i < n; i++ {
			out = append(out, history.ConversationView{ID: fmt.Sprintf("dm:alice:u%d", i), Kind: history.KindDirect})
		}
		out = append(out, history.ConversationView{ID: "g:team", Kind: history.KindGroup, Name: "Team"})
		return out
	}
	at := []string{"9", "8", "7", "6"}
	cases := []struct {
		name  string
		views []history.ConversationView
		limit int
		n     int
		next  history.Position
		more  bool
	}{
		{"Fits", views(1), 3, 2, history.Position{}, false},
		{"Exact", views(2), 3, 3, history.Position{}, false},
		{"More", views(3), 3, 3, history.Position{At: "7", ID: "dm:alice:u2"}, true},
		{"One", views(1), 1, 1, history.Position{At: "9", ID: "dm:alice:u0"}, true},
		{"None", nil, 3, 0, history.Position{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, next, more := history.Page("alice", tc.views, at[:len(tc.views)], tc.limit)
			if len(page) != tc.n || next != tc.next || more != tc.more {
				t.Fatalf("Page = %d views, %+v, %v; want %d, %+v, %v", len(page), next, more, tc.n, tc.next, tc.more)
			}
			for _, v := range page {
				if (v.Kind == history.KindDirect && (v.Peer == "" || v.Name != v.Peer)) || (v.Kind == history.KindGroup && v.Group != "team") {
					t.Fatalf("parties not set: %+v", v)
				}
			}
		})
	}
}
