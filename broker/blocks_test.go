package broker_test

import (
	"fmt"
	"testing"
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
