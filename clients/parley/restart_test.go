package parley_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/clients/parley"
	"github.com/parley-im/parley/internal/testkit"
)

// TestBrokerRestart is the acceptance test of the SDK: a sending and a
// receiving client, the broker stopped twice under them and started again on
// the same store and the same ports while the sender keeps sending. The
// receiver's only application code is its event handler; it must surface
// every message whose Send returned successfully, exactly once, in seq
// order.
func TestBrokerRestart(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {

		var mu sync.Mutex
		var surfaced []parley.Message
		handler := func(ev parley.Event) {
			if ev.Kind == parley.EventMessage {
				mu.Lock()
				surfaced = append(surfaced, ev.Message)
				mu.Unlock()
			}
		}
		e.dial("bob", "receiver", func(o *parley.Options) { o.Handler = handler })
		alice := e.dial("alice", "sender")

		var acked []parley.Message
		failed := 0
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				m, err := alice.Send(ctx, parley.User("bob"), i)
				cancel()
				if d := time.Since(start); d > 3*time.Second {
					t.Logf("send %d took %v", i, d.Round(time.Millisecond))
				}
				if err != nil {
					t.Logf("send %d: %v", i, err)
					failed++
					continue
				}
				acked = append(acked, m)
				time.Sleep(5 * time.Millisecond)
			}
		}()

		for range 2 {
			time.Sleep(700 * time.Millisecond)
			e.Restart(300 * time.Millisecond)
		}
		time.Sleep(1500 * time.Millisecond)
		close(stop)
		<-done
		if failed > 0 {
			t.Errorf("%d sends failed", failed)
		}
		if len(acked) < 20 {
			t.Fatalf("only %d sends acknowledged", len(acked))
		}

		// A fence after the load: once the receiver surfaced it, it
		// surfaced everything before it, and anything surfaced twice would
		// show before it too.
		fence, err := alice.Send(ctxT(t), parley.User("bob"), "fence")
		if err != nil {
			t.Fatalf("fence: %v", err)
		}
		acked = append(acked, fence)
		testkit.Eventually(t, 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			n := len(surfaced)
			return n > 0 && surfaced[n-1].Seq >= fence.Seq
		})

		mu.Lock()
		got := append([]parley.Message(nil), surfaced...)
		mu.Unlock()
		bySeq := map[int64]parley.Message{}
		for i, m := range got {
			if m.Conv != "dm:alice:bob" {
				t.Fatalf("message of %s", m.Conv)
			}
			if i > 0 && m.Seq != got[i-1].Seq+1 {
				t.Fatalf("surfaced seq %d after %d: not exactly once in order", m.Seq, got[i-1].Seq)
			}
			bySeq[m.Seq] = m
		}
		for _, a := range acked {
			m, ok := bySeq[a.Seq]
			if !ok || m.ID != a.ID || m.CID != a.CID || string(m.Body) != string(a.Body) {
				t.Fatalf("acknowledged message seq %d (id %s, body %s) not surfaced (got %+v)", a.Seq, a.ID, a.Body, m)
			}
		}
		t.Logf("%d messages acknowledged, %d surfaced (seq %d to %d), across 2 restarts", len(acked), len(got), got[0].Seq, got[len(got)-1].Seq)
	})
}
