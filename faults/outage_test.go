package faults_test

import (
	"testing"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
)

// TestDatabaseOutage stops PostgreSQL under load and starts it again. parleyd
// stays up (same process, /healthz 200 throughout), /readyz answers 503
// during the outage and 200 after it without a restart, nothing it could not
// store is acknowledged, and the checks of TestBrokerCrash hold.
func TestDatabaseOutage(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	l := startLoad(t, cluster.DB(t))
	srv, sc := l.srv, l.sc
	pid := srv.pid()
	outages := 0
	for o := 1; o <= sc.outages; o++ {
		time.Sleep(sc.outageGap)
		if err := cluster.Stop(); err != nil {
			t.Fatal(err)
		}
		outages++
		stopped := time.Now()
		// How fast /readyz turns is reported; the bounds are generous, for a
		// loaded machine.
		took, ok := waitStatus(srv.url("/readyz"), 503, 30*time.Second)
		if !ok {
			t.Errorf("outage %d: /readyz did not turn 503 within 30s", o)
		}
		// Probe while the database is down: alive, not ready. A probe not
		// answered within httpc's timeout is counted as slow, not failed;
		// a wrong status fails.
		length := between(l.rng, sc.outageMin, sc.outageMax)
		probes, slow := 0, 0
		for time.Since(stopped) < length {
			for _, p := range []struct {
				path string
				want int
			}{{"/healthz", 200}, {"/readyz", 503}} {
				switch code := status(srv.url(p.path)); code {
				case p.want:
				case 0:
					slow++
				default:
					t.Errorf("outage %d: %s %d during the outage, want %d", o, p.path, code, p.want)
				}
			}
			probes++
			time.Sleep(250 * time.Millisecond)
		}
		if slow == 2*probes && probes > 0 {
			t.Errorf("outage %d: no probe of %d answered during the outage", o, probes)
		}
		if err := cluster.Start(); err != nil {
			t.Fatal(err)
		}
		back, ok := waitStatus(srv.url("/readyz"), 200, 60*time.Second)
		if !ok {
			t.Fatalf("outage %d: /readyz not 200 within 60s of PostgreSQL starting", o)
		}
		if !srv.running() || srv.pid() != pid {
			t.Fatalf("outage %d: parleyd did not stay up (running %v, pid %d, was %d)", o, srv.running(), srv.pid(), pid)
		}
		t.Logf("outage %d: database down %v; /readyz 503 after %v, 200 again %v after the start; %d probes during it, %d requests unanswered within %v",
			o, time.Since(stopped).Round(time.Millisecond), took.Round(time.Millisecond), back.Round(time.Millisecond), probes, slow, httpc.Timeout)
	}
	time.Sleep(sc.tail)
	l.check("outage", func(r *report) { r.outages = outages })
	if srv.starts != 1 {
		t.Errorf("parleyd was started %d times, want once", srv.starts)
	}
}
