package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// WriteFile writes b to the file name in a temporary directory of tb and
// returns its path.
func WriteFile(tb testing.TB, name string, b []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// NATSUser is a new NATS account and one of its users: the user's NKey, its
// JWT signed by the account and the contents of a .creds file for it.
type NATSUser struct {
	Account    nkeys.KeyPair
	AccountPub string
	Pub, Seed  string // the user's public key and NKey seed
	JWT        string
	Creds      []byte
}

// NewNATSUser creates an account and a user of it.
func NewNATSUser(tb testing.TB) NATSUser {
	tb.Helper()
	akp, err := nkeys.CreateAccount()
	if err != nil {
		tb.Fatal(err)
	}
	apub, _ := akp.PublicKey()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		tb.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		tb.Fatal(err)
	}
	return NATSUser{Account: akp, AccountPub: apub, Pub: upub, Seed: string(useed), JWT: ujwt, Creds: creds}
}
