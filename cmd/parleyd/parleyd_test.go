package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-im/parley/history/postgres"
	"github.com/parley-im/parley/internal/pgtest"
	"github.com/parley-im/parley/internal/testkit"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", httpAddr)
}

// sendOne connects as alice and sends one message to bob, returning the seq
// of the echo.
func sendOne(t *testing.T, mqttAddr, tok, cid string) int64 {
	t.Helper()
	echo := make(chan int64, 1)
	o := pahov3.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("alice/test").
		SetUsername("alice").SetPassword(tok).SetAutoReconnect(false)
	c := pahov3.NewClient(o)
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect: %v", tk.Error())
	}
	defer c.Disconnect(0)
	c.Subscribe("im/inbox/alice", 1, func(_ pahov3.Client, m pahov3.Message) {
		var ev struct {
			Seq int64
			CID string
		}
		json.Unmarshal(m.Payload(), &ev)
		if ev.CID == cid { // catch-up may first bring earlier messages
			echo <- ev.Seq
		}
	}).Wait()
	if tk := c.Publish("im/send/u/bob", 1, false, `{"cid":"`+cid+`","body":"hi"}`); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("publish: %v", tk.Error())
	}
	select {
	case seq := <-echo:
		return seq
	case <-time.After(5 * time.Second):
		t.Fatal("no echo")
	}
	return 0
}

// TestProcess runs the real binary as `make run` does, on the embedded store:
// it becomes ready, `parleyd token` works against its data dir, SIGINT exits
// 0, and a second run finds the same data and the same secret.
func TestProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "parleyd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := t.TempDir()
	mqttAddr, httpAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	env := append(os.Environ(), "PARLEY_DATA_DIR="+data, "PARLEY_MQTT_ADDR="+mqttAddr, "PARLEY_HTTP_ADDR="+httpAddr,
		"PARLEY_WS_ADDR=", "PARLEY_JWT_SECRET=", "PARLEY_DATABASE_URL=")
	var tok string
	for run := 1; run <= 2; run++ {
		cmd := exec.Command(bin)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, httpAddr)
		if run == 1 {
			tc := exec.Command(bin, "token", "alice", "--ttl", "1h")
			tc.Env = env
			out, err := tc.Output()
			if err != nil {
				t.Fatalf("parleyd token: %v", err)
			}
			tok = strings.TrimSpace(string(out))
		}
		// The second run keeps the first run's data: the seq continues.
		if seq := sendOne(t, mqttAddr, tok, "run"+string(rune('0'+run))); seq != int64(run) {
			t.Fatalf("run %d: seq %d, want %d", run, seq, run)
		}
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: exit: %v\n%s", run, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("run %d: no exit within 20s of SIGINT", run)
		}
		if run == 1 && !strings.Contains(stderr.String(), "token") {
			t.Fatalf("start-up banner does not say how to get a token:\n%s", stderr.String())
		}
	}
	fi, err := os.Stat(filepath.Join(data, secretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v; want 0600", err, fi.Mode())
	}
}

