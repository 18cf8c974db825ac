package history_test

import (
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
