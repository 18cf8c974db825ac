package main

import (
	"strings"
	"testing"
)

// TestSearch: parley search prints the caller's matches, newest first, with
// the matches marked, and pages with --cursor.
func TestSearch(t *testing.T) {
	setup(t)
	ctx := ctxT(t)
	for _, s := range []string{"harbour at six", "the harbourmaster", "nothing here"} {
		ok(t, runAs(t, ctx, nil, "alice", "send", "--to", "bob", s))
	}
	r := runAs(t, ctx, nil, "bob", "search", "harb")
	ok(t, r, "dm:alice:bob #2 alice: the [harbourmaster]", "dm:alice:bob #1 alice: [harbour] at six")
	if strings.Contains(r.stdout, "nothing") {
		t.Fatalf("search found too much:\n%s", r.stdout)
	}
	r = runAs(t, ctx, nil, "bob", "search", "--limit", "1", "harbour")
	ok(t, r, "#2")
	if !strings.Contains(r.stderr, "--cursor") {
		t.Fatalf("no next page hint:\n%s", r.stderr)
	}
	if r := runAs(t, ctx, nil, "carol", "search", "harbour"); r.code != 0 || r.stdout != "" {
		t.Fatalf("carol finds: %+v", r)
	}
	if r := runAs(t, ctx, nil, "bob", "search"); r.code != 2 {
		t.Fatalf("no words: exit %d", r.code)
	}
}
