package main

import (
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

// server is the real parleyd binary serving, with its standard error.
type server struct {
	cmd    *exec.Cmd
	stderr *testkit.Buffer
	done   chan error
}

// startBin starts parleyd with env (see binEnv) and waits for its start-up
// banner.
func startBin(t *testing.T, env ...string) *server {
	t.Helper()
	s := &server{cmd: exec.Command(parleydBin(t)), stderr: &testkit.Buffer{}, done: make(chan error, 1)}
	s.cmd.Dir = t.TempDir()
	s.cmd.Env = binEnv(env...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.cmd.Process.Kill() })
	deadline := time.After(30 * time.Second)
	for !strings.Contains(s.stderr.String(), "Parley is running") {
		select {
		case err := <-s.done:
			t.Fatalf("parleyd exited during start-up: %v\n%s", err, s.stderr)
		case <-deadline:
			t.Fatalf("no start-up banner within 30s:\n%s", s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return s
}

// stop sends SIGINT and fails unless parleyd exits 0 within 20 s. It
// returns everything parleyd wrote to standard error.
func (s *server) stop(t *testing.T) string {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGINT\n%s", s.stderr)
	}
	return s.stderr.String()
}

// TestCleanLog: refused CONNECTs, a connection closed before CONNECT, then
// SIGINT with a TCP and a WebSocket connection that have not sent CONNECT:
// the log has the refusals once each (as "connect refused"), no empty WARN
// and no ERROR, and parleyd exits 0 at once.
func TestCleanLog(t *testing.T) {
	mqttAddr, wsAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	s := startBin(t, "PARLEY_MQTT_ADDR="+mqttAddr, "PARLEY_WS_ADDR="+wsAddr, "PARLEY_HTTP_ADDR=127.0.0.1:0",
		"PARLEY_JWT_SECRET=clean-log-secret-clean-log-secret")
	for i := range 3 {
		o := pahov3.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(fmt.Sprintf("mallory/%d", i)).
			SetUsername("mallory").SetPassword("not-a-token").SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4)
		c := pahov3.NewClient(o)
		if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() == nil {
			t.Fatalf("connect with a bad token: %v, want refused", tk.Error())
		}
	}
	if c, err := net.Dial("tcp", mqttAddr); err == nil {
		c.Close() // hangs up before CONNECT
	}
	idle, err := net.Dial("tcp", mqttAddr) // still silent at shutdown
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+wsAddr+"/mqtt", nil)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.Close()
	time.Sleep(100 * time.Millisecond) // let the server upgrade and start waiting for CONNECT
	start := time.Now()
	log := s.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v: connections without CONNECT held it up", d)
	}
	if n := strings.Count(log, `msg="connect refused"`); n != 3 {
		t.Errorf("%d connect refused lines, want 3", n)
	}
	for _, bad := range []string{`msg=""`, "level=ERROR", "use of closed network connection"} {
		if strings.Contains(log, bad) {
			t.Errorf("log contains %s:\n%s", bad, log)
		}
	}
}

// TestBanner: on PostgreSQL in cluster mode the start-up banner names the
// store (user, host, database, no password), the node and the NATS URL (no
// credentials), and how to get a token.
func TestBanner(t *testing.T) {
	db, err := url.Parse(pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	db.User = url.UserPassword("postgres", "pg-hunter2") // the test cluster trusts every login
	ns := testkit.RunNATS(t, &natsserver.Options{Username: "node", Password: "nats-hunter2"})
	natsURL := fmt.Sprintf("nats://node:nats-hunter2@%s", ns.Addr())
	s := startBin(t, "PARLEY_DATABASE_URL="+db.String(), "PARLEY_JWT_SECRET=banner-secret-banner-secret-banner",
		"PARLEY_NATS_URL="+natsURL, "PARLEY_NODE_ID=node-a", "PARLEY_WS_ADDR=", "PARLEY_LOG_LEVEL=warn")
	log := s.stop(t)
	for _, want := range []string{
		"store: PostgreSQL at postgres@" + db.Host + db.Path + ")",
		"Cluster mode: node node-a, NATS nats://" + ns.Addr().String(),
		"token alice",
		"PARLEY_JWT_SECRET",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("banner does not contain %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "hunter2") {
		t.Errorf("a password leaks:\n%s", log)
	}
}
