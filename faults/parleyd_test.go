package faults_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-im/parley/internal/testkit"
)

// httpc answers quickly or not at all: a probe must not hang on a stuck
// server.
var httpc = &http.Client{Timeout: 3 * time.Second}

// status returns the HTTP status of GET url, or 0 when it cannot connect.
func status(url string) int {
	resp, err := httpc.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// server is parleyd running as a child process on fixed ports, so that it
// can be killed and started again where its clients expect it.
type server struct {
	t       *testing.T
	env     []string
	mqtt    string
	http    string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
	kills  int
}

// startServer starts parleyd on the PostgreSQL database dbURL with free
// ports chosen once, below the ephemeral range (testkit.StableAddr) so that
// nothing else takes them while parleyd is killed; env adds or overrides PARLEY_* variables. It returns
// when /readyz answers 200.
func startServer(t *testing.T, dbURL string, env ...string) *server {
	t.Helper()
	s := &server{t: t, mqtt: testkit.StableAddr(t), http: testkit.StableAddr(t), logPath: filepath.Join(t.TempDir(), "parleyd.log")}
	s.env = append(os.Environ(),
		"PARLEY_DATABASE_URL="+dbURL, "PARLEY_JWT_SECRET="+testkit.Secret,
		"PARLEY_MQTT_ADDR="+s.mqtt, "PARLEY_HTTP_ADDR="+s.http, "PARLEY_WS_ADDR=", "PARLEY_TLS_ADDR=",
		"PARLEY_DATA_DIR="+t.TempDir(), "PARLEY_LOG_LEVEL=warn", "PARLEY_RATE=0")
	s.env = append(s.env, env...) // the last value of a key wins
	t.Cleanup(s.shutdown)
	s.start()
	return s
}

// url returns the HTTP URL of path.
func (s *server) url(path string) string { return "http://" + s.http + path }

// start runs the binary and waits until it is ready. A start that fails
// (say, the port is not free yet) is retried a few times.
func (s *server) start() {
	s.t.Helper()
	for attempt := 1; ; attempt++ {
		err := s.startOnce()
		if err == nil {
			return
		}
		if attempt == 5 {
			s.t.Fatalf("parleyd did not start: %v\n%s", err, s.logTail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *server) startOnce() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start %d at %s\n", s.starts+1, time.Now().Format(time.TimeOnly))
	cmd := exec.Command(parleydBin)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.starts++
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited during start-up: %v", cmd.ProcessState)
		default:
		}
		if status(s.url("/readyz")) == 200 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return fmt.Errorf("not ready within 30s")
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.kills++
	s.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	f, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		fmt.Fprintf(f, "=== SIGKILL at %s\n", time.Now().Format(time.TimeOnly))
		f.Close()
	}
}

// pid returns the process id of the running parleyd.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// running reports whether the current process is still alive.
func (s *server) running() bool {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// rss returns the resident set size of parleyd in bytes (VmRSS of
// /proc/PID/status), or 0 when it cannot be read.
func (s *server) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid()))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// logTail returns the last n lines of parleyd's output, all runs.
func (s *server) logTail(n int) string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shutdown stops parleyd with SIGINT (SIGKILL after 15s) and shows its log
// when the test failed.
func (s *server) shutdown() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	if s.t.Failed() {
		s.t.Logf("parleyd log (last lines):\n%s", s.logTail(60))
	}
}

// waitStatus polls url until it answers want, for at most d; it returns how
// long that took and whether it happened.
func waitStatus(url string, want int, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if status(url) == want {
			return time.Since(start), true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), false
}
