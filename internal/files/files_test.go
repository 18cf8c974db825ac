package files

import (
	"net/url"
	"testing"
	"time"
)

func TestSignedURL(t *testing.T) {
	s := &Service{URLSecret: []byte("k"), URLTTL: 3600e9}
	now := time.Unix(1_000_000, 0)
	q := s.Sign("fabc", now)
	v, _ := url.ParseQuery(q)
	for _, tc := range []struct {
		name, id, exp, sig string
		at                 time.Time
		ok                 bool
	}{
		{"OK", "fabc", v.Get("exp"), v.Get("sig"), now, true},
		{"ErrExpired", "fabc", v.Get("exp"), v.Get("sig"), now.Add(2 * time.Hour), false},
		{"ErrOtherFile", "fabd", v.Get("exp"), v.Get("sig"), now, false},
		{"ErrLaterExpiry", "fabc", "9999999999", v.Get("sig"), now, false},
		{"ErrNoSig", "fabc", v.Get("exp"), "", now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Verify(tc.id, tc.exp, tc.sig, tc.at); got != tc.ok {
				t.Fatalf("Verify = %v", got)
			}
		})
	}
}
