package cluster

import (
	"maps"
	"sync"
	"testing"
	"time"
)

// fakePlain is a Plain that records every call; PlainClaim waits for gate
// when it is set.
type fakePlain struct {
	mu     sync.Mutex
	frames []string                  // "node:frame"
	claims []string                  // "client@node"
	shares map[string]map[string]int // by node; a nil entry: forgotten
	gate   chan struct{}
}

func (p *fakePlain) PlainPublish(node string, frame []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frames = append(p.frames, node+":"+string(frame))
}

func (p *fakePlain) PlainClaim(client, node string, resume bool) {
	p.mu.Lock()
	p.claims = append(p.claims, client+"@"+node)
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		<-gate
	}
}

func (p *fakePlain) PlainShares(node string, shares map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shares == nil {
		p.shares = map[string]map[string]int{}
	}
	p.shares[node] = shares
}

// until polls cond under p's lock for up to 10s.
func (p *fakePlain) until(t testing.TB, what string, cond func(*fakePlain) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		p.mu.Lock()
		ok := cond(p)
		p.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

// TestBusPlain: publishes reach the other node only; a claim reaches every
// other node and, when the other node held the session, returns only once
// that node has dropped it; shared-subscription members are announced, and
// forgotten when their node leaves.
func TestBusPlain(t *testing.T) {
	pa, pb := &fakePlain{}, &fakePlain{}
	a, b, _, _ := pair(t, func(bus *Bus, _ *fakeLocal) {
		if bus.Node == "A" {
			bus.Plain = pa
		} else {
			bus.Plain = pb
		}
	})

	t.Run("Publish", func(t *testing.T) {
		a.PublishPlain([]byte("frame1"))
		pb.until(t, "B gets A's publish", func(p *fakePlain) bool { return len(p.frames) == 1 && p.frames[0] == "A:frame1" })
		b.PublishPlain([]byte("frame2"))
		pa.until(t, "A gets B's publish", func(p *fakePlain) bool { return len(p.frames) == 1 })
		pb.mu.Lock()
		defer pb.mu.Unlock()
		if len(pb.frames) != 1 {
			t.Fatalf("B got its own publish: %v", pb.frames)
		}
	})

	t.Run("ClaimWaitsForHolder", func(t *testing.T) {
		gate := make(chan struct{})
		pb.mu.Lock()
		pb.gate = gate
		pb.mu.Unlock()
		done := make(chan struct{})
		go func() {
			a.ClaimPlain("meter", true, "B")
			close(done)
		}()
		pb.until(t, "B is asked to release", func(p *fakePlain) bool { return len(p.claims) == 1 && p.claims[0] == "meter@A" })
		select {
		case <-done:
			t.Fatal("the claim returned before the holder released the session")
		default:
		}
		close(gate)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the claim did not return after the release")
		}
		pb.mu.Lock()
		pb.gate = nil
		pb.mu.Unlock()
	})

	t.Run("ClaimWithoutHolder", func(t *testing.T) {
		a.ClaimPlain("fresh", false, "")
		pb.until(t, "B hears of the claim", func(p *fakePlain) bool { return len(p.claims) == 2 && p.claims[1] == "fresh@A" })
	})

	t.Run("Shares", func(t *testing.T) {
		want := map[string]int{"$share/g/jobs/#": 2}
		a.SharePlain(want)
		pb.until(t, "B learns A's members", func(p *fakePlain) bool { return maps.Equal(p.shares["A"], want) })
		a.Close()
		pb.until(t, "B forgets A's members when A leaves", func(p *fakePlain) bool {
			s, ok := p.shares["A"]
			return ok && s == nil
		})
	})
}
