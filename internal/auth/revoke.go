package auth

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
)

// ErrTokenRevoked is wrapped (with ErrTokenInvalid) by Verify for a token
// issued before its user's tokens_valid_after: the account was deleted
// after the token was issued.
var ErrTokenRevoked = errors.New("token revoked")

// DefaultRevocationTTL is the default of Revocations.TTL.
const DefaultRevocationTTL = 5 * time.Second

// Revocations answers whether a user's token is revoked: issued (iat) at or
// before the user's tokens_valid_after (history.Privacy.TokensValidAfter),
// or without iat once the user has one. Answers are kept for TTL; Forget
// drops a user's at once. Safe for concurrent use.
type Revocations struct {
	// Store is asked for tokens_valid_after; required.
	Store history.Privacy
	// TTL is how long an answer is kept; default DefaultRevocationTTL.
	TTL time.Duration

	mu    sync.Mutex
	cache map[string]revocation
}

type revocation struct {
	after time.Time
	until time.Time
}

// Revoked reports whether user's token issued at iat (zero: no iat) is
// revoked. A store that cannot answer revokes nothing: the request then
// fails on the store anyway.
func (r *Revocations) Revoked(user string, iat time.Time) bool {
	now := time.Now()
	r.mu.Lock()
	c, ok := r.cache[user]
	r.mu.Unlock()
	if !ok || now.After(c.until) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		after, err := r.Store.TokensValidAfter(ctx, user)
		cancel()
		if err != nil {
			return false
		}
		ttl := r.TTL
		if ttl <= 0 {
			ttl = DefaultRevocationTTL
		}
		c = revocation{after: after, until: now.Add(ttl)}
		r.mu.Lock()
		if r.cache == nil || len(r.cache) > 100000 {
			r.cache = map[string]revocation{}
		}
		r.cache[user] = c
		r.mu.Unlock()
	}
	if c.after.IsZero() {
		return false
	}
	// iat has whole seconds: a token of the deletion's second is refused.
	return iat.IsZero() || !iat.After(c.after.Truncate(time.Second))
}

// Forget drops the cached answer for user (after its deletion on this node).
func (r *Revocations) Forget(user string) {
	r.mu.Lock()
	delete(r.cache, user)
	r.mu.Unlock()
}
