package cluster

import (
	"encoding/binary"
	"errors"
)

// A delivery frame is the data of a NATS message on a user subject. It
// carries the delivery's bookkeeping typed, ahead of the client payload,
// which the receiving node passes on as it is and never parses:
//
//	'm' qos uvarint(len(conv)) conv uvarint(seq) payload   a stored message
//	'e' qos payload                                        an event
type frame struct {
	conv    string // "" for an event
	seq     int64  // > 0 for a message
	qos     byte
	payload []byte
}

const (
	frameMessage = 'm'
	frameEvent   = 'e'
)

var errFrame = errors.New("natsbus: malformed delivery frame")

// appendFrame appends the encoding of f to b.
func appendFrame(b []byte, f frame) []byte {
	if f.conv == "" {
		b = append(b, frameEvent, f.qos)
		return append(b, f.payload...)
	}
	b = append(b, frameMessage, f.qos)
	b = binary.AppendUvarint(b, uint64(len(f.conv)))
	b = append(b, f.conv...)
	b = binary.AppendUvarint(b, uint64(f.seq))
	return append(b, f.payload...)
}

// parseFrame decodes a delivery frame. The payload aliases b.
func parseFrame(b []byte) (frame, error) {
	if len(b) < 2 {
		return frame{}, errFrame
	}
	f := frame{qos: b[1]}
	switch b[0] {
	case frameEvent:
		f.payload = b[2:]
		return f, nil
	case frameMessage:
	default:
		return frame{}, errFrame
	}
	b = b[2:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > uint64(len(b)-k) {
		return frame{}, errFrame
	}
	f.conv = string(b[k : k+int(n)])
	b = b[k+int(n):]
	seq, k := binary.Uvarint(b)
	if k <= 0 || seq == 0 || seq > 1<<62 {
		return frame{}, errFrame
	}
	f.seq = int64(seq)
	f.payload = b[k:]
	return f, nil
}
