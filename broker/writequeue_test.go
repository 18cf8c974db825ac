package broker_test

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/broker"
	"github.com/parley-im/parley/internal/testkit"
)

// TestMQTTWriteQueue: Options.MQTTWriteQueue bounds the plain MQTT packets
// queued for a client that does not read. A subscriber stops reading while
// 200 publishes of 60 KB (12 MB, more than the sockets' buffers) are sent
// to it: with the default queue it gets them all once it reads again, with
// a queue of 4 the broker drops some.
func TestMQTTWriteQueue(t *testing.T) {
	const n, size = 200, 60 << 10
	for _, tc := range []struct {
		name  string
		queue int
		all   bool
	}{{"Default", 0, true}, {"Four", 4, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, testkit.OpenSQLite(t), func(o *broker.Options) {
				o.Anonymous, o.MQTTWriteQueue = true, tc.queue
			})
			sub, code := rawConnack(t, e, packet(0x10, connectBody("sub", "", "")))
			if code != 0 {
				t.Fatalf("subscriber CONNACK %#x", code)
			}
			if _, err := sub.Write(packet(0x82, append(append([]byte{0, 1}, mqttStr("big/t")...), 0))); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(sub)
			if typ, _ := readPacket(t, sub, r, 5*time.Second); typ != 0x90 {
				t.Fatalf("want a SUBACK, got packet type %#x", typ)
			}
			pub, code := rawConnack(t, e, packet(0x10, connectBody("pub", "", "")))
			if code != 0 {
				t.Fatalf("publisher CONNACK %#x", code)
			}
			body := bytes.Repeat([]byte("x"), size)
			for i := 0; i < n; i++ {
				pub.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := pub.Write(packet(0x30, append(mqttStr("big/t"), body...))); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			// The publisher's last packets are read before anything is
			// dropped or not: a PINGREQ answered means the broker has
			// handled every publish before it.
			pr := bufio.NewReader(pub)
			if _, err := pub.Write([]byte{0xC0, 0}); err != nil {
				t.Fatal(err)
			}
			if typ, _ := readPacket(t, pub, pr, 10*time.Second); typ != 0xD0 {
				t.Fatalf("want a PINGRESP, got packet type %#x", typ)
			}
			got := 0
			for {
				typ, ok := readPacket(t, sub, r, 2*time.Second)
				if !ok {
					break
				}
				if typ == 0x30 {
					got++
				}
			}
			if tc.all && got != n {
				t.Errorf("received %d of %d publishes with the default write queue", got, n)
			}
			if !tc.all && got >= n {
				t.Errorf("received all %d publishes through a write queue of %d: the option was not applied", got, tc.queue)
			}
			t.Logf("write queue %d: %d of %d received", tc.queue, got, n)
		})
	}
}

// TestMQTTWriteQueueBound: New refuses a write queue above
// MaxMQTTWriteQueue rather than allocate it with every connection.
func TestMQTTWriteQueueBound(t *testing.T) {
	_, err := broker.New(broker.Options{Store: testkit.OpenSQLite(t), JWTSecret: testSecret, MQTTWriteQueue: broker.MaxMQTTWriteQueue + 1})
	if err == nil || !strings.Contains(err.Error(), "MQTTWriteQueue") {
		t.Fatalf("New with MQTTWriteQueue %d: %v, want an error naming it", broker.MaxMQTTWriteQueue+1, err)
	}
}

// readPacket reads one MQTT packet from r (conn's reader) within d and
// returns its type (the fixed header's first byte, flags cleared); ok is
// false when nothing came in time.
func readPacket(t testing.TB, conn net.Conn, r *bufio.Reader, d time.Duration) (typ byte, ok bool) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	defer conn.SetReadDeadline(time.Time{})
	pk, err := nextRawPacket(r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return pk.FixedHeader.Type << 4, true
}
