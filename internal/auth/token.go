package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-im/parley/history"
)

// Tokens verifies (and, with a secret, signs) the JWTs that authenticate
// users over MQTT and REST. The zero value rejects every token.
type Tokens struct {
	// Secret is the HS256 key; empty disables HS256.
	Secret []byte
	// PublicKey verifies RS256 (*rsa.PublicKey), ES256 (*ecdsa.PublicKey) or
	// EdDSA (ed25519.PublicKey) tokens; nil disables them.
	PublicKey crypto.PublicKey
	// Revocations, when set, refuses the tokens of deleted accounts
	// issued before the deletion (ErrTokenRevoked).
	Revocations *Revocations
}

// tokenLeeway is the clock skew Verify tolerates on exp, nbf and iat.
const tokenLeeway = 5 * time.Second

// Token errors, wrapped by Verify.
var (
	ErrTokenInvalid = errors.New("invalid token")
	ErrTokenExpired = errors.New("token expired")
)

// Verify checks token and returns its subject, the user id. Only the
// algorithms of the configured keys are accepted ("none" and algorithm
// confusion never are); exp is required; exp, nbf and iat are checked with
// 5 seconds of leeway, so a token issued in the future is refused. A token
// with a crit header is refused whatever it lists: Parley understands no JWS
// extension (RFC 7515 section 4.1.11).
func (t *Tokens) Verify(token string) (string, error) {
	var methods []string
	if len(t.Secret) > 0 {
		methods = append(methods, "HS256")
	}
	switch t.PublicKey.(type) {
	case *rsa.PublicKey:
		methods = append(methods, "RS256")
	case *ecdsa.PublicKey:
		methods = append(methods, "ES256")
	case ed25519.PublicKey:
		methods = append(methods, "EdDSA")
	}
	if len(methods) == 0 {
		return "", fmt.Errorf("%w: no verification key configured", ErrTokenInvalid)
	}
	// Only the exact string that was signed verifies: base64 decoding would
	// skip line breaks.
	if strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("%w: whitespace in token", ErrTokenInvalid)
	}
	tok, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		if _, ok := tok.Header["crit"]; ok {
			return nil, errors.New("crit header: no extension is understood")
		}
		switch tok.Method.Alg() {
		case "HS256":
			return t.Secret, nil
		default:
			return t.PublicKey, nil
		}
	}, jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenLeeway), jwt.WithStrictDecoding())
	if errors.Is(err, jwt.ErrTokenExpired) {
		return "", fmt.Errorf("%w: %w", ErrTokenExpired, err)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	sub, err := tok.Claims.GetSubject()
	if err != nil || !history.ValidUserID(sub) {
		return "", fmt.Errorf("%w: sub must be a valid user id", ErrTokenInvalid)
	}
	if t.Revocations != nil {
		var iat time.Time
		if d, err := tok.Claims.GetIssuedAt(); err == nil && d != nil {
			iat = d.Time
		}
		if t.Revocations.Revoked(sub, iat) {
			return "", fmt.Errorf("%w: %w: issued before the account was deleted", ErrTokenInvalid, ErrTokenRevoked)
		}
	}
	return sub, nil
}

// TokenText explains an error of Verify in a few words for people: "token
// expired", "bad signature: ..." when the token was signed with another key,
// else "token invalid: " and the reason.
func TokenText(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && (errors.Is(err, jwt.ErrSignatureInvalid) ||
		errors.Is(err, jwt.ErrECDSAVerification) || errors.Is(err, jwt.ErrEd25519Verification) || errors.Is(err, rsa.ErrVerification)):
		return "bad signature: the token was not signed with this server's secret or key"
	}
	return "token invalid: " + strings.TrimPrefix(err.Error(), ErrTokenInvalid.Error()+": ")
}

// Sign returns an HS256 token for user that expires after ttl. It needs
// Secret.
func (t *Tokens) Sign(user string, ttl time.Duration) (string, error) {
	if len(t.Secret) == 0 {
		return "", errors.New("sign token: no secret configured")
	}
	if !history.ValidUserID(user) {
		return "", fmt.Errorf("sign token: invalid user id %q (1 to 64 of A-Z a-z 0-9 . _ @ -)", user)
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.Secret)
}

// ParsePublicKey parses a PEM-encoded RSA, ECDSA (P-256) or Ed25519 public key
// (PKIX "PUBLIC KEY", or an X.509 certificate).
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("public key: no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return key, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("public key: ECDSA keys must use P-256 (ES256), got %s", k.Curve.Params().Name)
		}
		return key, nil
	}
	return nil, fmt.Errorf("public key: unsupported type %T", key)
}
