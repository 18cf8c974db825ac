package broker

import (
	"net"
	"time"
)

// DefaultConnectTimeout bounds the time from accepting a connection to its
// CONNECT packet (including the TLS or WebSocket handshake).
const DefaultConnectTimeout = 10 * time.Second

// deadlineListener gives every accepted connection a read deadline; the
// broker replaces it with the keepalive deadline once CONNECT arrives, so a
// socket that never sends CONNECT is closed instead of held forever.
type deadlineListener struct {
	net.Listener
	d time.Duration
}

func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(l.d))
	}
	return c, err
}
