package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultConnectTimeout bounds the time from accepting a connection to its
// CONNECT packet (including the TLS or WebSocket handshake).
const DefaultConnectTimeout = 10 * time.Second

// deadlineListener gives every accepted connection a read deadline; the
// broker replaces it with the keepalive deadline once CONNECT arrives, so a
// socket that never sends CONNECT is closed instead of held forever.
//
// It also keeps accepting through errors: mochi's listeners stop for good
// on the first error Accept returns, and running out of file descriptors
// (EMFILE, ENFILE) must not end a listener. Such an error is logged and
// retried after a pause that doubles from 5 ms to a second, as net/http
// does; connections wait in the kernel's backlog meanwhile. Only a closed
// listener ends it.
type deadlineListener struct {
	net.Listener
	d   time.Duration
	log *slog.Logger
	// linger gives TCP connections a lingering close (see lingerConn).
	linger bool
}

func (l deadlineListener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(l.d))
			if tc, ok := c.(*net.TCPConn); ok && l.linger {
				return &lingerConn{TCPConn: tc}, nil
			}
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if pause == 0 {
			pause = 5 * time.Millisecond
		} else {
			pause = min(2*pause, time.Second)
		}
		if l.log != nil {
			l.log.Warn("accept failed, retrying", "addr", l.Addr().String(), "error", err, "pause", pause)
		}
		time.Sleep(pause)
	}
}

// lingerTime bounds how long a closed connection's input is read and
// discarded (see lingerConn).
const lingerTime = 2 * time.Second

// lingerConn closes a TCP connection the way HTTP servers do ("lingering
// close"): Close sends what was written and a FIN at once, then reads and
// discards the client's input until the client closes too, for at most
// lingerTime, and only then closes the socket. Closing a socket with unread
// input makes the kernel answer with a reset, and a client that is still
// sending (acknowledging the packets before a DISCONNECT, say) gets
// "connection reset" instead of reading the DISCONNECT and its reason code:
// the Paho suite's test_flow_control2 (DISCONNECT 0x93 after the Receive
// Maximum was exceeded) failed so. Nothing read after Close reaches the
// broker: Read returns net.ErrClosed from then on.
type lingerConn struct {
	*net.TCPConn
	closed atomic.Bool
	once   sync.Once
}

// Read reads from the connection until Close.
func (c *lingerConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.TCPConn.Read(p)
	if c.closed.Load() {
		return 0, net.ErrClosed // read after Close began: discarded
	}
	return n, err
}

// Close half-closes the connection and closes it for good once the client
// has closed its side or lingerTime has passed.
func (c *lingerConn) Close() error {
	first := false
	c.once.Do(func() { first = true })
	if !first {
		return nil
	}
	c.closed.Store(true)
	if err := c.TCPConn.CloseWrite(); err != nil {
		return c.TCPConn.Close()
	}
	// Wake a Read in progress (it then returns net.ErrClosed).
	_ = c.TCPConn.SetReadDeadline(time.Now())
	go func() {
		defer c.TCPConn.Close()
		deadline := time.Now().Add(lingerTime)
		buf := make([]byte, 512)
		for {
			_ = c.TCPConn.SetReadDeadline(deadline)
			if _, err := c.TCPConn.Read(buf); err != nil {
				return
			}
		}
	}()
	return nil
}

// connSet is the connections of a listener that are still being served,
// so that closing the listener can close them: mochi's Close waits for every
// connection, including one that has not sent CONNECT yet (its deadline is
// ConnectTimeout away), and only closes those that have.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add adds c; false when the set is closed (c should be closed too).
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeAll closes every connection in the set and every one added later.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// netListener wraps mochi's Net listener (TCP, TLS). It logs how each
// connection ended at debug level with a message, instead of mochi, which
// logs each one as WARN with an empty message: a refused CONNECT (already
// logged as "connect refused"), a client that hangs up before CONNECT. Its
// Close also closes the connections that have not sent CONNECT yet.
type netListener struct {
	listeners.Listener
	log   *slog.Logger
	conns connSet
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		if !l.conns.add(c) {
			c.Close()
			return nil
		}
		defer l.conns.remove(c)
		if err := establish(id, c); err != nil {
			l.log.Debug("mqtt connection ended", "listener", id, "remote", c.RemoteAddr().String(), "error", err)
		}
		return nil
	})
}

func (l *netListener) Close(closeClients listeners.CloseFn) {
	l.Listener.Close(closeClients)
	l.conns.closeAll()
}
