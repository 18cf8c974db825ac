package history_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
)

func TestSearchText(t *testing.T) {
	cases := []tableCase[string, string]{
		{"String", `"hello world"`, "hello world"},
		{"ObjectValuesNotKeys", `{"text":"hi","caption":"there","n":3,"ok":true}`, "hi\nthere"},
		{"Nested", `{"a":{"b":["x",{"c":"y"}]},"d":null}`, "x\ny"},
		{"KeyAfterArray", `{"a":["x"],"b":"y"}`, "x\ny"},
		{"NUL", `{"t":"a\u0000b"}`, "ab"},
		{"NotJSON", `nope`, ""},
		{"Null", `null`, ""},
	}
	runTable(t, "SearchText", func(s string) string { return history.SearchText(json.RawMessage(s)) }, cases)
}

func TestSearchTerms(t *testing.T) {
	join := func(q string) string {
		terms, err := history.SearchTerms(q)
		if err != nil {
			return "error " + history.ErrorCode(err)
		}
		return strings.Join(terms, "|")
	}
	cases := []tableCase[string, string]{
		{"Words", "Meet at the HARBOUR", "meet|at|the|harbour"},
		{"Punctuation", "e-mail: o'clock!", "e|mail|o|clock"},
		{"Unicode", "Ünïcode 東京", "ünïcode|東京"},
		{"Empty", "  !! ", "error invalid"},
		{"TooMany", "a b c d e f g h i", "error invalid"},
		{"Long", strings.Repeat("é", 40), strings.Repeat("é", 32)},
	}
	runTable(t, "SearchTerms", join, cases)
	if got := history.TSQuery([]string{"a", "b"}); got != "'a' & 'b':*" {
		t.Errorf("TSQuery = %s", got)
	}
	if got := history.FTSQuery([]string{"a", "b"}); got != `"a" "b"*` {
		t.Errorf("FTSQuery = %s", got)
	}
}

func TestSnippet(t *testing.T) {
	show := func(in [2]string) string {
		s, hs := history.Snippet(in[0], strings.Fields(in[1]))
		for i := len(hs) - 1; i >= 0; i-- {
			s = s[:hs[i].Start] + "[" + s[hs[i].Start:hs[i].End] + "]" + s[hs[i].End:]
		}
		return s
	}
	long := strings.Repeat("x ", 100)
	cases := []tableCase[[2]string, string]{
		{"Word", [2]string{"Meet at the Harbour", "harbour"}, "Meet at the [Harbour]"},
		{"PrefixLastOnly", [2]string{"harbours and harbour", "harbour"}, "[harbours] and [harbour]"},
		{"NotPrefixOfFirst", [2]string{"meeting meet harbour", "meet harb"}, "meeting [meet] [harbour]"},
		{"NoMatch", [2]string{"stemmed words", "word"}, "stemmed [words]"},
		{"Cut", [2]string{long + "needle " + long, "needle"}, long[len(long)-60:] + "[needle]" + (" " + long)[:120]},
	}
	runTable(t, "Snippet", show, cases)
}

func TestSearchCursor(t *testing.T) {
	p := history.SearchPosition{TS: 1234567, Conv: "dm:a:b", Seq: 9}
	got, ok, err := history.ParseSearchCursor(p.Cursor())
	if err != nil || !ok || got != p {
		t.Fatalf("round trip: %+v %v %v", got, ok, err)
	}
	for _, bad := range []string{"x", "MTIz", p.Cursor() + "!"} {
		if _, _, err := history.ParseSearchCursor(bad); history.ErrorCode(err) != history.EINVALID {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestRetentionRules(t *testing.T) {
	h := time.Hour
	cases := []tableCase[[2]time.Duration, time.Duration]{
		{"None", [2]time.Duration{0, 0}, 0},
		{"GlobalOnly", [2]time.Duration{h, 0}, h},
		{"ConvOnly", [2]time.Duration{0, h}, h},
		{"ConvShorter", [2]time.Duration{2 * h, h}, h},
		{"GlobalShorter", [2]time.Duration{h, 2 * h}, h},
	}
	runTable(t, "EffectiveRetention", func(d [2]time.Duration) time.Duration { return history.EffectiveRetention(d[0], d[1]) }, cases)

	now := time.Now()
	old, recent := now.Add(-2*h), now.Add(-time.Minute)
	prefix := func(ts []time.Time) string { return fmt.Sprint(history.ExpirePrefix(ts, now.Add(-h))) }
	for want, ts := range map[string][]time.Time{
		"0": {recent, old},
		"2": {old, old, recent, old},
		"3": {old, old, old},
	} {
		if got := prefix(ts); got != want {
			t.Errorf("ExpirePrefix = %s, want %s", got, want)
		}
	}
	if err := history.MayChangeRetention(history.KindGroup, history.RoleMember, "g:x"); history.ErrorCode(err) != history.ENOTALLOWED {
		t.Errorf("group member: %v", err)
	}
	if err := history.MayChangeRetention(history.KindDirect, "", "dm:a:b"); err != nil {
		t.Errorf("direct party: %v", err)
	}
	type change struct {
		member     bool
		kind, role string
		d          time.Duration
	}
	runTable(t, "RetentionRule", func(c change) string {
		secs, err := history.RetentionRule("g:x", c.member, c.kind, c.role, c.d)
		switch {
		case err != nil:
			return history.ErrorCode(err)
		case secs == nil:
			return "none"
		}
		return fmt.Sprint(*secs)
	}, []tableCase[change, string]{
		{"DirectParty", change{true, history.KindDirect, "", 90 * time.Minute}, "5400"},
		{"WholeSeconds", change{true, history.KindGroup, history.RoleAdmin, 1500 * time.Millisecond}, "1"},
		{"Off", change{true, history.KindGroup, history.RoleOwner, 0}, "none"},
		{"ErrNotAllowed", change{true, history.KindGroup, history.RoleMember, time.Hour}, history.ENOTALLOWED},
		{"ErrNotMember", change{false, "", "", time.Hour}, history.ENOTMEMBER},
	})
}
