package hooks

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// frameBus records the frames a Cluster hook sends.
type frameBus struct{ frames [][]byte }

func (b *frameBus) PublishPlain(f []byte)           { b.frames = append(b.frames, f) }
func (b *frameBus) ClaimPlain(string, bool, string) {}
func (b *frameBus) SharePlain(map[string]int)       {}

func frameSetup(t testing.TB) (*Cluster, *frameBus) {
	t.Helper()
	bus := &frameBus{}
	return &Cluster{Bus: bus, Node: "n0", Log: slog.Default(), local: map[string]map[string]struct{}{},
		remote: map[string]map[string]int{"n1": {"$share/g/a/#": 2, "$share/h/other": 1}}}, bus
}

// TestPlainFrame: a publish crosses with its QoS, retain flag, payload and
// MQTT 5 properties, without its topic alias, and with the node chosen for
// each share group that matches its topic.
func TestPlainFrame(t *testing.T) {
	h, bus := frameSetup(t)
	expiry := uint32(60)
	h.forward(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Retain: true},
		TopicName:   "a/b", Payload: []byte("x"), PacketID: 7,
		Properties: packets.Properties{
			User:        []packets.UserProperty{{Key: "k", Val: "v"}},
			ContentType: "text/plain", ResponseTopic: "r/t", CorrelationData: []byte("c"),
			MessageExpiryInterval: expiry, PayloadFormat: 1, PayloadFormatFlag: true,
			TopicAlias: 3, TopicAliasFlag: true, SubscriptionIdentifier: []int{4},
		},
	})
	if len(bus.frames) != 1 {
		t.Fatalf("%d frames", len(bus.frames))
	}
	pk, assigned, err := parsePlainFrame(bus.frames[0])
	if err != nil {
		t.Fatal(err)
	}
	p := pk.Properties
	if pk.TopicName != "a/b" || string(pk.Payload) != "x" || pk.FixedHeader.Qos != 2 || !pk.FixedHeader.Retain ||
		len(p.User) != 1 || p.User[0].Val != "v" || p.ContentType != "text/plain" || p.ResponseTopic != "r/t" ||
		!bytes.Equal(p.CorrelationData, []byte("c")) || p.MessageExpiryInterval != expiry || p.PayloadFormat != 1 ||
		p.TopicAlias != 0 || len(p.SubscriptionIdentifier) != 0 {
		t.Fatalf("decoded %+v", pk)
	}
	if len(assigned) != 1 || assigned["$share/g/a/#"] != "n1" {
		t.Fatalf("share assignments %v, want the g group on n1", assigned)
	}
}

func TestPlainFrameMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"Empty":        nil,
		"ShortShares":  {1, 5, 'a'},
		"NotAPublish":  {0, 0x20, 2, 0, 0},
		"BadLength":    {0, 0x30, 9, 0, 1, 'a'},
		"TruncatedTop": {0, 0x30, 3, 0, 9, 'a'},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := parsePlainFrame(b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzPlainFrame(f *testing.F) {
	h, bus := frameSetup(f)
	h.forward(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: []byte("x"), PacketID: 1})
	f.Add(bus.frames[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		parsePlainFrame(b) // must not panic
	})
}
