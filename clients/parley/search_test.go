package parley_test

import (
	"errors"
	"testing"

	"github.com/parley-im/parley/clients/parley"
)

// TestSearchAndBlock: Search pages the user's matches with snippets; a
// block makes direct sends fail with ErrBlocked until Unblock.
func TestSearchAndBlock(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		ctx := ctxT(t)
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		for _, text := range []string{"lunch at noon", "lunchbox please", "dinner"} {
			mustSend(t, ctx, alice, parley.User("bob"), map[string]string{"text": text})
		}
		page, err := bob.Search(ctx, "lunch", parley.SearchOptions{Limit: 1})
		if err != nil || len(page.Results) != 1 || page.Next == "" || page.Results[0].Seq != 2 {
			t.Fatalf("page 1: %+v, %v", page, err)
		}
		r := page.Results[0]
		if h := r.Highlights; len(h) != 1 || r.Snippet[h[0].Start:h[0].End] != "lunchbox" {
			t.Fatalf("snippet %q %v", r.Snippet, r.Highlights)
		}
		page, err = bob.Search(ctx, "lunch", parley.SearchOptions{Cursor: page.Next})
		if err != nil || len(page.Results) != 1 || page.Results[0].Seq != 1 || page.Next != "" {
			t.Fatalf("page 2: %+v, %v", page, err)
		}
		if _, err := bob.Search(ctx, " ", parley.SearchOptions{}); !errors.Is(err, parley.ErrInvalid) {
			t.Fatalf("empty query: %v", err)
		}
		if err := bob.Block(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctx, parley.User("bob"), "let me in"); !errors.Is(err, parley.ErrBlocked) {
			t.Fatalf("blocked send: %v", err)
		}
		if err := bob.Unblock(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		mustSend(t, ctx, alice, parley.User("bob"), "again")
	})
}
