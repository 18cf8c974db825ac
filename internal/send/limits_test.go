package send_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/send"
)

var t0 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

// allowN calls l.Allow(user, now) n times and returns how many were allowed.
func allowN(t testing.TB, l *send.RateLimiter, user string, now time.Time, n int) int {
	t.Helper()
	allowed := 0
	for range n {
		if l.Allow(user, now) {
			allowed++
		}
	}
	return allowed
}

func TestRateLimiterBurst(t *testing.T) {
	l := send.NewRateLimiter(1, 3)
	for i := range 3 {
		if !l.Allow("alice", t0) {
			t.Fatalf("message %d of the burst refused", i+1)
		}
	}
	if l.Allow("alice", t0) {
		t.Fatal("message after the burst allowed")
	}
	if l.Allow("alice", t0.Add(500*time.Millisecond)) {
		t.Fatal("message allowed after half a token refilled")
	}
}

func TestRateLimiterRefill(t *testing.T) {
	l := send.NewRateLimiter(2, 4) // one token every 500ms
	if got := allowN(t, l, "alice", t0, 10); got != 4 {
		t.Fatalf("burst allowed %d, want 4", got)
	}
	cases := []struct {
		name  string
		after time.Duration
		tries int
		want  int
	}{
		{"NothingYet", 250 * time.Millisecond, 1, 0},
		{"OneToken", 500 * time.Millisecond, 3, 1},
		{"TwoTokens", 1500 * time.Millisecond, 3, 2},
		{"CappedAtBurst", time.Hour, 10, 4},
		{"SameInstantEmpty", time.Hour, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := allowN(t, l, "alice", t0.Add(tc.after), tc.tries); got != tc.want {
				t.Fatalf("after %v, %d tries allowed %d, want %d", tc.after, tc.tries, got, tc.want)
			}
		})
	}
}

func TestRateLimiterSteadyRate(t *testing.T) {
	l := send.NewRateLimiter(8, 1)
	allowed := 0
	// 32 messages a second for 10 seconds: every fourth gets through. (The
	// numbers are exact in binary floating point.)
	const step = time.Second / 32
	for i := range 320 {
		if l.Allow("alice", t0.Add(time.Duration(i)*step)) {
			allowed++
		}
	}
	if allowed != 80 {
		t.Fatalf("allowed %d of 320 messages over 10s at 8/s, want 80", allowed)
	}
}

func TestRateLimiterPerUser(t *testing.T) {
	l := send.NewRateLimiter(1, 2)
	if got := allowN(t, l, "alice", t0, 5); got != 2 {
		t.Fatalf("alice allowed %d, want 2", got)
	}
	if got := allowN(t, l, "bob", t0, 5); got != 2 {
		t.Fatalf("bob allowed %d after alice used her burst, want 2", got)
	}
	if l.Allow("alice", t0) {
		t.Fatal("alice allowed again after bob's messages")
	}
}

// TestRateLimiterSweep: forgetting idle users idle buckets must not hand out
// more than a full burst, nor take tokens from active users.
func TestRateLimiterSweep(t *testing.T) {
	l := send.NewRateLimiter(1, 2)
	for i := range 100 {
		l.Allow(fmt.Sprintf("user%d", i), t0)
	}
	if got := allowN(t, l, "alice", t0, 5); got != 2 {
		t.Fatalf("alice allowed %d, want 2", got)
	}
	later := t0.Add(2 * time.Minute) // triggers a sweep
	if got := allowN(t, l, "alice", later, 5); got != 2 {
		t.Fatalf("after a sweep alice allowed %d, want 2", got)
	}
	if got := allowN(t, l, "user1", later, 5); got != 2 {
		t.Fatalf("after a sweep user1 allowed %d, want 2", got)
	}
}

func TestRateLimiterAllowsAll(t *testing.T) {
	cases := []struct {
		name string
		l    *send.RateLimiter
	}{
		{"Nil", nil},
		{"RateZero", send.NewRateLimiter(0, 1)},
		{"RateNegative", send.NewRateLimiter(-1, 1)},
		{"ZeroValue", &send.RateLimiter{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := allowN(t, tc.l, "alice", t0, 1000); got != 1000 {
				t.Fatalf("allowed %d of 1000, want all", got)
			}
		})
	}
}

func TestNewRateLimiterMinimumBurst(t *testing.T) {
	l := send.NewRateLimiter(1, 0)
	if got := allowN(t, l, "alice", t0, 3); got != 1 {
		t.Fatalf("burst 0 allowed %d, want 1 (burst is at least 1)", got)
	}
}

// TestRateLimiterLiteral: RateLimiter has exported Rate and Burst fields, so a
// struct literal must work like NewRateLimiter.
func TestRateLimiterLiteral(t *testing.T) {
	l := &send.RateLimiter{Rate: 1, Burst: 2}
	got := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("Allow on &RateLimiter{Rate: 1, Burst: 2} panicked: %v", r)
			}
		}()
		got = allowN(t, l, "alice", t0, 5)
	}()
	if got != 2 {
		t.Fatalf("allowed %d, want 2", got)
	}
}

// TestRateLimiterTakeWait: a refused Take says how long until a token is
// back, and a Take after that long is allowed.
func TestRateLimiterTakeWait(t *testing.T) {
	l := send.NewRateLimiter(2, 1) // one token every 500ms
	if ok, wait := l.Take("alice", t0); !ok || wait != 0 {
		t.Fatalf("first Take = %v, %v", ok, wait)
	}
	cases := []struct {
		name  string
		after time.Duration
		want  time.Duration
	}{
		{"Empty", 0, 500 * time.Millisecond},
		{"HalfRefilled", 200 * time.Millisecond, 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, wait := l.Take("alice", t0.Add(tc.after))
			if ok || wait < tc.want-time.Millisecond || wait > tc.want+time.Millisecond {
				t.Fatalf("Take = %v, %v; want refused, %v", ok, wait, tc.want)
			}
		})
	}
	if ok, _ := l.Take("alice", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("Take after the wait refused")
	}
	if ok, wait := (*send.RateLimiter)(nil).Take("alice", t0); !ok || wait != 0 {
		t.Fatalf("nil limiter Take = %v, %v", ok, wait)
	}
}
