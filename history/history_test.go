package history_test

import (
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

// tableCase is one case of a table test of a function of one argument: its
// name, the argument and the result wanted.
type tableCase[In any, Out comparable] struct {
	name string
	in   In
	want Out
}

// runTable runs f (named fname in failures) on each case's argument in a
// subtest named after the case, and fails it unless f returns the case's want.
func runTable[In any, Out comparable](t *testing.T, fname string, f func(In) Out, cases []tableCase[In, Out]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := f(tc.in); got != tc.want {
				t.Fatalf("%s(%s) = %+v, want %+v", fname, show(tc.in), got, tc.want)
			}
		})
	}
}

// show formats a table argument for a failure: an error as its text, any
// other value as Go syntax.
func show(v any) string {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	return fmt.Sprintf("%#v", v)
}

func TestErrorCodeAndMessage(t *testing.T) {
	notFound := history.Errorf(history.ENOTFOUND, "group %q not found", "team")
	type coded struct{ code, message string }
	codeAndMessage := func(err error) coded { return coded{history.ErrorCode(err), history.ErrorMessage(err)} }
	runTable(t, "ErrorCode, ErrorMessage", codeAndMessage, []tableCase[error, coded]{
		{"Nil", nil, coded{"", "the message store is unavailable, try again"}},
		{"Error", notFound, coded{history.ENOTFOUND, `group "team" not found`}},
		{"Wrapped", fmt.Errorf("load group: %w", notFound), coded{history.ENOTFOUND, `group "team" not found`}},
		{"Joined", errors.Join(errors.New("other"), history.Errorf(history.ECONFLICT, "taken")), coded{history.ECONFLICT, "taken"}},
		{"Plain", errors.New("dial tcp: connection refused"), coded{history.EUNAVAILABLE, "the message store is unavailable, try again"}},
	})
}

func TestErrorString(t *testing.T) {
	e := history.Errorf(history.EINVALID, "role must be %q", "member")
	if got, want := e.Error(), `invalid: role must be "member"`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestTranslate(t *testing.T) {
	noRows := errors.New("no rows")
	other := errors.New("disk full")
	conflict := history.Errorf(history.ECONFLICT, "taken")
	cases := []struct {
		name string
		err  error
		code string
		ok   bool
	}{
		{"Nil", nil, "", true},
		{"Error", fmt.Errorf("wrapped: %w", conflict), history.ECONFLICT, true},
		{"NoRows", fmt.Errorf("scan: %w", noRows), history.ENOTFOUND, true},
		{"Other", other, history.EUNAVAILABLE, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := history.Translate(tc.err, noRows)
			if ok != tc.ok || history.ErrorCode(out) != tc.code {
				t.Fatalf("Translate(%v) = %v, %v; want code %q, %v", tc.err, out, ok, tc.code, tc.ok)
			}
			if !ok && out != tc.err {
				t.Fatalf("Translate(%v) changed an error it does not handle: %v", tc.err, out)
			}
		})
	}
}

func TestValidText(t *testing.T) {
	runTable(t, "ValidText", history.ValidText, []tableCase[string, bool]{
		{"Empty", "", true},
		{"ASCII", "hello", true},
		{"Unicode", "héllo 世界 🙂", true},
		{"Controls", "a\tb\nc\x01", true},
		{"Replacement", "\ufffd", true},
		{"NUL", "a\x00b", false},
		{"OnlyNUL", "\x00", false},
		{"TrailingNUL", "x\x00", false},
		{"InvalidUTF8", "a\xffb", false},
		{"Truncated", "\xe4\xb8", false},
		{"Surrogate", "\xed\xa0\x80", false},
	})
}

