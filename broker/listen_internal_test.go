package broker

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/parley-im/parley/internal/testkit"
)

// emfileListener fails its first n Accepts with EMFILE, as a process out of
// file descriptors does.
type emfileListener struct {
	net.Listener
	n atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptSurvivesEMFILE: running out of file descriptors does not end a
// listener (mochi's would stop for good on the first Accept error): Accept
// waits and accepts the connection once descriptors are back; a closed
// listener ends it.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &emfileListener{Listener: ln}
	fl.n.Store(4)
	dl := deadlineListener{Listener: fl, d: DefaultConnectTimeout, log: testkit.Logger()}
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	c, err := dl.Accept()
	if err != nil {
		t.Fatalf("Accept after 4 EMFILE errors = %v, want the connection", err)
	}
	c.Close()
	if n := fl.n.Load(); n >= 0 {
		t.Fatalf("Accept did not go through the EMFILE errors (%d left)", n)
	}
	ln.Close()
	if _, err := dl.Accept(); err == nil {
		t.Fatal("Accept on a closed listener returned a connection")
	}
}
