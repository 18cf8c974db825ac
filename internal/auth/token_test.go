package auth_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/testkit"
)

var testSecret = []byte("test-secret-test-secret-test-secret!")

// signJWT signs claims with method and key, failing the test on error.
func signJWT(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	return s
}

// expiring returns claims for sub that expire after ttl.
func expiring(sub string, ttl time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}
}

// issued returns claims for sub issued at now+skew that expire an hour from
// now, or an hour after they are issued if that is later.
func issued(sub string, skew time.Duration) jwt.MapClaims {
	iat := time.Now().Add(skew)
	exp := time.Now().Add(max(skew, 0) + time.Hour)
	return jwt.MapClaims{"sub": sub, "iat": iat.Unix(), "exp": exp.Unix()}
}

// signWithHeader signs claims with HS256 and testSecret under a header with
// the extra parameters in extra.
func signWithHeader(t testing.TB, extra map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	return signWithHeaderKey(t, jwt.SigningMethodHS256, testSecret, extra, claims)
}

// signRS256WithHeader is signWithHeader for RS256 and key.
func signRS256WithHeader(t testing.TB, key *rsa.PrivateKey, extra map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	return signWithHeaderKey(t, jwt.SigningMethodRS256, key, extra, claims)
}

func signWithHeaderKey(t testing.TB, method jwt.SigningMethod, key any, extra map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range extra {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	return s
}

// unsigned returns a token with the given header and claims and an empty
// signature.
func unsigned(header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "."
}

// pemBlock encodes der as a PEM block of type typ.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// pkixPEM returns pub as a PEM "PUBLIC KEY" block.
func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal %T: %v", pub, err)
	}
	return pemBlock("PUBLIC KEY", der)
}

func TestTokensSignVerify(t *testing.T) {
	tokens := &auth.Tokens{Secret: testSecret}
	for _, user := range []string{"alice", "bob@example.com", "a", strings.Repeat("x", 64), "A.b_c-d@e"} {
		t.Run(user, func(t *testing.T) {
			tok, err := tokens.Sign(user, time.Hour)
			if err != nil {
				t.Fatalf("Sign(%q): %v", user, err)
			}
			got, err := tokens.Verify(tok)
			if err != nil {
				t.Fatalf("Verify(Sign(%q)): %v", user, err)
			}
			if got != user {
				t.Fatalf("Verify(Sign(%q)) = %q", user, got)
			}
		})
	}
}

// TestTokensVerifyIssuedAt: iat is optional, and an iat in the past or less
// than the leeway (5s) in the future is accepted.
func TestTokensVerifyIssuedAt(t *testing.T) {
	tokens := &auth.Tokens{Secret: testSecret}
	cases := []struct {
		name   string
		claims jwt.MapClaims
	}{
		{"NoIat", expiring("alice", time.Hour)},
		{"IssuedNow", issued("alice", 0)},
		{"IssuedInPast", issued("alice", -24*time.Hour)},
		{"IssuedWithinLeeway", issued("alice", 2*time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := signJWT(t, jwt.SigningMethodHS256, testSecret, tc.claims)
			if user, err := tokens.Verify(tok); err != nil || user != "alice" {
				t.Fatalf("Verify = %q, %v; want alice", user, err)
			}
		})
	}
}

func TestTokensSignErrors(t *testing.T) {
	cases := []struct {
		name   string
		tokens auth.Tokens
		user   string
	}{
		{"NoSecret", auth.Tokens{}, "alice"},
		{"EmptyUser", auth.Tokens{Secret: testSecret}, ""},
		{"SlashInUser", auth.Tokens{Secret: testSecret}, "a/b"},
		{"UserTooLong", auth.Tokens{Secret: testSecret}, strings.Repeat("x", 65)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := tc.tokens.Sign(tc.user, time.Hour); err == nil {
				t.Fatalf("Sign(%q) = %q, want an error", tc.user, tok)
			}
		})
	}
}

