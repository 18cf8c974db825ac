package plain

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// frame encodes pk with the share groups of a node n1 (g on a/#, h on
// other) assigned.
func frame(t testing.TB, pk packets.Packet) []byte {
	t.Helper()
	s := &Shares{Node: "n0"}
	s.SetRemote("n1", map[string]int{"$share/g/a/#": 2, "$share/h/other": 1})
	b, err := EncodeFrame(pk, s.Assign(pk))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPlainFrame: a publish crosses with its QoS, retain flag, payload and
// MQTT 5 properties, without its topic alias, and with the node chosen for
// each share group that matches its topic.
func TestPlainFrame(t *testing.T) {
	expiry := uint32(60)
	publish := func() packets.Packet {
		return packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Retain: true, Dup: true},
			TopicName:   "a/b", Payload: []byte("x"), PacketID: 7, ProtocolVersion: 4,
			Mods: packets.Mods{DisallowProblemInfo: true},
			Properties: packets.Properties{
				User:        []packets.UserProperty{{Key: "k", Val: "v"}},
				ContentType: "text/plain", ResponseTopic: "r/t", CorrelationData: []byte("c"),
				MessageExpiryInterval: expiry, PayloadFormat: 1, PayloadFormatFlag: true,
				TopicAlias: 3, TopicAliasFlag: true, SubscriptionIdentifier: []int{4},
			},
		}
	}
	in := publish()
	b := frame(t, in)
	if !reflect.DeepEqual(in, publish()) {
		t.Fatalf("EncodeFrame changed the packet it was given: %+v", in)
	}
	pk, assigned, err := DecodeFrame(b)
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
			if _, _, err := DecodeFrame(b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzPlainFrame(f *testing.F) {
	f.Add(frame(f, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: []byte("x"), PacketID: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = DecodeFrame(b) // must not panic
	})
}