// TestTwoNodesOneDatabase starts two parleyd at once against one empty
// PostgreSQL database: both come up, migrations are applied once, and each
// serves the other's data.
func TestTwoNodesOneDatabase(t *testing.T) {
	url := pgtest.DB(t)
	t.Setenv("PARLEY_DATABASE_URL", url)
	t.Setenv("PARLEY_JWT_SECRET", "two-nodes-secret-two-nodes-secret")
	t.Setenv("PARLEY_WS_ADDR", "")
	mains := make([]*Main, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range mains {
		m := NewMain()
		m.Stderr = &bytes.Buffer{}
		if err := m.ParseFlags("serve", []string{"-mqtt-addr", testkit.FreeAddr(t), "-http-addr", testkit.FreeAddr(t), "-log-level", "warn"}); err != nil {
			t.Fatal(err)
		}
		mains[i] = m
		t.Cleanup(func() { m.Close() })
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = mains[i].Run(context.Background()) }(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	tokCmd := NewMain()
	tokCmd.Stdout = &bytes.Buffer{}
	if err := tokCmd.ParseFlags("token", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if err := tokCmd.Token(); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(tokCmd.Stdout.(*bytes.Buffer).String())
	for i, m := range mains {
		waitReady(t, m.Broker.Addr("http").String())
		if seq := sendOne(t, m.Broker.Addr("mqtt").String(), tok, "n"+string(rune('0'+i))); seq != int64(i+1) {
			t.Fatalf("node %d: seq %d, want %d", i, seq, i+1)
		}
	}
}

// TestFlags: -h lists every PARLEY_ variable with its default; flags win over
// the environment; an empty address disables a listener.
func TestFlags(t *testing.T) {
	m := NewMain()
	var help bytes.Buffer
	m.Stdout = &help
	m.ParseFlags("serve", []string{"-h"})
	for _, env := range []string{"PARLEY_MQTT_ADDR", "PARLEY_WS_ADDR", "PARLEY_TLS_ADDR", "PARLEY_TLS_CERT", "PARLEY_TLS_KEY",
		"PARLEY_HTTP_ADDR", "PARLEY_DATABASE_URL", "PARLEY_DATA_DIR", "PARLEY_JWT_SECRET", "PARLEY_JWT_PUBLIC_KEY",
		"PARLEY_LOG_LEVEL", "PARLEY_LOG_FORMAT", "PARLEY_ACL_FILE", "PARLEY_MAX_PAYLOAD", "PARLEY_RATE", "PARLEY_UPLOAD_QUOTA", "PARLEY_UPLOAD_RATE",
		"PARLEY_NEW_DEVICE_BACKLOG", "PARLEY_CATCHUP_LIMIT", "PARLEY_RECEIPT_GROUP_MAX", "PARLEY_MAX_DEVICES", "PARLEY_MAX_CONNECTIONS", "PARLEY_MQTT_WRITE_QUEUE", "PARLEY_DEVICE_TTL", "default 90d", "PARLEY_MQTT_MAX_EXPIRY",
		"PARLEY_NATS_CREDS", "PARLEY_NATS_NKEY", "PARLEY_NATS_TLS_CA", "PARLEY_NATS_TLS_CERT", "PARLEY_NATS_TLS_KEY",
		":1883", ":8080"} {
		if !strings.Contains(help.String(), env) {
			t.Errorf("-h does not mention %s", env)
		}
	}
	t.Setenv("PARLEY_MQTT_ADDR", "127.0.0.1:1999")
	t.Setenv("PARLEY_WS_ADDR", "")
	t.Setenv("PARLEY_LOG_FORMAT", "json")
	m = NewMain()
	if err := m.ParseFlags("serve", []string{"-mqtt-addr", "127.0.0.1:2000"}); err != nil {
		t.Fatal(err)
	}
	if m.Config.MQTTAddr != "127.0.0.1:2000" || m.Config.WSAddr != "" || m.Config.LogFormat != "json" || m.Config.HTTPAddr != ":8080" {
		t.Fatalf("config = %+v", m.Config)
	}
	t.Setenv("PARLEY_LOG_FORMAT", "yaml")
	if err := NewMain().ParseFlags("serve", nil); err == nil {
		t.Fatal("bad log format accepted")
	}
	t.Setenv("PARLEY_LOG_FORMAT", "text")
	t.Setenv("PARLEY_DATABASE_URL", "postgres://nowhere/x")
	t.Setenv("PARLEY_JWT_SECRET", "")
	m = NewMain()
	m.ParseFlags("serve", nil)
	if err := m.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "PARLEY_JWT_SECRET") {
		t.Fatalf("PostgreSQL without a secret: %v", err)
	}
}

// TestDeviceTTLConfig: PARLEY_DEVICE_TTL and -device-ttl take a Go duration
// or whole days; empty means 90 days; the flag wins; 0 means never.
func TestDeviceTTLConfig(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		name, env string
		args      []string
		want      time.Duration
		ok        bool
	}{
		{"Default", "", nil, 90 * day, true},
		{"Days", "30d", nil, 30 * day, true},
		{"Duration", "36h", nil, 36 * time.Hour, true},
		{"Never", "0", nil, 0, true},
		{"ZeroDays", "0d", nil, 0, true},
		{"FlagWins", "30d", []string{"-device-ttl", "7d"}, 7 * day, true},
		{"FlagDuration", "", []string{"-device-ttl=90m"}, 90 * time.Minute, true},
		{"Negative", "-1h", nil, 0, false},
		{"NegativeDays", "-1d", nil, 0, false},
		{"FractionalDays", "1.5d", nil, 0, false},
		{"Garbage", "soon", nil, 0, false},
		{"NoUnit", "90", nil, 0, false},
		{"DaysOverflow", "999999999d", nil, 0, false},
		{"BadFlag", "", []string{"-device-ttl", "x"}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_DEVICE_TTL", tc.env)
			m := NewMain()
			m.Stderr = &bytes.Buffer{}
			err := m.ParseFlags("serve", tc.args)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseFlags: %v, want ok = %v", err, tc.ok)
			}
			if tc.ok && m.Config.DeviceTTL != tc.want {
				t.Fatalf("DeviceTTL = %v, want %v", m.Config.DeviceTTL, tc.want)
			}
			if !tc.ok && tc.env != "" && !strings.Contains(err.Error(), "PARLEY_DEVICE_TTL") {
				t.Fatalf("error %q does not name PARLEY_DEVICE_TTL", err)
			}
		})
	}
}

