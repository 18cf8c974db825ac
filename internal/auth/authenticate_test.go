package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/testkit"
)

// setup returns an Authorizer with an HS256 secret and its Tokens.
func setup(t testing.TB, mod func(*auth.Authorizer)) (*auth.Authorizer, *auth.Tokens) {
	t.Helper()
	tokens := &auth.Tokens{Secret: []byte("a secret of at least thirty-two bytes")}
	a := &auth.Authorizer{Tokens: tokens}
	if mod != nil {
		mod(a)
	}
	return a, tokens
}

func TestAuthenticate(t *testing.T) {
	acl := parseACL(t, "* readwrite chat/#\n")
	a, tokens := setup(t, func(a *auth.Authorizer) { a.ACL = acl })
	alice := mustSign(t, tokens, "alice", time.Hour)
	expired := mustSign(t, tokens, "alice", -time.Hour)
	forged := mustSign(t, &auth.Tokens{Secret: []byte("another secret of thirty-two bytes")}, "alice", time.Hour)
	for _, tc := range []struct {
		name   string
		c      auth.Connect
		id     string
		r      auth.Refusal
		reason string
	}{
		{"OK", auth.Connect{ClientID: "alice", Password: []byte(alice), HasPassword: true}, "alice", auth.Accepted, ""},
		{"OKDevice", auth.Connect{ClientID: "alice/phone", Username: []byte("alice"), HasUsername: true, Password: []byte(alice), HasPassword: true}, "alice/phone", auth.Accepted, ""},
		{"OKWill", auth.Connect{ClientID: "alice/w", Password: []byte(alice), HasPassword: true, HasWill: true, WillTopic: "chat/room"}, "alice/w", auth.Accepted, ""},
		{"ErrNoToken", auth.Connect{ClientID: "alice"}, "alice", auth.BadCredentials, "no_token"},
		{"ErrEmptyToken", auth.Connect{ClientID: "alice", HasPassword: true}, "alice", auth.BadCredentials, "no_token"},
		{"ErrExpired", auth.Connect{ClientID: "alice", Password: []byte(expired), HasPassword: true}, "alice", auth.BadCredentials, "token_expired"},
		{"ErrForged", auth.Connect{ClientID: "alice", Password: []byte(forged), HasPassword: true}, "alice", auth.BadCredentials, "token_invalid"},
		{"ErrUsername", auth.Connect{ClientID: "alice", Username: []byte("bob"), HasUsername: true, Password: []byte(alice), HasPassword: true}, "alice", auth.NotAuthorized, "username_mismatch"},
		{"ErrClientID", auth.Connect{ClientID: "bob", Password: []byte(alice), HasPassword: true}, "bob", auth.BadClientID, "client_id"},
		{"ErrWill", auth.Connect{ClientID: "alice/x", Password: []byte(alice), HasPassword: true, HasWill: true, WillTopic: "im/send/u/bob"}, "alice/x", auth.NotAuthorized, "will_topic"},
		{"ErrAnonymousClosed", auth.Connect{ClientID: "guest"}, "guest", auth.BadCredentials, "no_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Session = tc.name
			id, r, reason, _ := a.Authenticate(tc.c)
			if id != tc.id || r != tc.r || reason != tc.reason {
				t.Fatalf("Authenticate = %q, %v, %q; want %q, %v, %q", id, r, reason, tc.id, tc.r, tc.reason)
			}
		})
	}
}