func TestValidIDs(t *testing.T) {
	max := strings.Repeat("a", history.MaxIDLen)
	type validAs struct{ user, device, group bool }
	valid := func(id string) validAs {
		return validAs{history.ValidUserID(id), history.ValidDeviceID(id), history.ValidGroupID(id)}
	}
	runTable(t, "ValidUserID, ValidDeviceID, ValidGroupID", valid, []tableCase[string, validAs]{
		{"Empty", "", validAs{false, false, false}},
		{"OneChar", "a", validAs{true, true, true}},
		{"OneDigit", "7", validAs{true, true, true}},
		{"MaxLen", max, validAs{true, true, true}},
		{"TooLong", max + "a", validAs{false, false, false}},
		{"AllowedChars", "AZaz09._-", validAs{true, true, true}},
		{"At", "alice@example.com", validAs{true, false, false}},
		{"OnlyAt", "@", validAs{true, false, false}},
		{"OnlyDot", ".", validAs{true, true, true}},
		{"Space", "al ice", validAs{false, false, false}},
		{"Slash", "a/b", validAs{false, false, false}},
		{"Plus", "+", validAs{false, false, false}},
		{"Hash", "#", validAs{false, false, false}},
		{"Colon", "a:b", validAs{false, false, false}},
		{"Star", "b*b", validAs{false, false, false}},
		{"Dollar", "$SYS", validAs{false, false, false}},
		{"NUL", "a\x00", validAs{false, false, false}},
		{"Newline", "a\n", validAs{false, false, false}},
		{"NonASCII", "é", validAs{false, false, false}},
		{"NonASCIIShortInRunes", strings.Repeat("é", 40), validAs{false, false, false}},
	})
}

