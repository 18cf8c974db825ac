package parley_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/parley-im/parley/clients/parley"
	"github.com/parley-im/parley/internal/testkit"
)

// TestNoGoroutineLeak: clients that connected, sent, received, filled REST
// requests, watched presence and lived through a broker restart leave no
// goroutine behind after Close.
func TestNoGoroutineLeak(t *testing.T) {
	e := setup(t, testkit.OpenSQLite(t))
	ctx := ctxT(t)
	// Warm up what lives for the whole process (the broker's own
	// goroutines, HTTP transports, timers).
	warm := e.dial("warm", "w")
	mustSend(t, ctx, warm, parley.User("bob"), "warm up")
	warm.Close()
	baseline := settle(runtime.NumGoroutine())

	for range 3 {
		alice := e.dial("alice", "a")
		bob := e.dial("bob", "b")
		m := mustSend(t, ctx, alice, parley.User("bob"), "hi")
		messages(t, bob, m.Conv, 1)
		mustSend(t, ctx, bob, parley.User("alice"), "hi") // contacts: both wrote
		if err := bob.Presence(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.History(ctx, m.Conv, parley.HistoryOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := bob.MarkRead(ctx, m.Conv, m.Seq); err != nil {
			t.Fatal(err)
		}
		alice.Close()
		bob.Close()
		// A client closed while the broker is away.
		carol := e.dial("carol", "c")
		e.Stop()
		time.Sleep(100 * time.Millisecond)
		carol.Close()
		e.Start()
	}

	const tolerance = 3
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline+tolerance {
			t.Logf("goroutines: %d before, %d after", baseline, n)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d before, %d after Close:\n%s", baseline, n, buf)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle waits for the goroutine count to stop falling and returns it.
func settle(n int) int {
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}
