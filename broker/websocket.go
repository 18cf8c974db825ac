package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// WebsocketPath is the HTTP path of MQTT over WebSocket.
const WebsocketPath = "/mqtt"

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", binary frames)
// on a net.Listener that it is given, at WebsocketPath.
type wsListener struct {
	id        string
	ln        net.Listener
	log       *slog.Logger
	srv       *http.Server
	establish listeners.EstablishFn
	upgrader  websocket.Upgrader
	once      sync.Once
	conns     connSet // upgraded connections, closed by Close
	// connectTimeout bounds the wait for CONNECT after the upgrade.
	connectTimeout time.Duration
	// readHeaderTimeout and idleTimeout bound the upgrade request's headers
	// and the wait between requests on a connection not (yet) upgraded. There
	// is no ReadTimeout: the upgraded connection's deadlines are set in handle.
	readHeaderTimeout, idleTimeout time.Duration
}

var _ listeners.Listener = (*wsListener)(nil)

func newWebsocket(id string, ln net.Listener, log *slog.Logger, connectTimeout time.Duration) *wsListener {
	return &wsListener{id: id, ln: ln, log: log, connectTimeout: connectTimeout, upgrader: websocket.Upgrader{
		Subprotocols: []string{"mqtt", "mqttv3.1"},
		CheckOrigin:  func(*http.Request) bool { return true }, // MQTT authenticates with its own CONNECT
	}}
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(*slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc(WebsocketPath, l.handle)
	if l.readHeaderTimeout <= 0 {
		l.readHeaderTimeout = DefaultHTTPReadHeaderTimeout
	}
	if l.idleTimeout <= 0 {
		l.idleTimeout = DefaultHTTPIdleTimeout
	}
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: l.readHeaderTimeout, IdleTimeout: l.idleTimeout}
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	// The broker closes the net.Listener itself before mochi closes this
	// listener (see Broker.Close), so Serve ends with net.ErrClosed rather
	// than http.ErrServerClosed on every clean shutdown.
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		l.log.Error("websocket listener", "error", err)
	}
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	if !l.conns.add(c.UnderlyingConn()) {
		return
	}
	defer l.conns.remove(c.UnderlyingConn())
	// The HTTP server's deadlines end here; the connect timeout set by the
	// listener goes on until CONNECT, then the MQTT keepalive takes over.
	_ = c.UnderlyingConn().SetWriteDeadline(time.Time{})
	_ = c.SetReadDeadline(time.Now().Add(l.connectTimeout))
	if err := l.establish(l.id, &wsConn{Conn: c.UnderlyingConn(), c: c}); err != nil {
		l.log.Debug("websocket client", "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx) // does not see upgraded connections
	})
	closeClients(l.id)
	// Connections that have not sent CONNECT yet are no client of mochi's,
	// but its Close waits for them.
	l.conns.closeAll()
}

// wsConn is a WebSocket connection as a net.Conn of binary frames.
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary frames")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.wm.Lock()
	defer ws.wm.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }

// SetWriteDeadline sets the deadline of the WebSocket writer (which would
// otherwise reset the connection's own deadline on every frame).
// The writer's deadline is a plain field in gorilla/websocket: it is set
// under the same lock as writes.
func (ws *wsConn) SetWriteDeadline(t time.Time) error {
	ws.wm.Lock()
	defer ws.wm.Unlock()
	return ws.c.SetWriteDeadline(t)
}

// SetDeadline sets the read and write deadlines.
func (ws *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(ws.c.SetReadDeadline(t), ws.SetWriteDeadline(t))
}

// SetReadDeadline sets the read deadline.
func (ws *wsConn) SetReadDeadline(t time.Time) error { return ws.c.SetReadDeadline(t) }
