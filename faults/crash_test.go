package faults_test

import (
	"testing"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
)

// TestBrokerCrash kills parleyd with SIGKILL at random moments under a steady
// load of direct and group messages, restarting it each time on the same
// database and ports. Afterwards every acknowledged message has reached every
// member device, each conversation reads 1..N with no gap and in order, no
// message surfaced twice, and every device agrees with the store.
func TestBrokerCrash(t *testing.T) {
	l := startLoad(t, pgtest.DB(t))
	srv, sc := l.srv, l.sc
	for k := 1; k <= sc.kills; k++ {
		time.Sleep(between(l.rng, sc.killGapMin, sc.killGapMax))
		srv.kill()
		down := between(l.rng, 0, 500*time.Millisecond)
		time.Sleep(down)
		start := time.Now()
		srv.start()
		t.Logf("kill %d: down %v, ready again %v after the restart", k, down.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(sc.tail)
	l.check("crash", func(r *report) { r.kills = srv.kills })
}
