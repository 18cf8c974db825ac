package main

// parleyd as its own process, for the connections scenario: started,
// killed and started again by the load generator, its memory and CPU read
// from /proc.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parley-im/parley/internal/auth"
)

// daemon is one parleyd process, and how to start it again on the same
// store and ports.
type daemon struct {
	path     string
	env      []string
	mqttAddr string
	httpAddr string
	secret   []byte
	log      *logCounter

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// newDaemon prepares parleyd at path on free ports of 127.0.0.1, with a new
// HS256 secret, the rate limit off and the catch-up limit raised as in the
// in-process runs. databaseURL "" is the SQLite store in dataDir. The
// process's warnings and errors (it logs JSON) are counted in lc.
func newDaemon(path, dataDir, databaseURL string, lc *logCounter) (*daemon, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("parleyd binary (--parleyd; build it with go build -o bin/parleyd ./cmd/parleyd): %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	d := &daemon{path: path, secret: []byte(hex.EncodeToString(secret)), log: lc,
		mqttAddr: "127.0.0.1:" + strconv.Itoa(ports[0]), httpAddr: "127.0.0.1:" + strconv.Itoa(ports[1])}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env,
		"PARLEY_MQTT_ADDR="+d.mqttAddr, "PARLEY_HTTP_ADDR="+d.httpAddr, "PARLEY_WS_ADDR=", "PARLEY_TLS_ADDR=",
		"PARLEY_JWT_SECRET="+string(d.secret), "PARLEY_DATA_DIR="+dataDir, "PARLEY_DATABASE_URL="+databaseURL,
		"PARLEY_RATE=0", "PARLEY_CATCHUP_LIMIT="+strconv.Itoa(catchupLimit), "PARLEY_WEB=false",
		"PARLEY_LOG_FORMAT=json", "PARLEY_LOG_LEVEL=warn")
	return d, nil
}

// freePorts returns n ports of 127.0.0.1 that nothing listens on, below the
// ephemeral range (32768 and up on Linux), so that no outgoing connection
// takes one while parleyd is down during a storm.
func freePorts(n int) ([]int, error) {
	var out []int
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		b, _ := rand.Int(rand.Reader, big.NewInt(12000))
		p := 20000 + int(b.Int64())
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		if len(out) == 0 || out[0] != p {
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, errors.New("no free port for parleyd between 20000 and 32000")
	}
	return out, nil
}

// sign returns a token for user, signed with the daemon's secret.
func (d *daemon) sign(user string, ttl time.Duration) (string, error) {
	return (&auth.Tokens{Secret: d.secret}).Sign(user, ttl)
}

// start starts parleyd and waits until /readyz answers 200.
func (d *daemon) start(ctx context.Context) error {
	cmd := exec.Command(d.path, "serve")
	cmd.Env = d.env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start parleyd: %w", err)
	}
	done := make(chan struct{})
	logged := make(chan struct{})
	go func() { d.countLog(stderr); close(logged) }()
	go func() { <-logged; _ = cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		if code, _ := d.readyz(ctx, client); code == http.StatusOK {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("parleyd exited at start: %s", cmd.ProcessState)
		case <-ctx.Done():
			d.kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.kill()
			return errors.New("parleyd not ready after 60s")
		}
	}
}

// countLog reads parleyd's JSON log and counts its warnings and errors.
func (d *daemon) countLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue // the start-up banner
		}
		var lv slog.Level
		if lv.UnmarshalText([]byte(rec.Level)) == nil {
			d.log.count(lv, rec.Msg, rec.Error)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// readyz returns the status of one GET /readyz (0 when it failed).
func (d *daemon) readyz(ctx context.Context, client *http.Client) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.httpAddr+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// pid is the running process's id.
func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.Process.Pid
}

// signal sends sig to parleyd and returns the channel closed once it
// ended, or nil when it was never started.
func (d *daemon) signal(sig os.Signal) <-chan struct{} {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	return done
}

// kill kills parleyd with SIGKILL and waits for it to end.
func (d *daemon) kill() {
	if done := d.signal(syscall.SIGKILL); done != nil {
		<-done
	}
}

// stop stops parleyd with SIGTERM, and SIGKILL after 15 seconds.
func (d *daemon) stop() {
	done := d.signal(syscall.SIGTERM)
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		d.kill()
	}
}

// procStats are what /proc and /metrics say about parleyd at one moment.
type procStats struct {
	RSSBytes   int64 `json:"rss_bytes"`  // VmRSS
	HeapBytes  int64 `json:"heap_bytes"` // go_memstats_heap_inuse_bytes
	StackBytes int64 `json:"stack_bytes"`
	SysBytes   int64 `json:"go_sys_bytes"` // go_memstats_sys_bytes: all the Go runtime took from the OS
	Gorouts    int64 `json:"goroutines"`
	OpenFDs    int64 `json:"open_fds"`
	cpu        time.Duration
}

// stats reads parleyd's resident memory and CPU time from /proc and its Go
// heap from /metrics (left 0 when /metrics does not answer).
func (d *daemon) stats(ctx context.Context) (procStats, error) {
	var s procStats
	pid := d.pid()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("parleyd's memory: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			s.RSSBytes = kb << 10
		}
	}
	s.cpu, _ = procCPU(pid)
	metrics, err := d.metrics(ctx)
	if err == nil {
		s.HeapBytes = int64(metrics["go_memstats_heap_inuse_bytes"])
		s.StackBytes = int64(metrics["go_memstats_stack_inuse_bytes"])
		s.SysBytes = int64(metrics["go_memstats_sys_bytes"])
		s.Gorouts = int64(metrics["go_goroutines"])
		s.OpenFDs = int64(metrics["process_open_fds"])
	}
	return s, nil
}

// procCPU is the user and system CPU time of process pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// from after its closing parenthesis. utime and stime are fields 14
	// and 15, in clock ticks (100 per second on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// metrics reads the unlabelled samples of parleyd's /metrics.
func (d *daemon) metrics(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