func TestDirectConvID(t *testing.T) {
	cases := []struct {
		name string
		a, b string
		want string
	}{
		{"Ordered", "alice", "bob", "dm:alice:bob"},
		{"Reversed", "bob", "alice", "dm:alice:bob"},
		{"ByteOrderUpperFirst", "alice", "Zed", "dm:Zed:alice"},
		{"Prefix", "al", "alice", "dm:al:alice"},
		{"Digits", "user10", "user9", "dm:user10:user9"},
		{"Same", "alice", "alice", "dm:alice:alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := history.DirectConvID(tc.a, tc.b); got != tc.want {
				t.Fatalf("DirectConvID(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
			}
			if got := history.DirectConvID(tc.b, tc.a); got != tc.want {
				t.Fatalf("DirectConvID(%q, %q) = %q, want %q", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

func TestGroupConvID(t *testing.T) {
	if got := history.GroupConvID("team"); got != "g:team" {
		t.Fatalf("GroupConvID(team) = %q, want g:team", got)
	}
	if got := (history.Group{ID: "team"}).Conv(); got != "g:team" {
		t.Fatalf("Group.Conv() = %q, want g:team", got)
	}
}

func TestParseConvID(t *testing.T) {
	cases := []struct {
		name string
		conv string
		kind string
		a, b string
		ok   bool
	}{
		{"Direct", "dm:alice:bob", history.KindDirect, "alice", "bob", true},
		{"DirectAt", "dm:a@x.com:b@x.com", history.KindDirect, "a@x.com", "b@x.com", true},
		{"Group", "g:team", history.KindGroup, "team", "", true},
		{"GroupMaxLen", "g:" + strings.Repeat("g", 64), history.KindGroup, strings.Repeat("g", 64), "", true},
		{"Unordered", "dm:b:a", "", "", "", false},
		{"SameUser", "dm:a:a", "", "", "", false},
		{"OneUser", "dm:a", "", "", "", false},
		{"EmptyUsers", "dm::", "", "", "", false},
		{"EmptyFirst", "dm::b", "", "", "", false},
		{"EmptySecond", "dm:a:", "", "", "", false},
		{"ThreeUsers", "dm:a:b:c", "", "", "", false},
		{"InvalidUser", "dm:a:b/c", "", "", "", false},
		{"UserTooLong", "dm:a:" + strings.Repeat("b", 65), "", "", "", false},
		{"EmptyGroup", "g:", "", "", "", false},
		{"GroupWithAt", "g:a@b", "", "", "", false},
		{"GroupWithColon", "g:a:b", "", "", "", false},
		{"GroupTooLong", "g:" + strings.Repeat("g", 65), "", "", "", false},
		{"UnknownKind", "x:y", "", "", "", false},
		{"UpperCaseKind", "DM:a:b", "", "", "", false},
		{"NoKind", "alice", "", "", "", false},
		{"Empty", "", "", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kind, a, b, ok := history.ParseConvID(tc.conv)
			if kind != tc.kind || a != tc.a || b != tc.b || ok != tc.ok {
				t.Fatalf("ParseConvID(%q) = %q, %q, %q, %v; want %q, %q, %q, %v",
					tc.conv, kind, a, b, ok, tc.kind, tc.a, tc.b, tc.ok)
			}
		})
	}
}

func TestConvIDRoundTrip(t *testing.T) {
	for _, pair := range [][2]string{{"alice", "bob"}, {"bob", "alice"}, {"Zed", "alice"}, {"a@b.c", "a-b.c"}} {
		conv := history.DirectConvID(pair[0], pair[1])
		kind, a, b, ok := history.ParseConvID(conv)
		if !ok || kind != history.KindDirect || history.DirectConvID(a, b) != conv {
			t.Fatalf("ParseConvID(DirectConvID(%q, %q) = %q) = %q, %q, %q, %v", pair[0], pair[1], conv, kind, a, b, ok)
		}
		if (a != pair[0] || b != pair[1]) && (a != pair[1] || b != pair[0]) {
			t.Fatalf("ParseConvID(%q) users %q, %q; want %q and %q", conv, a, b, pair[0], pair[1])
		}
	}
	conv := history.GroupConvID("team-1")
	if kind, a, b, ok := history.ParseConvID(conv); !ok || kind != history.KindGroup || a != "team-1" || b != "" {
		t.Fatalf("ParseConvID(%q) = %q, %q, %q, %v", conv, kind, a, b, ok)
	}
}

// idTime decodes the millisecond timestamp at the start of an id.
func idTime(t testing.TB, id string) int64 {
	t.Helper()
	enc := base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)
	b, err := enc.DecodeString(id)
	if err != nil {
		t.Fatalf("id %q does not decode: %v", id, err)
	}
	if len(b) != 16 {
		t.Fatalf("id %q decodes to %d bytes, want 16", id, len(b))
	}
	var ms [8]byte
	copy(ms[2:], b[:6])
	return int64(binary.BigEndian.Uint64(ms[:]))
}

func TestNewID(t *testing.T) {
	now := time.Date(2026, 11, 27, 6, 0, 0, 123_000_000, time.UTC)
	id := history.NewID(now)
	if len(id) != 26 {
		t.Fatalf("NewID = %q of length %d, want 26", id, len(id))
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdefghijklmnopqrstuv", c) {
			t.Fatalf("NewID = %q contains %q", id, c)
		}
	}
	if got := idTime(t, id); got != now.UnixMilli() {
		t.Fatalf("NewID(%v) encodes %d ms, want %d", now, got, now.UnixMilli())
	}
	if other := history.NewID(now); other == id {
		t.Fatalf("two ids for the same instant are equal: %q", id)
	}
}

func TestNewIDOrder(t *testing.T) {
	starts := []time.Time{
		time.Unix(0, 0),
		time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 6, 0, 0, 999_000_000, time.UTC),
		time.Date(2099, 12, 31, 23, 59, 59, 998_000_000, time.UTC),
	}
	for _, start := range starts {
		prev := history.NewID(start)
		for i := 1; i <= 100; i++ {
			at := start.Add(time.Duration(i) * 2 * time.Millisecond)
			id := history.NewID(at)
			if id <= prev {
				t.Fatalf("NewID(%v) = %q does not sort after the id made 2ms earlier, %q", at, id, prev)
			}
			prev = id
		}
	}
}

// FuzzParseConvID checks that every id ParseConvID accepts is rebuilt exactly
// from its parts, and that the parts are valid ids.
func FuzzParseConvID(f *testing.F) {
	for _, s := range []string{"dm:alice:bob", "dm:b:a", "dm:a:a", "dm:a", "g:team", "g:", "x:y", "dm:a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, conv string) {
		kind, a, b, ok := history.ParseConvID(conv)
		if !ok {
			if kind != "" || a != "" || b != "" {
				t.Fatalf("ParseConvID(%q) = %q, %q, %q, false; want empty parts", conv, kind, a, b)
			}
			return
		}
		switch kind {
		case history.KindDirect:
			if !history.ValidUserID(a) || !history.ValidUserID(b) || a >= b {
				t.Fatalf("ParseConvID(%q): users %q, %q not valid and ordered", conv, a, b)
			}
			if got := history.DirectConvID(a, b); got != conv {
				t.Fatalf("ParseConvID(%q) = %q, %q; DirectConvID gives %q", conv, a, b, got)
			}
		case history.KindGroup:
			if !history.ValidGroupID(a) || b != "" {
				t.Fatalf("ParseConvID(%q): group %q, %q", conv, a, b)
			}
			if got := history.GroupConvID(a); got != conv {
				t.Fatalf("ParseConvID(%q) = %q; GroupConvID gives %q", conv, a, got)
			}
		default:
			t.Fatalf("ParseConvID(%q): kind %q", conv, kind)
		}
	})
}
