package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/auth"
)

// TestAuthenticateText: every refusal comes with a text for the client's
// CONNACK and the log that tells an expired token from a forged or
// malformed one.
func TestAuthenticateText(t *testing.T) {
	a, tokens := setup(t, func(a *auth.Authorizer) { a.MaxDevices = 1 })
	alice := mustSign(t, tokens, "alice", time.Hour)
	expired := mustSign(t, tokens, "alice", -time.Hour)
	forged := mustSign(t, &auth.Tokens{Secret: []byte("another secret of thirty-two bytes")}, "alice", time.Hour)
	if _, r, _, _ := a.Authenticate(auth.Connect{Session: 1, ClientID: "alice/a", Password: []byte(alice), HasPassword: true}); r != auth.Accepted {
		t.Fatalf("first device refused: %v", r)
	}
	for _, tc := range []struct {
		name string
		c    auth.Connect
		text string
	}{
		{"ErrNoToken", auth.Connect{ClientID: "alice"}, "no token: the password must be a token for the user"},
		{"ErrExpired", auth.Connect{ClientID: "alice", Password: []byte(expired), HasPassword: true}, "token expired: get a new token"},
		{"ErrForged", auth.Connect{ClientID: "alice", Password: []byte(forged), HasPassword: true}, "bad signature: the token was not signed with this server's secret or key"},
		{"ErrMalformed", auth.Connect{ClientID: "alice", Password: []byte("not.a.token"), HasPassword: true}, "token invalid: token is malformed: "},
		{"ErrUsername", auth.Connect{ClientID: "alice", Username: []byte("bob"), HasUsername: true, Password: []byte(alice), HasPassword: true}, `user name "bob" is not the token's user "alice"`},
		{"ErrClientID", auth.Connect{ClientID: "bob", Password: []byte(alice), HasPassword: true}, `client id "bob" is neither alice nor alice/DEVICE`},
		{"ErrWill", auth.Connect{ClientID: "alice/x", Password: []byte(alice), HasPassword: true, HasWill: true, WillTopic: "im/send/u/bob"}, `will topic "im/send/u/bob" not allowed`},
		{"ErrTooManyDevices", auth.Connect{Session: 2, ClientID: "alice/b", Password: []byte(alice), HasPassword: true}, "too many devices: alice has 1 connected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r, _, text := a.Authenticate(tc.c)
			if r == auth.Accepted || !strings.HasPrefix(text, tc.text) {
				t.Fatalf("Authenticate = %v, %q; want a refusal with %q", r, text, tc.text)
			}
		})
	}
}

func TestTokenText(t *testing.T) {
	tokens := &auth.Tokens{Secret: []byte("a secret of at least thirty-two bytes")}
	expired := mustSign(t, tokens, "alice", -time.Hour)
	forged := mustSign(t, &auth.Tokens{Secret: []byte("another secret of thirty-two bytes")}, "alice", time.Hour)
	for _, tc := range []struct{ name, token, want string }{
		{"Expired", expired, "token expired"},
		{"Forged", forged, "bad signature: "},
		{"Malformed", "abc", "token invalid: token is malformed: "},
		{"AlgNone", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.", "token invalid: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tokens.Verify(tc.token)
			if got := auth.TokenText(err); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("TokenText(%v) = %q, want %q...", err, got, tc.want)
			}
		})
	}
}
