// Package brokertest runs brokers for tests: started with the options a test
// gives, closed when the test ends and, for a test that restarts one,
// started again on the same ports and store.
package brokertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
)

// Server is a broker that a test may stop and start again on the same store
// and the same ports. Its methods are safe for concurrent use.
type Server struct {
	t testing.TB

	mu    sync.Mutex
	opts  broker.Options
	b     *broker.Broker
	addrs map[string]string // listener name -> host:port
}

// listeners names each listener the broker may have and its address option.
func listeners(o *broker.Options) map[string]*string {
	return map[string]*string{"mqtt": &o.MQTTAddr, "ws": &o.WSAddr, "tls": &o.TLSAddr, "http": &o.HTTPAddr}
}

// Start starts a broker with opts, fails t if it does not start and closes
// it (not its store) when t ends. Listeners on port 0 get a free port, which
// the broker keeps when the test restarts it.
func Start(t testing.TB, opts broker.Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: opts}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the broker, after the first time on the ports the previous
// one had. A port just released may still be held for a moment: Start
// tries again for 10 s before it fails the test.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	opts := s.opts
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := broker.New(opts)
		if err != nil {
			s.t.Fatalf("broker.New: %v", err)
		}
		err = b.Start(context.Background())
		if err == nil {
			s.mu.Lock()
			s.b = b
			s.addrs = map[string]string{}
			for name, addr := range listeners(&s.opts) {
				if a := b.Addr(name); a != nil {
					s.addrs[name] = a.String()
					if *addr != "" {
						*addr = a.String()
					}
				}
			}
			s.mu.Unlock()
			return
		}
		b.Close(context.Background())
		if time.Now().After(deadline) {
			s.t.Fatalf("broker Start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop closes the broker, not its store, and logs an error closing it. It
// does nothing when the broker is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	b := s.b
	s.b = nil
	s.mu.Unlock()
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		s.t.Logf("broker Close: %v", err)
	}
}

// Restart stops the broker and starts it again after down.
func (s *Server) Restart(down time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(down)
	s.Start()
}

// Broker returns the running broker, or nil when it is stopped.
func (s *Server) Broker() *broker.Broker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

// Addr returns the host:port of the listener name ("mqtt", "ws", "tls" or
// "http") as the broker last started, or "" when it has none.
func (s *Server) Addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}