// TestAuthenticateAnonymous: in open mode a client without credentials gets
// a client id of its own namespace, its will is checked, and Parley's
// topics stay closed to it; a client with a token is checked as usual.
func TestAuthenticateAnonymous(t *testing.T) {
	a, tokens := setup(t, func(a *auth.Authorizer) { a.Anonymous = true })
	for _, tc := range []struct {
		name   string
		c      auth.Connect
		id     string
		r      auth.Refusal
		reason string
	}{
		{"OK", auth.Connect{ClientID: "alice"}, auth.AnonPrefix + "alice", auth.Accepted, ""},
		{"OKWill", auth.Connect{ClientID: "sensor", HasWill: true, WillTopic: "sensors/gone"}, auth.AnonPrefix + "sensor", auth.Accepted, ""},
		{"ErrWill", auth.Connect{ClientID: "sensor", HasWill: true, WillTopic: "im/send/u/bob"}, auth.AnonPrefix + "sensor", auth.NotAuthorized, "will_topic"},
		{"User", auth.Connect{ClientID: "bob", Password: []byte(mustSign(t, tokens, "bob", time.Hour)), HasPassword: true}, "bob", auth.Accepted, ""},
		{"ErrUsernameOnly", auth.Connect{ClientID: "bob", Username: []byte("bob"), HasUsername: true}, "bob", auth.BadCredentials, "no_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Session = tc.name
			id, r, reason, _ := a.Authenticate(tc.c)
			if id != tc.id || r != tc.r || reason != tc.reason {
				t.Fatalf("Authenticate = %q, %v, %q; want %q, %v, %q", id, r, reason, tc.id, tc.r, tc.reason)
			}
		})
	}
	anon := auth.AnonPrefix + "alice"
	if !auth.IsAnonymous(anon) || auth.IsAnonymous("alice") {
		t.Fatal("IsAnonymous")
	}
	for _, tc := range []struct {
		topic string
		write bool
		ok    bool
	}{
		{"im/inbox/" + anon, false, false},
		{"im/send/u/bob", true, false},
		{"sensors/1", true, true},
		{"sensors/#", false, true},
	} {
		if got := a.Allow(anon, tc.topic, tc.write); got != tc.ok {
			t.Errorf("anonymous Allow(%q, write %v) = %v, want %v", tc.topic, tc.write, got, tc.ok)
		}
	}
	// With an ACL, anonymous clients get the "*" rules and nothing of a
	// user's.
	a.ACL = parseACL(t, "* read public/#\nalice readwrite private/alice\n")
	for _, tc := range []struct {
		id, topic string
		write, ok bool
	}{
		{anon, "public/x", false, true},
		{anon, "public/x", true, false},
		{anon, "private/alice", true, false},
		{"alice", "private/alice", true, true},
	} {
		if got := a.Allow(tc.id, tc.topic, tc.write); got != tc.ok {
			t.Errorf("Allow(%s, %q, write %v) with an ACL = %v, want %v", tc.id, tc.topic, tc.write, got, tc.ok)
		}
	}
}

// TestMaxDevices: the sessions connected and the CONNECTs just admitted
// count against MaxDevices; a CONNECT under a client id already connected
// takes the session over and does not count; Gone of a session that was
// taken over keeps the new one.
func TestMaxDevices(t *testing.T) {
	a, tokens := setup(t, func(a *auth.Authorizer) { a.MaxDevices = 2 })
	tok := mustSign(t, tokens, "alice", time.Hour)
	connect := func(session any, id string) auth.Refusal {
		t.Helper()
		_, r, _, _ := a.Authenticate(auth.Connect{Session: session, ClientID: id, Password: []byte(tok), HasPassword: true})
		return r
	}
	if r := connect(1, "alice/a"); r != auth.Accepted {
		t.Fatalf("first device: %v", r)
	}
	a.Established(1, "alice/a")
	if r := connect(2, "alice/b"); r != auth.Accepted {
		t.Fatalf("second device: %v", r)
	}
	// alice/b is admitted, not yet established: it counts.
	if r := connect(3, "alice/c"); r != auth.TooManyDevices {
		t.Fatalf("third device while the second connects: %v", r)
	}
	a.Established(2, "alice/b")
	if n := a.Devices("alice"); n != 2 {
		t.Fatalf("Devices = %d, want 2", n)
	}
	if r := connect(3, "alice/c"); r != auth.TooManyDevices {
		t.Fatalf("third device: %v", r)
	}
	// alice/a reconnects: a takeover, not a third device.
	if r := connect(4, "alice/a"); r != auth.Accepted {
		t.Fatalf("takeover: %v", r)
	}
	a.Established(4, "alice/a")
	a.Gone(1, "alice/a") // the old session goes after the takeover
	if n := a.Devices("alice"); n != 2 {
		t.Fatalf("Devices after a takeover = %d, want 2", n)
	}
	a.Gone(4, "alice/a")
	a.Gone(2, "alice/b")
	if n := a.Devices("alice"); n != 0 {
		t.Fatalf("Devices after both left = %d, want 0", n)
	}
	if r := connect(5, "alice/c"); r != auth.Accepted {
		t.Fatalf("a device after the others left: %v", r)
	}
	// Anonymous sessions are not counted.
	a.Established("anon", auth.AnonPrefix+"alice")
	if n := a.Devices(auth.AnonPrefix + "alice"); n != 0 {
		t.Fatalf("anonymous sessions counted: %d", n)
	}

	t.Run("Default", func(t *testing.T) {
		a, tokens := setup(t, nil)
		tok := mustSign(t, tokens, "bob", time.Hour)
		for i := range auth.DefaultMaxDevices + 1 {
			_, r, _, _ := a.Authenticate(auth.Connect{Session: i, ClientID: fmt.Sprintf("bob/%d", i), Password: []byte(tok), HasPassword: true})
			if want := i < auth.DefaultMaxDevices; (r == auth.Accepted) != want {
				t.Fatalf("device %d: %v", i+1, r)
			}
		}
	})
}

