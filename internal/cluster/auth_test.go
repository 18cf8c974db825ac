package cluster

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// writeFile writes b to a file in a temporary directory and returns its path.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testKeys is an account and one of its users, with a .creds file's
// contents for the user.
type testKeys struct {
	account           nkeys.KeyPair
	user              nkeys.KeyPair
	userPub, userSeed string
	userJWT           string
	creds             []byte
}

func newKeys(t testing.TB) testKeys {
	t.Helper()
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{account: akp, user: ukp, userPub: upub, userSeed: string(useed), userJWT: ujwt, creds: creds}
}

func TestAuthOptions(t *testing.T) {
	k := newKeys(t)
	apub, _ := k.account.PublicKey()
	accountJWT, err := jwt.NewAccountClaims(apub).Encode(k.account)
	if err != nil {
		t.Fatal(err)
	}
	// A user JWT followed by no seed.
	credsNoSeed := k.creds[:strings.Index(string(k.creds), "************************* IMPORTANT")]
	for _, tc := range []struct {
		name     string
		auth     Auth
		opts     int
		contains string // in the error; "" for none
	}{
		{"Zero", Auth{}, 0, ""},
		{"Creds", Auth{CredsFile: writeFile(t, "u.creds", k.creds)}, 1, ""},
		{"NKey", Auth{NKeyFile: writeFile(t, "u.nk", []byte(k.userSeed))}, 1, ""},
		{"TLS", Auth{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, 1, ""},
		{"NKeyAndTLS", Auth{NKeyFile: writeFile(t, "u.nk", []byte(k.userSeed)), TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, 2, ""},
		{"ErrBoth", Auth{CredsFile: "a.creds", NKeyFile: "a.nk"}, 0, "not both"},
		{"ErrCredsMissing", Auth{CredsFile: filepath.Join(t.TempDir(), "missing.creds")}, 0, "missing.creds"},
		{"ErrCredsGarbage", Auth{CredsFile: writeFile(t, "garbage.creds", []byte("hello"))}, 0, "garbage.creds"},
		{"ErrCredsAccountJWT", Auth{CredsFile: writeFile(t, "account.creds", []byte(strings.Replace(string(k.creds), k.userJWT, accountJWT, 1)))}, 0, "no valid user JWT"},
		{"ErrCredsNoSeed", Auth{CredsFile: writeFile(t, "noseed.creds", credsNoSeed)}, 0, "no user NKey seed"},
		{"ErrNKeyMissing", Auth{NKeyFile: filepath.Join(t.TempDir(), "missing.nk")}, 0, "missing.nk"},
		{"ErrNKeyGarbage", Auth{NKeyFile: writeFile(t, "garbage.nk", []byte("SUnot-a-seed"))}, 0, "garbage.nk"},
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
	k, other := newKeys(t), newKeys(t)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Nkeys: []*natsserver.NkeyUser{{Nkey: k.userPub}}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)

	l := &fakeLocal{}
	refused := &Bus{Node: "X", Local: l, ForgetGroup: l.forgetGroup, Log: quiet, Auth: Auth{NKeyFile: writeFile(t, "other.nk", []byte(other.userSeed))}}
	if err := refused.Connect(ns.ClientURL()); err == nil || !strings.Contains(err.Error(), "natsbus: connect") {
		refused.Close()
		t.Fatalf("Connect with an unknown key: %v", err)
	}

	seed := writeFile(t, "node.nk", []byte(k.userSeed))
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
