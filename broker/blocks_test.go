package broker_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestClusterBlockWarmCache: with both nodes' relation caches warm (the two
// users wrote to each other through each node), a block made through node 1
// applies to the very next send through node 0, over MQTT and REST, and the
// unblock too: the block broadcast drops node 0's cached relation.
func TestClusterBlockWarmCache(t *testing.T) {
	c := startCluster(t, 2, nil)
	alice := c.nodes[0].dial("alice", "alice", dialOpts{v5: true})
	bob := c.nodes[1].dial("bob", "bob", dialOpts{v5: true})
	for i := 0; i < 3; i++ {
		alice.send("im/send/u/bob", 1, fmt.Sprintf(`{"cid":"a%d","body":%d}`, i, i))
		bob.send("im/send/u/alice", 1, fmt.Sprintf(`{"cid":"b%d","body":%d}`, i, i))
	}
	if code := c.nodes[1].do("PUT", "/v1/blocks/alice", "bob", "", nil); code != 200 {
		t.Fatalf("block: %d", code)
	}
	if code, _ := alice.publish("im/send/u/bob", 1, `{"cid":"x1","body":"let me in"}`); code != 0x87 {
		t.Fatalf("send through the other node right after the block: reason %#x, want 0x87", code)
	}
	if code := c.nodes[0].do("POST", "/v1/users/bob/messages", "alice", `{"body":"rest"}`, nil); code != 403 {
		t.Fatalf("REST send through the other node right after the block: %d, want 403", code)
	}
	if code, _ := bob.publish("im/send/u/alice", 1, `{"cid":"x2","body":"bye"}`); code != 0x87 {
		t.Fatalf("blocker's send: reason %#x, want 0x87", code)
	}
	if code := c.nodes[1].do("DELETE", "/v1/blocks/alice", "bob", "", nil); code != 200 {
		t.Fatalf("unblock: %d", code)
	}
	if code, _ := alice.publish("im/send/u/bob", 1, `{"cid":"x3","body":"again"}`); code != 0 {
		t.Fatalf("send through the other node right after the unblock: reason %#x, want 0", code)
	}
}

// TestBlockLimit: a user blocks at most history.MaxBlocks users: the PUT
// beyond them is refused with 400 invalid and stores nothing; re-blocking a
// blocked user still succeeds, and an unblock makes room. On both stores.
func TestBlockLimit(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, store history.Store) {
		e := setup(t, store)
		p := store.(history.Privacy)
		for i := range history.MaxBlocks - 1 {
			if err := p.Block(t.Context(), "alice", fmt.Sprintf("u%04d", i), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if code := e.do("PUT", "/v1/blocks/bob", "alice", "", nil); code != 200 {
			t.Fatalf("the last block: %d", code)
		}
		var ae apiErr
		if code := e.do("PUT", "/v1/blocks/carol", "alice", "", &ae); code != 400 || ae.Error.Code != "invalid" || !strings.Contains(ae.Error.Message, "1000") {
			t.Fatalf("a block beyond the limit: %d %+v, want 400 invalid", code, ae)
		}
		if code := e.do("PUT", "/v1/blocks/bob", "alice", "", nil); code != 200 {
			t.Fatalf("re-block at the limit: %d", code)
		}
		var list struct {
			Blocks []struct{ User string } `json:"blocks"`
		}
		if code := e.do("GET", "/v1/blocks", "alice", "", &list); code != 200 || len(list.Blocks) != history.MaxBlocks || slices.ContainsFunc(list.Blocks, func(b struct{ User string }) bool { return b.User == "carol" }) {
			t.Fatalf("blocks: %d, %d of them, want %d without carol", code, len(list.Blocks), history.MaxBlocks)
		}
		// carol was not blocked: her send to alice goes through.
		if code := e.do("POST", "/v1/users/alice/messages", "carol", `{"body":"hi"}`, nil); code != 201 {
			t.Fatalf("carol's send after the refused block: %d", code)
		}
		if code := e.do("DELETE", "/v1/blocks/u0000", "alice", "", nil); code != 200 {
			t.Fatalf("unblock: %d", code)
		}
		if code := e.do("PUT", "/v1/blocks/carol", "alice", "", nil); code != 200 {
			t.Fatalf("block after an unblock: %d", code)
		}
		if code := e.do("POST", "/v1/users/alice/messages", "carol", `{"body":"hi"}`, nil); code != 403 {
			t.Fatalf("carol's send once blocked: %d, want 403", code)
		}
	})
}
