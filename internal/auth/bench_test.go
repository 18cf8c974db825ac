package auth_test

import (
	"strings"
	"testing"

	"github.com/parley-im/parley/internal/auth"
)

func BenchmarkACLAllow(b *testing.B) {
	acl, err := auth.ParseACL(strings.NewReader("* deny secret/#\nalice read sensors/#\n* readwrite devices/{user}/#\n"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if !acl.Allow("bob", "devices/bob/kitchen/temp", true) {
			b.Fatal("denied")
		}
	}
}
