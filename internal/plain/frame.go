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
// subscription identifiers. The caller's packet is left as it is: only
// EncodeFrame's copy of it (sharing its payload and properties, which are
// only read) changes.
func EncodeFrame(pk packets.Packet, assigned map[string]string) ([]byte, error) {
	pk.ProtocolVersion = 5
	pk.Mods = packets.Mods{MaxSize: pk.Mods.MaxSize, AllowResponseInfo: true}
	pk.FixedHeader.Dup = false
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	pk.Properties.SubscriptionIdentifier = nil
	pk.PacketID = 0
	if pk.FixedHeader.Qos > 0 {
		pk.PacketID = 1 // a valid PUBLISH; the receiving node ignores it
	}
	frame := binary.AppendUvarint(nil, uint64(len(assigned)))
	for _, f := range slices.Sorted(maps.Keys(assigned)) {
		frame = cluster.AppendString(cluster.AppendString(frame, f), assigned[f])
	}
	// The PUBLISH is written after the share groups: its fixed header
	// (at most 5 bytes), topic, packet id and payload, and room for common
	// properties, so that the payload is copied once.
	buf := bytes.NewBuffer(frame)
	buf.Grow(5 + 2 + len(pk.TopicName) + 2 + 128 + len(pk.Payload))
	if err := pk.PublishEncode(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
