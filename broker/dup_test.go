package broker_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/testkit"
)

// TestDupResend: a QoS 1 PUBLISH re-sent with the DUP flag and the same cid
// (as a client does after a lost PUBACK) is stored once and keeps its seq;
// the recipient gets it once.
func TestDupResend(t *testing.T) {
	testkit.ForEachStore(t, func(t *testing.T, s history.Store) {
		e := setup(t, s)
		bob := e.dial("bob", "bob", dialOpts{v5: true})
		conn := rawConnect(t, e, "alice/raw", "alice", 30)
		defer conn.Close()
		pub := publishPacket("im/send/u/bob", 1, `{"cid":"dup-1","body":"once"}`) // packet id 1
		dup := append([]byte{pub[0] | 0x08}, pub[1:]...)                          // the DUP flag
		for i, p := range [][]byte{pub, dup, dup} {
			if _, err := conn.Write(p); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x40 || ack[3] != 1 {
				t.Fatalf("send %d: PUBACK %x, %v", i, ack, err)
			}
		}
		if ev := bob.nextKind("message"); ev.Seq != 1 || ev.CID != "dup-1" {
			t.Fatalf("bob got %+v", ev)
		}
		bob.quiet(300 * time.Millisecond)
		msgs, err := s.Messages(context.Background(), "dm:alice:bob", 0, 10)
		if err != nil || len(msgs) != 1 || msgs[0].Seq != 1 {
			t.Fatalf("stored %d messages (%v), want 1 with seq 1", len(msgs), err)
		}
	})
}