// TestNATSConfigErrors: NATS credential and TLS settings that cannot work
// stop parleyd at start-up, before the store is opened, with an error naming
// the setting.
func TestNATSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not PEM, not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		name     string
		env      map[string]string
		contains []string
	}{
		{"CredsWithoutURL", map[string]string{"PARLEY_NATS_URL": "", "PARLEY_NATS_CREDS": garbage}, []string{"PARLEY_NATS_URL"}},
		{"TLSWithoutURL", map[string]string{"PARLEY_NATS_URL": "", "PARLEY_NATS_TLS_CA": garbage}, []string{"PARLEY_NATS_URL"}},
		{"MissingCreds", map[string]string{"PARLEY_NATS_CREDS": missing}, []string{"PARLEY_NATS_CREDS", missing, "no such file"}},
		{"GarbageCreds", map[string]string{"PARLEY_NATS_CREDS": garbage}, []string{"PARLEY_NATS_CREDS", "no valid user JWT"}},
		{"MissingNKey", map[string]string{"PARLEY_NATS_NKEY": missing}, []string{"PARLEY_NATS_NKEY", missing}},
		{"GarbageNKey", map[string]string{"PARLEY_NATS_NKEY": garbage}, []string{"PARLEY_NATS_NKEY", "NKey seed file"}},
		{"CredsAndNKey", map[string]string{"PARLEY_NATS_CREDS": garbage, "PARLEY_NATS_NKEY": garbage}, []string{"not both"}},
		{"MissingCA", map[string]string{"PARLEY_NATS_TLS_CA": missing}, []string{"PARLEY_NATS_TLS_CA", "no such file"}},
		{"GarbageCA", map[string]string{"PARLEY_NATS_TLS_CA": garbage}, []string{"PARLEY_NATS_TLS_CA", "no PEM certificate"}},
		{"CertWithoutKey", map[string]string{"PARLEY_NATS_TLS_CERT": garbage}, []string{"PARLEY_NATS_TLS_KEY", "together"}},
		{"MissingCert", map[string]string{"PARLEY_NATS_TLS_CERT": missing, "PARLEY_NATS_TLS_KEY": missing}, []string{"PARLEY_NATS_TLS_CERT", "no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := map[string]string{"PARLEY_DATABASE_URL": "postgres://nowhere.invalid/x", "PARLEY_JWT_SECRET": "nats-config-secret-nats-config-secret",
				"PARLEY_NATS_URL": "nats://127.0.0.1:1", "PARLEY_NATS_CREDS": "", "PARLEY_NATS_NKEY": "",
				"PARLEY_NATS_TLS_CA": "", "PARLEY_NATS_TLS_CERT": "", "PARLEY_NATS_TLS_KEY": ""}
			for k, v := range tc.env {
				base[k] = v
			}
			for k, v := range base {
				t.Setenv(k, v)
			}
			m := NewMain()
			m.Stderr = &bytes.Buffer{}
			if err := m.ParseFlags("serve", []string{"-mqtt-addr", "127.0.0.1:0", "-http-addr", "", "-ws-addr", ""}); err != nil {
				t.Fatal(err)
			}
			err := m.Run(context.Background())
			t.Cleanup(func() { m.Close() })
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, want := range tc.contains {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// TestMigrateCommand: `parleyd migrate` brings an empty database (and an
// empty data dir) to the latest schema.
func TestMigrateCommand(t *testing.T) {
	url := pgtest.DB(t)
	t.Setenv("PARLEY_DATABASE_URL", url)
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags("migrate", nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := postgres.New(pool).Ping(context.Background()); err != nil {
		t.Fatalf("after migrate: %v", err)
	}
	t.Setenv("PARLEY_DATABASE_URL", "")
	dir := t.TempDir()
	m = NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags("migrate", []string{"-data-dir", dir}); err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate sqlite: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "parley.db")); err != nil {
		t.Fatal(err)
	}
}

// TestMQTTMaxExpiryConfig: PARLEY_MQTT_MAX_EXPIRY takes a Go duration or
// whole days; empty means 24 h; 0 means no bound (broker option negative).
func TestMQTTMaxExpiryConfig(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		want      time.Duration
	}{{"Default", "", 24 * time.Hour}, {"Days", "7d", 7 * 24 * time.Hour}, {"None", "0", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PARLEY_MQTT_MAX_EXPIRY", tc.env)
			m := NewMain()
			m.Stderr = &bytes.Buffer{}
			if err := m.ParseFlags("serve", nil); err != nil {
				t.Fatal(err)
			}
			if m.Config.MQTTMaxExpiry != tc.want {
				t.Fatalf("MQTTMaxExpiry = %v, want %v", m.Config.MQTTMaxExpiry, tc.want)
			}
		})
	}
	t.Setenv("PARLEY_MQTT_MAX_EXPIRY", "soon")
	m := NewMain()
	m.Stderr = &bytes.Buffer{}
	if err := m.ParseFlags("serve", nil); err == nil {
		t.Fatal("PARLEY_MQTT_MAX_EXPIRY=soon accepted")
	}
}
