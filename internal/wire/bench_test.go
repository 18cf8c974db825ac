package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

var sinkMsg wire.SendPayload

func BenchmarkParseSendPayload(b *testing.B) {
	payload := []byte(`{"cid":"0123456789abcdef","type":"text","body":{"text":"` + strings.Repeat("x", 160) + `"}}`)
	b.SetBytes(int64(len(payload)))
	for i := 0; i < b.N; i++ {
		p, err := wire.ParseSendPayload(payload, send.DefaultMaxPayload)
		if err != nil {
			b.Fatal(err)
		}
		sinkMsg = p
	}
}

func BenchmarkMessageDelivery(b *testing.B) {
	m := history.Message{Conv: "dm:alice:bob", Seq: 42, ID: history.NewID(time.Now()), CID: "0123456789abcdef",
		From: "alice", TS: time.Now(), Type: "text", Body: []byte(`{"text":"` + strings.Repeat("x", 160) + `"}`)}
	for i := 0; i < b.N; i++ {
		if len(wire.MessageDelivery(m)) == 0 {
			b.Fatal("empty")
		}
	}
}

func BenchmarkTopicsParseSend(b *testing.B) {
	t := wire.Topics{}
	for i := 0; i < b.N; i++ {
		if _, _, ok, valid := t.ParseSend("im/send/u/bob"); !ok || !valid {
			b.Fatal("not a send topic")
		}
	}
}
