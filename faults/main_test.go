// Package faults_test runs parleyd as a separate process against a real
// PostgreSQL and breaks things under load: the broker is killed with SIGKILL,
// the database is stopped, a client floods and another reads slowly. After
// each run it checks Parley's promise from the outside: every acknowledged
// message reaches every member device, per conversation the seqs are 1..N
// without a gap, nothing surfaces twice, and what clients saw agrees with the
// store.
//
// PARLEY_FAULT_SCALE=short (default, a few minutes in all) or long (make
// soak) sets sizes and durations; PARLEY_FAULT_SEED fixes the random kill
// times to replay a run.
package faults_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/pgtest"
)

// parleydBin is the parleyd binary built once by TestMain.
var parleydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	parleydBin = filepath.Join(dir, "parleyd")
	build := exec.Command("go", "build", "-o", parleydBin, "github.com/parley-im/parley/cmd/parleyd")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: go build parleyd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// scale holds the sizes and durations of a run.
type scale struct {
	name string

	// Crash: kills SIGKILLs at random gaps in [killGapMin, killGapMax] of
	// load, then tail more seconds of load.
	kills                  int
	killGapMin, killGapMax time.Duration
	tail                   time.Duration
	// Outage: outages database stops of outageMin..outageMax each, with
	// outageGap of load before each and tail after the last.
	outages              int
	outageMin, outageMax time.Duration
	outageGap            time.Duration
	// sendInterval paces each sender of the crash and outage loads.
	sendInterval time.Duration

	// Overload: load lasts overloadFor; chatty senders send every
	// chatInterval; the flooder publishes floodBurst messages every 10ms; the
	// slow consumer sleeps slowDelay per delivery.
	overloadFor  time.Duration
	chatInterval time.Duration
	floodBurst   int
	slowDelay    time.Duration
	rate         int // PARLEY_RATE for the overload run

	// quiesce bounds the wait for every device to have everything.
	quiesce time.Duration
}

var scales = map[string]scale{
	"short": {
		name: "short", kills: 3, killGapMin: time.Second, killGapMax: 5 * time.Second, tail: 3 * time.Second,
		outages: 1, outageMin: 4 * time.Second, outageMax: 4 * time.Second, outageGap: 4 * time.Second,
		sendInterval: 40 * time.Millisecond,
		overloadFor:  10 * time.Second, chatInterval: 25 * time.Millisecond, floodBurst: 10, slowDelay: 10 * time.Millisecond, rate: 50,
		quiesce: 90 * time.Second,
	},
	"long": {
		name: "long", kills: 40, killGapMin: 300 * time.Millisecond, killGapMax: 20 * time.Second, tail: 10 * time.Second,
		outages: 8, outageMin: 2 * time.Second, outageMax: 15 * time.Second, outageGap: 20 * time.Second,
		sendInterval: 20 * time.Millisecond,
		overloadFor:  5 * time.Minute, chatInterval: 25 * time.Millisecond, floodBurst: 20, slowDelay: 10 * time.Millisecond, rate: 50,
		quiesce: 5 * time.Minute,
	},
}

// getScale returns the scale named by PARLEY_FAULT_SCALE (default short).
func getScale(t *testing.T) scale {
	t.Helper()
	name := os.Getenv("PARLEY_FAULT_SCALE")
	if name == "" {
		name = "short"
	}
	s, ok := scales[name]
	if !ok {
		t.Fatalf("PARLEY_FAULT_SCALE=%q: want short or long", name)
	}
	return s
}

// newRand returns the run's random source, seeded from PARLEY_FAULT_SEED
// when set; the seed is logged so that a run can be replayed.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PARLEY_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PARLEY_FAULT_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("PARLEY_FAULT_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// between returns a random duration in [lo, hi].
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// poll calls cond every 50ms until it holds or timeout passes, and reports
// whether it held.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
