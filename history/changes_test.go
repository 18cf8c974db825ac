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
