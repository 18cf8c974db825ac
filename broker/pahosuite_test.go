//go:build paho

package broker_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
)

// TestPahoSuitesCluster runs the Eclipse Paho interoperability suites
// (github.com/eclipse/paho.mqtt.testing, not vendored: PAHO_TESTING_DIR
// names a checkout) against two cluster nodes in open mode, with the
// suites' clients spread over both: the suites connect to a TCP proxy that
// sends each new connection to the other node than the one before.
// It is built only with the paho tag: scripts/paho-suite.sh runs it
// (go test -tags paho, with PAHO_TESTING_DIR set). It fails when a score
// is below PAHO_MIN_V311 (default 10 of 10) or PAHO_MIN_V5 (default 25 of
// 27: two MQTT 5 tests race against themselves, see scripts/paho-suite.sh).
func TestPahoSuitesCluster(t *testing.T) {
	dir := os.Getenv("PAHO_TESTING_DIR")
	if dir == "" {
		t.Fatal("PAHO_TESTING_DIR: not set (scripts/paho-suite.sh sets it)")
	}
	suite := filepath.Join(dir, "interoperability")
	if _, err := os.Stat(filepath.Join(suite, "client_test5.py")); err != nil {
		t.Fatalf("PAHO_TESTING_DIR: %v", err)
	}
	c := startCluster(t, 2, func(o *broker.Options) {
		o.Anonymous = true
		withACL(t, "* deny test/nosubscribe\n* readwrite #\n* readwrite $TopicA/#\n")(o)
	})
	port := alternate(t, c.nodes[0].mqtt, c.nodes[1].mqtt)
	// The suites read -p themselves but hand sys.argv on to unittest,
	// which refuses it: scripts/paho-drive.py runs them.
	drive, err := filepath.Abs("../scripts/paho-drive.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		script, env string
		min         int
	}{{"client_test.py", "PAHO_MIN_V311", 10}, {"client_test5.py", "PAHO_MIN_V5", 25}} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		cmd := exec.CommandContext(ctx, "python3", drive, s.script, strconv.Itoa(port))
		cmd.Dir = suite
		out, _ := cmd.CombinedOutput()
		cancel()
		total := 0
		if m := regexp.MustCompile(`(?m)^Ran (\d+) tests`).FindSubmatch(out); m != nil {
			total, _ = strconv.Atoi(string(m[1]))
		}
		failed := regexp.MustCompile(`(?m)^(FAIL|ERROR): test\S*`).FindAll(out, -1)
		t.Logf("paho-suite over two nodes: %s %d/%d %s", s.script, total-len(failed), total, failed)
		min := s.min
		if v := os.Getenv(s.env); v != "" {
			min, _ = strconv.Atoi(v)
		}
		if total == 0 || total-len(failed) < min {
			t.Errorf("%s: %d/%d, below %d; output:\n%s", s.script, total-len(failed), total, min, tail(out, 4000))
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// alternate listens on a loopback port and relays each accepted connection
// to the next of addrs in turn; it returns the port.
func alternate(t *testing.T, addrs ...string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addrs[i%len(addrs)])
			if err != nil {
				in.Close()
				continue
			}
			wg.Add(2)
			relay := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				// Half-close so that the other direction drains, then both end.
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				} else {
					dst.Close()
				}
			}
			up := make(chan struct{})
			go func() {
				relay(out, in)
				close(up)
			}()
			go func() {
				relay(in, out)
				// The server is done: let the client's last packets drain
				// (closing with unread input would reset the client before
				// it reads the server's last packet), then end both.
				select {
				case <-up:
				case <-time.After(3 * time.Second):
				}
				in.Close()
				out.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
