// Package signature signs and verifies the HTTP requests that Parley sends
// to other services (webhooks, the moderation hook): the header
//
//	Parley-Signature: t=UNIX,v1=HEX
//
// where UNIX is the signing time in Unix seconds and HEX is the lowercase
// hex of HMAC-SHA256(secret, "UNIX." + body). A receiver recomputes the MAC
// over the raw body it read and compares it in constant time; checking that
// t is recent refuses replays.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the HTTP header that carries the signature.
const Header = "Parley-Signature"

// Errors of Verify.
var (
	ErrMalformed = errors.New("signature: malformed " + Header + " header")
	ErrMismatch  = errors.New("signature: no v1 signature matches the body")
	ErrExpired   = errors.New("signature: timestamp outside the tolerance")
)

// Sign returns the value of the Parley-Signature header for body signed with
// secret at time ts: "t=UNIX,v1=HEX".
func Sign(secret []byte, ts time.Time, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + unix + ",v1=" + mac(secret, unix, body)
}

func mac(secret []byte, unix string, body []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(unix))
	h.Write([]byte{'.'})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Verify checks header, a Parley-Signature value, against body and secret.
// It accepts the header when one of its v1 entries (there may be several)
// is the MAC of body at its t, and, when tolerance is positive, t is within
// tolerance of now. Unknown keys are ignored, so that later schemes can be
// added next to v1.
func Verify(secret []byte, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var unix string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			if unix != "" {
				return ErrMalformed
			}
			unix = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(unix, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	want := []byte(mac(secret, unix, body))
	matched := false
	for _, s := range sigs {
		if hmac.Equal([]byte(strings.ToLower(s)), want) {
			matched = true
		}
	}
	if !matched {
		return ErrMismatch
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: signed at %d, %s from now", ErrExpired, sec, d.Round(time.Second))
		}
	}
	return nil
}