// countingStore counts SharesConversation calls and fails them while down.
type countingStore struct {
	history.Store
	mu    sync.Mutex
	calls int
	down  bool
}

func (s *countingStore) SharesConversation(ctx context.Context, a, b string) (bool, error) {
	s.mu.Lock()
	s.calls++
	down := s.down
	s.mu.Unlock()
	if down {
		return false, errors.New("connection refused")
	}
	return s.Store.SharesConversation(ctx, a, b)
}

// TestPresenceContacts: a user reads the presence of the users it shares a
// conversation with, as the store says, and the answer is kept for a while.
func TestPresenceContacts(t *testing.T) {
	ctx := context.Background()
	s := testkit.OpenSQLite(t)
	now := time.Now()
	if _, _, err := s.Append(ctx, history.NewMessage{Conv: history.DirectConvID("alice", "bob"), ID: history.NewID(now), From: "alice", TS: now, Type: history.TypeText, Body: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: s}
	a := &auth.Authorizer{Store: cs}
	for _, tc := range []struct {
		id, topic string
		ok        bool
	}{
		{"alice", "im/presence/alice", true},
		{"alice/phone", "im/presence/bob", true},
		{"bob", "im/presence/alice", true},
		{"alice", "im/presence/carol", false},
		{"alice", "im/presence/+", false},
	} {
		if got := a.Allow(tc.id, tc.topic, false); got != tc.ok {
			t.Errorf("Allow(%s, %q) = %v, want %v", tc.id, tc.topic, got, tc.ok)
		}
	}
	cs.mu.Lock()
	calls := cs.calls
	cs.down = true
	cs.mu.Unlock()
	if calls != 2 {
		t.Fatalf("%d store calls, want 2 (alice-bob once, whichever asks, and alice-carol)", calls)
	}
	// Cached answers hold while the store is down; a new question fails
	// closed.
	if !a.Allow("bob", "im/presence/alice", false) || a.Allow("alice", "im/presence/carol", false) {
		t.Fatal("cached answers changed")
	}
	if a.Allow("alice", "im/presence/dave", false) {
		t.Fatal("presence allowed while the store is down")
	}
	if (&auth.Authorizer{}).Allow("alice", "im/presence/bob", false) {
		t.Fatal("presence of another user allowed without a store")
	}
}

func TestValidClientID(t *testing.T) {
	for _, tc := range []struct {
		id, user string
		ok       bool
	}{
		{"alice", "alice", true},
		{"alice/phone-1", "alice", true},
		{"alice/", "alice", false},
		{"alice/a/b", "alice", false},
		{"bob", "alice", false},
		{"alice2", "alice", false},
		{"bob/alice", "alice", false},
	} {
		if got := auth.ValidClientID(tc.id, tc.user); got != tc.ok {
			t.Errorf("ValidClientID(%q, %q) = %v, want %v", tc.id, tc.user, got, tc.ok)
		}
	}
}
