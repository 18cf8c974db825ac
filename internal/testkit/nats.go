package testkit

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// RunNATS starts an embedded NATS server with opts (nil for none) on
// 127.0.0.1, on opts.Port or a free port when it is 0, and shuts it down
// when tb ends.
func RunNATS(tb testing.TB, opts *natsserver.Options) *natsserver.Server {
	tb.Helper()
	if opts == nil {
		opts = &natsserver.Options{}
	}
	opts.Host, opts.NoLog, opts.NoSigs = "127.0.0.1", true, true
	if opts.Port == 0 {
		opts.Port = -1
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}
