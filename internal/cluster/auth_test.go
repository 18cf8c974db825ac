package cluster

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley-im/parley/internal/testkit"
)

func TestAuthOptions(t *testing.T) {
	k := testkit.NewNATSUser(t)
	accountJWT, err := jwt.NewAccountClaims(k.AccountPub).Encode(k.Account)
	if err != nil {
		t.Fatal(err)
	}
	// A user JWT followed by no seed.
	credsNoSeed := k.Creds[:strings.Index(string(k.Creds), "************************* IMPORTANT")]
	for _, tc := range []struct {
		name     string
		auth     Auth
		opts     int
		contains string // in the error; "" for none
	}{
		{"Zero", Auth{}, 0, ""},
		{"Creds", Auth{CredsFile: testkit.WriteFile(t, "u.creds", k.Creds)}, 1, ""},
		{"NKey", Auth{NKeyFile: testkit.WriteFile(t, "u.nk", []byte(k.Seed))}, 1, ""},
		{"TLS", Auth{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, 1, ""},
		{"NKeyAndTLS", Auth{NKeyFile: testkit.WriteFile(t, "u.nk", []byte(k.Seed)), TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, 2, ""},
		{"ErrBoth", Auth{CredsFile: "a.creds", NKeyFile: "a.nk"}, 0, "not both"},
		{"ErrCredsMissing", Auth{CredsFile: filepath.Join(t.TempDir(), "missing.creds")}, 0, "missing.creds"},
		{"ErrCredsGarbage", Auth{CredsFile: testkit.WriteFile(t, "garbage.creds", []byte("hello"))}, 0, "garbage.creds"},
		{"ErrCredsAccountJWT", Auth{CredsFile: testkit.WriteFile(t, "account.creds", []byte(strings.Replace(string(k.Creds), k.JWT, accountJWT, 1)))}, 0, "no valid user JWT"},
		{"ErrCredsNoSeed", Auth{CredsFile: testkit.WriteFile(t, "noseed.creds", credsNoSeed)}, 0, "no user NKey seed"},
		{"ErrNKeyMissing", Auth{NKeyFile: filepath.Join(t.TempDir(), "missing.nk")}, 0, "missing.nk"},
		{"ErrNKeyGarbage", Auth{NKeyFile: testkit.WriteFile(t, "garbage.nk", []byte("SUnot-a-seed"))}, 0, "garbage.nk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tc.auth.Options()
			if tc.contains == "" {
				if err != nil || len(opts) != tc.opts {
					t.Fatalf("Options = %d options, %v; want %d", len(opts), err, tc.opts)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "natsbus: ") || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Options = %v, want an error containing %q", err, tc.contains)
			}
		})
	}
}

// TestBusNKey: a bus authenticates with an NKey seed file to a server that
// lists the key, and is refused with another key.
func TestBusNKey(t *testing.T) {
	k, other := testkit.NewNATSUser(t), testkit.NewNATSUser(t)
	ns := testkit.RunNATS(t, &natsserver.Options{Nkeys: []*natsserver.NkeyUser{{Nkey: k.Pub}}})

	l := &fakeLocal{}
	refused := &Bus{Node: "X", Local: l, ForgetGroup: l.forgetGroup, Log: quiet, Auth: Auth{NKeyFile: testkit.WriteFile(t, "other.nk", []byte(other.Seed))}}
	if err := refused.Connect(ns.ClientURL()); err == nil || !strings.Contains(err.Error(), "natsbus: connect") {
		refused.Close()
		t.Fatalf("Connect with an unknown key: %v", err)
	}

	seed := testkit.WriteFile(t, "node.nk", []byte(k.Seed))
	auth := func(b *Bus, _ *fakeLocal) { b.Auth = Auth{NKeyFile: seed} }
	a, _ := connect(t, ns.ClientURL(), "A", nil, auth)
	b, lb := connect(t, ns.ClientURL(), "B", nil, auth)
	subscribe(t, b, "bob", true)
	a.Deliver([]string{"bob"}, "dm:alice:bob", 1, 1, []byte(`secured`))
	lb.until(t, "a delivery over an authenticated connection", func(l *fakeLocal) bool {
		return len(l.deliveries) == 1 && l.deliveries[0].payload == "secured"
	})
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://parley:s3cret@10.0.0.1:4222", "nats://parley:xxxxx@10.0.0.1:4222"},
		{"nats://s3cret@10.0.0.1:4222", "nats://xxxxx@10.0.0.1:4222"},
		{"nats://a:s3cret@h1:4222, nats://h2:4222,nats://s3cret@h3", "nats://a:xxxxx@h1:4222, nats://h2:4222,nats://xxxxx@h3"},
		{"not a url", "not a url"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
