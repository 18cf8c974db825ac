package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Keys are new key pairs of each asymmetric kind a token may be signed
// with.
type Keys struct {
	RSA     *rsa.PrivateKey // 2048 bits
	ECDSA   *ecdsa.PrivateKey
	Ed25519 ed25519.PrivateKey
}

// NewKeys generates an RSA, a P-256 ECDSA and an Ed25519 key.
func NewKeys(tb testing.TB) Keys {
	tb.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return Keys{RSA: rsaKey, ECDSA: ecKey, Ed25519: edKey}
}

// Algorithm is a JWT signing algorithm with a key for it.
type Algorithm struct {
	Name   string // RS256, ES256 or EdDSA
	Method jwt.SigningMethod
	Key    crypto.Signer
	Public crypto.PublicKey
}

// Algorithms returns RS256, ES256 and EdDSA with k's keys.
func (k Keys) Algorithms() []Algorithm {
	return []Algorithm{
		{"RS256", jwt.SigningMethodRS256, k.RSA, &k.RSA.PublicKey},
		{"ES256", jwt.SigningMethodES256, k.ECDSA, &k.ECDSA.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, k.Ed25519, k.Ed25519.Public()},
	}
}
