package parley

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// TokenSubject returns the sub claim of a JWT, the user id, without
// verifying the token (the server does that).
func TokenSubject(token string) (string, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return "", errors.New("parley: token is not a JWT (header.payload.signature)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("parley: token payload: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return "", fmt.Errorf("parley: token claims: %w", err)
	}
	if claims.Sub == "" {
		return "", errors.New("parley: token has no sub claim")
	}
	return claims.Sub, nil
}

// tokens hands out the current token: the fixed Options.Token, or the last
// one from Options.TokenSource, refreshed on demand.
type tokens struct {
	fixed  string
	source func(context.Context) (string, error)

	mu      sync.Mutex
	current string
}

func newTokens(o Options) (*tokens, error) {
	if o.Token == "" && o.TokenSource == nil {
		return nil, errors.New("parley: Options.Token or Options.TokenSource is required")
	}
	return &tokens{fixed: strings.TrimSpace(o.Token), source: o.TokenSource}, nil
}

// get returns the current token, asking the source when there is none yet.
func (t *tokens) get(ctx context.Context) (string, error) {
	if t.source == nil {
		return t.fixed, nil
	}
	t.mu.Lock()
	cur := t.current
	t.mu.Unlock()
	if cur != "" {
		return cur, nil
	}
	return t.refresh(ctx)
}

// refresh asks the source for a new token; with a fixed token it returns
// that.
func (t *tokens) refresh(ctx context.Context) (string, error) {
	if t.source == nil {
		return t.fixed, nil
	}
	tok, err := t.source(ctx)
	if err != nil {
		return "", fmt.Errorf("parley: token source: %w", err)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", errors.New("parley: token source returned an empty token")
	}
	t.mu.Lock()
	t.current = tok
	t.mu.Unlock()
	return tok, nil
}
