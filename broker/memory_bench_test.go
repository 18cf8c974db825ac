package broker_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// BenchmarkMemoryPerConnection reports what one idle device costs in Go
// memory (heap in use and goroutine stacks, after two collections): b.N
// devices connect over TCP one after another, each subscribes to its inbox
// and stays. "parley" is the broker on SQLite, every device authenticated
// with a token ("parley-writequeue-64" with Options.MQTTWriteQueue 64);
// "mochi" is a bare mochi-mqtt server (allow-all, Parley's
// write queue of 1,024) and "mochi-default" the same with mochi's defaults,
// for comparison (issue 19: docs/benchmarks.md). Run with:
//
//	go test -run '^$' -bench MemoryPerConnection -benchtime 3000x ./broker/
func BenchmarkMemoryPerConnection(b *testing.B) {
	for _, bc := range []struct {
		name  string
		queue int
	}{{"parley", 0}, {"parley-writequeue-64", 64}} {
		b.Run(bc.name, func(b *testing.B) {
			e := setup(b, testkit.OpenSQLite(b), func(o *broker.Options) { o.MQTTWriteQueue = bc.queue })
			tokens := make([]string, b.N)
			for i := range tokens {
				tokens[i] = testkit.Token(b, fmt.Sprintf("u%06d", i))
			}
			measureConnections(b, e.mqtt, func(i int) []byte {
				user := fmt.Sprintf("u%06d", i)
				return connectBody(user+"/d", user, tokens[i])
			})
		})
	}
	for _, bc := range []struct {
		name    string
		pending int32
	}{{"mochi", 1024}, {"mochi-default", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			caps := mqtt.NewDefaultServerCapabilities()
			if bc.pending > 0 {
				caps.MaximumClientWritesPending = bc.pending
			}
			s := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err := s.AddHook(new(mochiauth.AllowHook), nil); err != nil {
				b.Fatal(err)
			}
			l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
			if err := s.AddListener(l); err != nil {
				b.Fatal(err)
			}
			if err := s.Serve(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			measureConnections(b, l.Address(), func(i int) []byte {
				return connectBody(fmt.Sprintf("u%06d", i), "", "")
			})
		})
	}
}

// connectBody is the body of an MQTT 3.1.1 CONNECT (clean session, keep
// alive 60 s), with a username and password when user is not empty.
func connectBody(clientID, user, password string) []byte {
	flags := byte(0x02)
	if user != "" {
		flags |= 0xC0
	}
	body := append(mqttStr("MQTT"), 4, flags, 0, 60)
	body = append(body, mqttStr(clientID)...)
	if user != "" {
		body = append(body, mqttStr(user)...)
		body = append(body, mqttStr(password)...)
	}
	return body
}

// measureConnections connects b.N clients to addr one at a time (CONNECT
// with connect(i), then SUBSCRIBE to im/inbox/u<i>), keeps them open and
// reports the growth of the Go heap in use and of goroutine stacks per
// connection, and goroutines per connection. The clients are plain sockets
// read by this goroutine: they add no goroutines or stacks of their own.
func measureConnections(b *testing.B, addr string, connect func(i int) []byte) {
	b.Helper()
	stats := func() runtime.MemStats {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m
	}
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	g0, m0 := runtime.NumGoroutine(), stats()
	b.ResetTimer()
	buf := make([]byte, 5)
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(packet(0x10, connect(i))); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[3] != 0 {
			b.Fatalf("CONNACK %d: %x %v", i, buf[:4], err)
		}
		sub := append([]byte{0, 1}, mqttStr(fmt.Sprintf("im/inbox/u%06d", i))...)
		if _, err := c.Write(packet(0x82, append(sub, 1))); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || buf[4] != 1 {
			b.Fatalf("SUBACK %d: %x %v", i, buf, err)
		}
		c.SetDeadline(time.Time{})
	}
	b.StopTimer()
	time.Sleep(500 * time.Millisecond) // the last device's session settles
	g1, m1 := runtime.NumGoroutine(), stats()
	per := func(before, after uint64) float64 { return float64(int64(after)-int64(before)) / 1024 / float64(b.N) }
	b.ReportMetric(per(m0.HeapInuse, m1.HeapInuse), "heap-KiB/conn")
	b.ReportMetric(per(m0.StackInuse, m1.StackInuse), "stack-KiB/conn")
	b.ReportMetric(float64(g1-g0)/float64(b.N), "goroutines/conn")
	b.ReportMetric(0, "ns/op")
}
