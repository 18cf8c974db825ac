package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"id":"x"}`)
	ts := time.Unix(1700000000, 0)
	h := Sign(secret, ts, body)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("1700000000." + string(body)))
	if want := "t=1700000000,v1=" + hex.EncodeToString(m.Sum(nil)); h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	if err := Verify(secret, h, body, 5*time.Minute, ts.Add(time.Minute)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Several v1 entries (a rotated secret) and unknown keys.
	other := Sign([]byte("old"), ts, body)
	if err := Verify(secret, other+",v0=zz,"+h[len("t=1700000000,"):], body, 0, time.Now()); err != nil {
		t.Fatalf("Verify with two v1: %v", err)
	}
	cases := []struct {
		name, header string
		body         string
		secret       string
		now          time.Time
		want         error
	}{
		{"WrongBody", h, `{"id":"y"}`, "s3cret", ts, ErrMismatch},
		{"WrongSecret", h, string(body), "other", ts, ErrMismatch},
		{"Expired", h, string(body), "s3cret", ts.Add(10 * time.Minute), ErrExpired},
		{"Future", h, string(body), "s3cret", ts.Add(-10 * time.Minute), ErrExpired},
		{"NoT", "v1=abc", string(body), "s3cret", ts, ErrMalformed},
		{"NoV1", "t=1700000000", string(body), "s3cret", ts, ErrMalformed},
		{"Garbage", "garbage", string(body), "s3cret", ts, ErrMalformed},
		{"Empty", "", string(body), "s3cret", ts, ErrMalformed},
		{"OtherT", "t=1700000001" + h[len("t=1700000000"):], string(body), "s3cret", ts, ErrMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify([]byte(tc.secret), tc.header, []byte(tc.body), 5*time.Minute, tc.now); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}