func TestTokensVerifyRefuses(t *testing.T) {
	keys := testkit.NewKeys(t)
	rsaKey, ecKey := keys.RSA, keys.ECDSA
	secretOnly := &auth.Tokens{Secret: testSecret}
	rsaOnly := &auth.Tokens{PublicKey: &rsaKey.PublicKey}
	valid, err := secretOnly.Sign("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	rsaPEM := pkixPEM(t, &rsaKey.PublicKey)

	cases := []struct {
		name    string
		tokens  *auth.Tokens
		token   string
		expired bool // want ErrTokenExpired rather than ErrTokenInvalid
	}{
		{"Empty", secretOnly, "", false},
		{"Garbage", secretOnly, "not-a-jwt", false},
		{"Expired", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, expiring("alice", -time.Hour)), true},
		{"ExpiredBySign", secretOnly, mustSign(t, secretOnly, "alice", -time.Minute), true},
		{"MissingExp", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "alice"}), false},
		{"ExpNotNumber", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "alice", "exp": "9999999999"}), false},
		{"WrongSecret", secretOnly, signJWT(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret!!!"), expiring("alice", time.Hour)), false},
		{"HS384", secretOnly, signJWT(t, jwt.SigningMethodHS384, testSecret, expiring("alice", time.Hour)), false},
		{"AlgNone", secretOnly, unsigned(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice","exp":9999999999}`), false},
		{"AlgNoneLower", secretOnly, unsigned(`{"alg":"None","typ":"JWT"}`, `{"sub":"alice","exp":9999999999}`), false},
		{"AlgNoneWithSignature", secretOnly, unsigned(`{"alg":"none"}`, `{"sub":"alice","exp":9999999999}`) + parts[2], false},
		{"NoSignature", secretOnly, parts[0] + "." + parts[1] + ".", false},
		{"TamperedClaims", secretOnly, parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999}`)) + "." + parts[2], false},
		{"RS256WithSecretOnly", secretOnly, signJWT(t, jwt.SigningMethodRS256, rsaKey, expiring("alice", time.Hour)), false},
		{"ES256WithSecretOnly", secretOnly, signJWT(t, jwt.SigningMethodES256, ecKey, expiring("alice", time.Hour)), false},
		{"HS256WithPublicKeyOnly", rsaOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, expiring("alice", time.Hour)), false},
		// Algorithm confusion: an HS256 token keyed with the public key's PEM.
		{"HS256KeyedWithPublicKey", rsaOnly, signJWT(t, jwt.SigningMethodHS256, rsaPEM, expiring("alice", time.Hour)), false},
		{"ES256WithRSAKey", rsaOnly, signJWT(t, jwt.SigningMethodES256, ecKey, expiring("alice", time.Hour)), false},
		{"SubMissing", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}), false},
		{"SubEmpty", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, expiring("", time.Hour)), false},
		{"SubNotString", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": 42, "exp": time.Now().Add(time.Hour).Unix()}), false},
		{"SubWithSlash", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, expiring("a/b", time.Hour)), false},
		{"SubWildcard", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, expiring("+", time.Hour)), false},
		{"Sub65Chars", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, expiring(strings.Repeat("x", 65), time.Hour)), false},
		{"EmptyTokensValidToken", &auth.Tokens{}, valid, false},
		{"EmptyTokensAlgNone", &auth.Tokens{}, unsigned(`{"alg":"none"}`, `{"sub":"alice","exp":9999999999}`), false},
		{"EmptySecretSlice", &auth.Tokens{Secret: []byte{}}, signJWT(t, jwt.SigningMethodHS256, []byte{0}, expiring("alice", time.Hour)), false},
		{"CritHeader", secretOnly, signWithHeader(t, map[string]any{"crit": []string{"exp"}}, expiring("alice", time.Hour)), false},
		{"CritHeaderUnknownExtension", secretOnly, signWithHeader(t, map[string]any{"crit": []string{"x-ext"}, "x-ext": 1}, expiring("alice", time.Hour)), false},
		{"CritHeaderEmpty", secretOnly, signWithHeader(t, map[string]any{"crit": []string{}}, expiring("alice", time.Hour)), false},
		{"CritHeaderNull", secretOnly, signWithHeader(t, map[string]any{"crit": nil}, expiring("alice", time.Hour)), false},
		{"CritHeaderRS256", rsaOnly, signRS256WithHeader(t, rsaKey, map[string]any{"crit": []string{"b64"}, "b64": true}, expiring("alice", time.Hour)), false},
		{"IssuedInFuture", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, issued("alice", time.Minute)), false},
		{"IssuedFarInFuture", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, issued("alice", 365*24*time.Hour)), false},
		{"IatNotNumber", secretOnly, signJWT(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iat": "0"}), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, err := tc.tokens.Verify(tc.token)
			if err == nil {
				t.Fatalf("Verify(%q) = %q, want an error", tc.token, user)
			}
			if user != "" {
				t.Fatalf("Verify(%q) returned user %q with error %v", tc.token, user, err)
			}
			want := auth.ErrTokenInvalid
			if tc.expired {
				want = auth.ErrTokenExpired
			}
			if !errors.Is(err, want) {
				t.Fatalf("Verify(%q) error %v, want it to wrap %v", tc.token, err, want)
			}
		})
	}
}

// TestTokensVerifyCanonical: a token verifies only in the exact form it was
// signed in; re-encodings of its signature segment are not the same token.
func TestTokensVerifyCanonical(t *testing.T) {
	tokens := &auth.Tokens{Secret: testSecret}
	tok := mustSign(t, tokens, "alice", time.Hour)
	i := strings.LastIndexByte(tok, '.')
	sig := tok[i+1:]
	cases := []struct {
		name  string
		token string
	}{
		{"NewlineInSignature", tok[:i+1] + sig[:10] + "\n" + sig[10:]},
		{"CRLFAfterSignature", tok + "\r\n"},
		{"PaddedSignature", tok + "="},
		{"NonZeroPaddingBits", tok[:i+1] + sig[:len(sig)-1] + flipPaddingBits(t, sig[len(sig)-1])},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.token == tok {
				t.Fatal("test case does not change the token")
			}
			if user, err := tokens.Verify(tc.token); err == nil {
				t.Fatalf("Verify(%q) = %q, want an error for a token that differs from the signed one", tc.token, user)
			}
		})
	}
}

// flipPaddingBits returns the base64url character that decodes to the same
// bits as c in the 4 leading bits (the only ones used by the last character
// of a 32-byte value: 256 = 42*6 + 4) and differs in the 2 padding bits.
func flipPaddingBits(t testing.TB, c byte) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	if i < 0 || i&0x03 != 0 {
		t.Fatalf("unexpected last signature character %q", c)
	}
	return string(alphabet[i|0x01])
}

func mustSign(t testing.TB, tokens *auth.Tokens, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := tokens.Sign(user, ttl)
	if err != nil {
		t.Fatalf("Sign(%q): %v", user, err)
	}
	return tok
}

func TestTokensVerifyPublicKeys(t *testing.T) {
	for _, tc := range testkit.NewKeys(t).Algorithms() {
		t.Run(tc.Name, func(t *testing.T) {
			tokens := &auth.Tokens{Secret: testSecret, PublicKey: tc.Public}
			tok := signJWT(t, tc.Method, tc.Key, expiring("alice", time.Hour))
			user, err := tokens.Verify(tok)
			if err != nil || user != "alice" {
				t.Fatalf("Verify(%s token) = %q, %v; want alice", tc.Name, user, err)
			}
			// The secret keeps working next to a public key.
			if user, err := tokens.Verify(mustSign(t, tokens, "bob", time.Hour)); err != nil || user != "bob" {
				t.Fatalf("Verify(HS256 token) = %q, %v; want bob", user, err)
			}
			expired := signJWT(t, tc.Method, tc.Key, expiring("alice", -time.Hour))
			if _, err := tokens.Verify(expired); !errors.Is(err, auth.ErrTokenExpired) {
				t.Fatalf("Verify(expired %s token) error %v, want ErrTokenExpired", tc.Name, err)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	keys := testkit.NewKeys(t)
	rsaKey, ecKey, edPub := keys.RSA, keys.ECDSA, keys.Ed25519.Public()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "parley test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		pem  []byte
		want crypto.PublicKey
	}{
		{"RSA", pkixPEM(t, &rsaKey.PublicKey), &rsaKey.PublicKey},
		{"RSAPKCS1", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), &rsaKey.PublicKey},
		{"ECDSA", pkixPEM(t, &ecKey.PublicKey), &ecKey.PublicKey},
		{"Ed25519", pkixPEM(t, edPub), edPub},
		{"Certificate", pemBlock("CERTIFICATE", certDER), &ecKey.PublicKey},
		{"LeadingText", append([]byte("my key:\n"), pkixPEM(t, edPub)...), edPub},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.ParsePublicKey(tc.pem)
			if err != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
			eq, ok := got.(interface{ Equal(crypto.PublicKey) bool })
			if !ok || !eq.Equal(tc.want) {
				t.Fatalf("ParsePublicKey = %T %v, want %T %v", got, got, tc.want, tc.want)
			}
		})
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		pem  []byte
	}{
		{"Empty", nil},
		{"Garbage", []byte("not a key at all")},
		{"GarbageInPEM", pemBlock("PUBLIC KEY", []byte("garbage"))},
		{"GarbageCertificate", pemBlock("CERTIFICATE", []byte("garbage"))},
		{"GarbagePKCS1", pemBlock("RSA PUBLIC KEY", []byte("garbage"))},
		{"PrivateKey", pemBlock("PRIVATE KEY", mustPKCS8(t, rsaKey))},
		{"UnsupportedX25519", pkixPEM(t, x25519.PublicKey())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if key, err := auth.ParsePublicKey(tc.pem); err == nil {
				t.Fatalf("ParsePublicKey = %T, want an error", key)
			}
		})
	}
}

// TestParsePublicKeyCurves: only P-256 ECDSA keys verify (ES256 is the only
// ECDSA algorithm Verify accepts), so only they may be accepted.
func TestParsePublicKeyCurves(t *testing.T) {
	cases := []struct {
		name  string
		curve elliptic.Curve
		ok    bool
	}{
		{"P256", elliptic.P256(), true},
		{"P384", elliptic.P384(), false},
		{"P521", elliptic.P521(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ecdsa.GenerateKey(tc.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			_, err = auth.ParsePublicKey(pkixPEM(t, &key.PublicKey))
			if (err == nil) != tc.ok {
				t.Fatalf("ParsePublicKey(%s key) error = %v, want ok = %v", tc.name, err, tc.ok)
			}
		})
	}
}

func mustPKCS8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// FuzzVerify checks that Verify never panics and accepts only the tokens that
// Sign produced.
func FuzzVerify(f *testing.F) {
	tokens := &auth.Tokens{Secret: testSecret}
	signed := map[string]bool{}
	for _, user := range []string{"alice", "bob@example.com"} {
		tok, err := tokens.Sign(user, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		signed[tok] = true
		f.Add(tok)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add(unsigned(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice","exp":9999999999}`))
	f.Add(unsigned(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"alice","exp":9999999999}`) + "AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		user, err := tokens.Verify(s)
		if signed[s] {
			if err != nil {
				t.Fatalf("Verify(signed token %q): %v", s, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("Verify(%q) = %q, want an error for a string Sign did not produce", s, user)
		}
		if user != "" {
			t.Fatalf("Verify(%q) returned user %q with error %v", s, user, err)
		}
		if !errors.Is(err, auth.ErrTokenInvalid) && !errors.Is(err, auth.ErrTokenExpired) {
			t.Fatalf("Verify(%q) error %v wraps neither ErrTokenInvalid nor ErrTokenExpired", s, err)
		}
	})
}
