package main

import (
	"syscall"
	"testing"

	"github.com/parley-im/parley/internal/testkit"
)

// TestRaiseOpenFiles: the soft limit on open files ends at the hard limit.
func TestRaiseOpenFiles(t *testing.T) {
	var before syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	got := raiseOpenFiles(testkit.Logger())
	var after syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
		t.Fatal(err)
	}
	if after.Cur != before.Max || got != after.Cur {
		t.Fatalf("soft limit %d (returned %d), want the hard limit %d", after.Cur, got, before.Max)
	}
}
