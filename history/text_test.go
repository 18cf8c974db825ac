package history_test

import (
	"testing"

	"github.com/parley-im/parley/history"
)

func TestValidText(t *testing.T) {
	cases := []struct {
		name string
		s    string
		want bool
	}{
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := history.ValidText(tc.s); got != tc.want {
				t.Fatalf("ValidText(%q) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}
