package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

// mutualTLSNATS starts a NATS server that admits the NKey user pub over
// mutual TLS: its certificate and the clients' are issued by pki.
func mutualTLSNATS(t *testing.T, pki *testkit.PKI, pub string) *natsserver.Server {
	t.Helper()
	return testkit.RunNATS(t, &natsserver.Options{
		Nkeys: []*natsserver.NkeyUser{{Nkey: pub}},
		TLS:   true, TLSVerify: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pki.Issue(t, x509.ExtKeyUsageServerAuth)},
			ClientCAs:    pki.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		},
	})
}

// userSeed returns a new NKey user's public key and seed.
func userSeed(t *testing.T) (string, []byte) {
	t.Helper()
	u := testkit.NewNATSUser(t)
	return u.Pub, []byte(u.Seed)
}

// operatorNATS starts a NATS server in operator (JWT) mode with one account
// and returns it with the contents of a .creds file of a user of that
// account.
func operatorNATS(t *testing.T) (*natsserver.Server, []byte) {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	op, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	u := testkit.NewNATSUser(t)
	ajwt, err := jwt.NewAccountClaims(u.AccountPub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &natsserver.MemAccResolver{}
	if err := resolver.Store(u.AccountPub, ajwt); err != nil {
		t.Fatal(err)
	}
	return testkit.RunNATS(t, &natsserver.Options{TrustedOperators: []*jwt.OperatorClaims{op}, AccountResolver: resolver}), u.Creds
}

// crossNode checks that two nodes started with mod deliver to each other.
func crossNode(t *testing.T, mod func(*broker.Options)) {
	t.Helper()
	url := pgtest.DB(t)
	var nodes []*env
	for i := 0; i < 2; i++ {
		nodes = append(nodes, setup(t, testkit.OpenPostgres(t, url), func(o *broker.Options) {
			o.NodeID = fmt.Sprintf("node%d", i)
			mod(o)
		}))
	}
	bob := nodes[1].dial("bob", "bob", dialOpts{})
	// Wait for node 0 to learn that bob is on node 1 (heartbeat or presence).
	time.Sleep(300 * time.Millisecond)
	alice := nodes[0].dial("alice", "alice", dialOpts{noSub: true})
	alice.send("im/send/u/bob", 1, `{"body":"across a secured NATS"}`)
	if ev := bob.nextKind("message"); ev.Seq != 1 {
		t.Fatalf("bob got %+v", ev)
	}
}

// TestClusterSecuredNATS: nodes authenticate to NATS with an NKey over
// mutual TLS, or with a .creds file against a server in operator mode, and
// deliver to each other.
func TestClusterSecuredNATS(t *testing.T) {
	t.Run("NKeyOverMutualTLS", func(t *testing.T) {
		pki := testkit.NewPKI(t)
		pub, seed := userSeed(t)
		ns := mutualTLSNATS(t, pki, pub)
		seedFile := testkit.WriteFile(t, "node.nk", seed)
		client := pki.Issue(t, x509.ExtKeyUsageClientAuth)
		crossNode(t, func(o *broker.Options) {
			o.NATSURL = ns.ClientURL()
			o.NATSNKeyFile = seedFile
			o.NATSTLSConfig = &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}
		})
	})
	t.Run("Creds", func(t *testing.T) {
		ns, creds := operatorNATS(t)
		credsFile := testkit.WriteFile(t, "node.creds", creds)
		crossNode(t, func(o *broker.Options) {
			o.NATSURL = ns.ClientURL()
			o.NATSCredsFile = credsFile
		})
	})
}

// TestClusterNATSRefused: a node whose NATS credentials or TLS settings are
// wrong does not start, with an error that says why; unreadable files are
// refused by New.
func TestClusterNATSRefused(t *testing.T) {
	pki := testkit.NewPKI(t)
	pub, seed := userSeed(t)
	_, otherSeed := userSeed(t)
	ns := mutualTLSNATS(t, pki, pub)
	opServer, creds := operatorNATS(t)
	seedFile, otherSeedFile := testkit.WriteFile(t, "node.nk", seed), testkit.WriteFile(t, "other.nk", otherSeed)
	client := pki.Issue(t, x509.ExtKeyUsageClientAuth)
	goodTLS := &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}
	otherPKI := testkit.NewPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.creds")
	cases := []struct {
		name     string
		url      string
		creds    string
		nkey     string
		tls      *tls.Config
		atNew    bool   // refused by New rather than by Start
		contains string // in the error
	}{
		{"NoCredentials", ns.ClientURL(), "", "", goodTLS, false, "Authorization Violation"},
		{"WrongNKey", ns.ClientURL(), "", otherSeedFile, goodTLS, false, "Authorization Violation"},
		{"NoClientCertificate", ns.ClientURL(), "", seedFile, &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12}, false, "natsbus: connect"},
		{"UntrustedServer", ns.ClientURL(), "", seedFile, &tls.Config{RootCAs: otherPKI.Pool, Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}, false, "certificate"},
		{"NoCredsInOperatorMode", opServer.ClientURL(), "", "", nil, false, "natsbus: connect"},
		{"PasswordRedacted", "nats://parley:hunter2@" + strings.TrimPrefix(opServer.ClientURL(), "nats://"), "", "", nil, false, "xxxxx"},
		{"MissingCredsFile", opServer.ClientURL(), missing, "", nil, true, missing},
		{"GarbageCredsFile", opServer.ClientURL(), testkit.WriteFile(t, "garbage.creds", []byte("not a creds file")), "", nil, true, "no valid user JWT"},
		{"SeedAsCredsFile", opServer.ClientURL(), seedFile, "", nil, true, "no valid user JWT"},
		{"MissingNKeyFile", ns.ClientURL(), "", missing, goodTLS, true, missing},
		{"GarbageNKeyFile", ns.ClientURL(), "", testkit.WriteFile(t, "garbage.nk", []byte("SUgarbage")), goodTLS, true, "NKey seed file"},
		{"CredsAndNKey", opServer.ClientURL(), testkit.WriteFile(t, "node.creds", creds), seedFile, nil, true, "not both"},
		{"TLSWithoutURL", "", "", "", goodTLS, true, "without NATSURL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := broker.New(broker.Options{
				Store: testkit.OpenSQLite(t), JWTSecret: testSecret, Logger: testkit.Logger(), MQTTAddr: "127.0.0.1:0",
				NATSURL: tc.url, NATSCredsFile: tc.creds, NATSNKeyFile: tc.nkey, NATSTLSConfig: tc.tls, NodeID: "node",
			})
			if err == nil {
				t.Cleanup(func() { b.Close(context.Background()) })
				err = b.Start(context.Background())
				if tc.atNew && err == nil {
					t.Fatal("New and Start succeeded, want New to fail")
				}
			} else if !tc.atNew {
				t.Fatalf("New: %v, want Start to fail", err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %v, want one that contains %q", err, tc.contains)
			}
			t.Log(err)
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %v shows the password", err)
			}
		})
	}
}
