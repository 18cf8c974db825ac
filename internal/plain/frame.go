package plain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"slices"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/internal/cluster"
)

// A plain frame carries a plain publish between the nodes of a cluster
// (cluster.Bus.PublishPlain), opaque to the bus:
//
//	uvarint(n) n × (string(share group filter) string(node))  PUBLISH packet (MQTT 5)
//
// with the strings as cluster.AppendString writes them.

var errFrame = errors.New("plain: malformed frame")

// EncodeFrame encodes publish pk, with the nodes assigned to its share
// groups (see Shares.Assign), as MQTT 5 without its topic alias and
// subscription identifiers.
func EncodeFrame(pk packets.Packet, assigned map[string]string) ([]byte, error) {
	out := pk.Copy(false)
	out.ProtocolVersion = 5
	out.Mods.AllowResponseInfo = true
	out.FixedHeader.Dup = false
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	out.Properties.SubscriptionIdentifier = nil
	if out.FixedHeader.Qos > 0 && out.PacketID == 0 {
		out.PacketID = 1 // a valid PUBLISH; the receiving node ignores it
	}
	var buf bytes.Buffer
	if err := out.PublishEncode(&buf); err != nil {
		return nil, err
	}
	frame := binary.AppendUvarint(nil, uint64(len(assigned)))
	for _, f := range slices.Sorted(maps.Keys(assigned)) {
		frame = cluster.AppendString(cluster.AppendString(frame, f), assigned[f])
	}
	return append(frame, buf.Bytes()...), nil
}

// DecodeFrame decodes what EncodeFrame encoded.
func DecodeFrame(b []byte) (packets.Packet, map[string]string, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return packets.Packet{}, nil, errFrame
	}
	b = b[k:]
	assigned := make(map[string]string, n)
	for i := uint64(0); i < n; i++ {
		f, rest, ok := cluster.ReadString(b)
		if !ok {
			return packets.Packet{}, nil, errFrame
		}
		node, rest, ok := cluster.ReadString(rest)
		if !ok {
			return packets.Packet{}, nil, errFrame
		}
		assigned[f], b = node, rest
	}
	if len(b) < 2 {
		return packets.Packet{}, nil, errFrame
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(b[0]); err != nil || pk.FixedHeader.Type != packets.Publish {
		return packets.Packet{}, nil, errFrame
	}
	r := bytes.NewReader(b[1:])
	length, _, err := packets.DecodeLength(r)
	if err != nil || length != r.Len() {
		return packets.Packet{}, nil, errFrame
	}
	pk.FixedHeader.Remaining = length
	if err := pk.PublishDecode(b[len(b)-length:]); err != nil {
		return packets.Packet{}, nil, err
	}
	return pk, assigned, nil
}
