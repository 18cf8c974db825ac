package history_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/parley-im/parley/history"
)

func TestReceiptsRule(t *testing.T) {
	cases := []struct {
		name            string
		kind            string
		member          bool
		members, max    int
		hidden, refused bool
	}{
		{"Direct", history.KindDirect, true, 2, 100, false, false},
		{"DirectBelowMax", history.KindDirect, true, 2, 1, false, false},
		{"GroupAtMax", history.KindGroup, true, 100, 100, false, false},
		{"GroupAboveMax", history.KindGroup, true, 101, 100, true, false},
		{"NotMember", history.KindDirect, false, 2, 100, false, true},
		{"NotMemberOfLargeGroup", history.KindGroup, false, 101, 100, false, true},
		{"NoConversation", "", false, 0, 100, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hidden, err := history.ReceiptsRule("c", tc.kind, tc.member, tc.members, tc.max)
			if hidden != tc.hidden || (history.ErrorCode(err) == history.ENOTMEMBER) != tc.refused || (err != nil) != tc.refused {
				t.Fatalf("ReceiptsRule = %v, %v; want hidden %v, refused %v", hidden, err, tc.hidden, tc.refused)
			}
		})
	}
}

func TestSortReceipts(t *testing.T) {
	rs := []history.Receipt{{User: "bob"}, {User: "Zed"}, {User: "alice"}, {User: "_x"}}
	history.SortReceipts(rs)
	if got := fmt.Sprint(rs); got != "[{Zed 0 0} {_x 0 0} {alice 0 0} {bob 0 0}]" {
		t.Fatalf("sorted %s", got)
	}
}

// TestReceiptsCountLimit: one beyond the limit, never overflowing, at
// least 1.
func TestReceiptsCountLimit(t *testing.T) {
	for _, tc := range []struct{ groupMax, want int }{{100, 101}, {0, 1}, {-5, 1}, {math.MaxInt, 1<<30 + 1}} {
		if got := history.ReceiptsCountLimit(tc.groupMax); got != tc.want {
			t.Errorf("ReceiptsCountLimit(%d) = %d, want %d", tc.groupMax, got, tc.want)
		}
	}
}
