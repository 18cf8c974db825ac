package history

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"time"
)

// MaxIDLen is the maximum length of user, device and group ids.
const MaxIDLen = 64

// ValidUserID reports whether s is a valid user id: 1 to 64 characters of
// A-Z a-z 0-9 . _ @ -.
func ValidUserID(s string) bool { return validID(s, "._@-") }

// ValidDeviceID reports whether s is a valid device id: 1 to 64 characters of
// A-Z a-z 0-9 . _ -.
func ValidDeviceID(s string) bool { return validID(s, "._-") }

// ValidGroupID reports whether s is a valid group id: 1 to 64 characters of
// A-Z a-z 0-9 . _ -.
func ValidGroupID(s string) bool { return validID(s, "._-") }

func validID(s, extra string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// DirectConvID returns the conversation id of the direct conversation between
// a and b: "dm:A:B" with A < B in byte order.
func DirectConvID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

// GroupConvID returns the conversation id of group g: "g:" + g.
func GroupConvID(g string) string { return "g:" + g }

// ParseConvID splits a conversation id into its kind and parts: for a direct
// conversation the two users (a < b), for a group its id in a. ok is false for
// anything that is not a well-formed conversation id.
func ParseConvID(conv string) (kind, a, b string, ok bool) {
	switch {
	case strings.HasPrefix(conv, "dm:"):
		rest := conv[3:]
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return "", "", "", false
		}
		a, b = rest[:i], rest[i+1:]
		if !ValidUserID(a) || !ValidUserID(b) || !(a < b) {
			return "", "", "", false
		}
		return KindDirect, a, b, true
	case strings.HasPrefix(conv, "g:"):
		g := conv[2:]
		if !ValidGroupID(g) {
			return "", "", "", false
		}
		return KindGroup, g, "", true
	}
	return "", "", "", false
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a new random, roughly time-ordered identifier of 26
// characters: 48 bits of milliseconds followed by 80 random bits.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("history: crypto/rand failed: " + err.Error())
	}
	return idEncoding.EncodeToString(b[:])
}
