package send

import (
	"sync"
	"time"
)

// RateLimiter is a per-user token bucket: Rate messages per second with bursts
// of Burst (at least 1). A nil RateLimiter or a Rate of 0 allows everything.
// The zero value is ready to use.
type RateLimiter struct {
	Rate  float64
	Burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter of rate per second with the given burst.
func NewRateLimiter(rate, burst float64) *RateLimiter {
	if burst < 1 {
		burst = 1
	}
	return &RateLimiter{Rate: rate, Burst: burst, buckets: map[string]*bucket{}}
}

// Allow takes one token from user's bucket and reports whether there was one.
func (l *RateLimiter) Allow(user string, now time.Time) bool {
	ok, _ := l.Take(user, now)
	return ok
}

// Take takes one token from user's bucket and reports whether there was one;
// when there was none, wait is how long until the bucket holds one again
// (a request made then is allowed, unless another took the token first).
func (l *RateLimiter) Take(user string, now time.Time) (ok bool, wait time.Duration) {
	if l == nil || l.Rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	if l.Burst < 1 {
		l.Burst = 1
	}
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	b, ok := l.buckets[user]
	if !ok {
		b = &bucket{tokens: l.Burst, last: now}
		l.buckets[user] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * l.Rate
	if b.tokens > l.Burst {
		b.tokens = l.Burst
	}
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.Rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// sweep forgets full buckets so that memory stays bounded by active users.
func (l *RateLimiter) sweep(now time.Time) {
	l.swept = now
	for u, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.Rate >= l.Burst {
			delete(l.buckets, u)
		}
	}
}
