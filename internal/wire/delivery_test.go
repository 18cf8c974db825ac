package wire_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/wire"
)

// reflectDelivery is what MessageDelivery must write: encoding/json's
// encoding of StoredDelivery.
func reflectDelivery(m history.Message) []byte {
	b, err := json.Marshal(wire.StoredDelivery(m))
	if err != nil {
		return nil
	}
	return b
}

// deliveryStrings are field values with every case encoding/json escapes.
var deliveryStrings = []string{
	"", "alice", "dm:alice:bob", `quote " and backslash \`, "<script>&amp;</script>", "tab\tnew\nline\rcr\bbs\fff",
	"\x00\x01\x1f\x7f", "é ü 漢字 🙂", "line\u2028sep\u2029par", "bad \xff utf8 \xe2\x80", "\xe2\x80\xa8", "\xed\xa0\x80",
	strings.Repeat("x", 300),
}

// deliveryBodies are JSON bodies (as stored: as sent, white space and
// escapes included) and some that are not JSON.
var deliveryBodies = []string{
	`"hi"`, `"hello world"`, ` { "text" : "a b\tc" , "n" : [ 1 , 2.5e3 , true , null ] } `, `"<b>&</b>"`,
	`"\u003c\"\\ \n"`, "\"\u2028\u2029\"", `{"a":{"b":[{"c":"d e"}]}}`, `null`, `1`, `"é 🙂"`, "\n\t\"x\"\r\n",
	`{"k":"\ud83d\ude42"}`, `"bad \xff"`, `{"a":`, ``, `[1,]`, `"\u2028 in escape"`,
}

// TestMessageDeliveryMatchesEncodingJSON: MessageDelivery writes exactly the
// bytes encoding/json writes for StoredDelivery, for every field and the
// escapes, and nil where encoding/json fails.
func TestMessageDeliveryMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	ts := []time.Time{time.Date(2026, 11, 27, 6, 0, 0, 123_456_789, time.UTC),
		time.Date(1999, 1, 2, 3, 4, 5, 0, time.FixedZone("x", -5*3600)), {}}
	for i := range 5000 {
		m := history.Message{Conv: pick(deliveryStrings), Seq: r.Int64N(3) * r.Int64(), ID: pick(deliveryStrings),
			CID: pick(deliveryStrings), From: pick(deliveryStrings), TS: ts[r.IntN(len(ts))], Type: pick(deliveryStrings),
			ReplyTo: r.Int64N(2) * r.Int64N(100), Target: r.Int64N(2) * -r.Int64N(100), Emoji: pick(deliveryStrings),
			Deleted: r.IntN(2) == 0}
		if b := r.IntN(len(deliveryBodies) + 1); b < len(deliveryBodies) {
			m.Body = json.RawMessage(deliveryBodies[b])
		}
		for range r.IntN(3) {
			m.Mentions = append(m.Mentions, pick(deliveryStrings))
		}
		if r.IntN(4) == 0 {
			m.Mentions = []string{}
		}
		if r.IntN(2) == 0 {
			m.EditedAt = ts[r.IntN(len(ts))]
		}
		if r.IntN(5) == 0 {
			m.Attachments = []history.Attachment{{ID: "u1", Name: pick(deliveryStrings), Size: 7, ContentType: "image/png", Width: 3}}
		}
		if got, want := wire.MessageDelivery(m), reflectDelivery(m); !bytes.Equal(got, want) {
			t.Fatalf("message %d %+v:\ngot  %s\nwant %s", i, m, got, want)
		}
	}
}

// FuzzMessageDelivery: for any field values and body, MessageDelivery
// writes what encoding/json writes.
func FuzzMessageDelivery(f *testing.F) {
	for i, s := range deliveryStrings {
		f.Add(s, deliveryBodies[i%len(deliveryBodies)], int64(i), s)
	}
	f.Fuzz(func(t *testing.T, text, body string, seq int64, mention string) {
		m := history.Message{Conv: text, Seq: seq, ID: "06h1nr7s9leg7onr8palrab3qg", CID: text, From: mention,
			TS: time.Unix(seq%(1<<40), seq%1e9), Type: text, Body: json.RawMessage(body), Emoji: mention,
			Mentions: []string{mention, text}}
		if got, want := wire.MessageDelivery(m), reflectDelivery(m); !bytes.Equal(got, want) {
			t.Fatalf("%s:\ngot  %s\nwant %s", fmt.Sprintf("%q %q", text, body), got, want)
		}
	})
}

// BenchmarkMessageDeliveryReflect is the encoding/json encoding that
// MessageDelivery replaces, for comparison with BenchmarkMessageDelivery.
func BenchmarkMessageDeliveryReflect(b *testing.B) {
	m := history.Message{Conv: "dm:alice:bob", Seq: 42, ID: history.NewID(time.Now()), CID: "0123456789abcdef",
		From: "alice", TS: time.Now(), Type: "text", Body: []byte(`{"text":"` + strings.Repeat("x", 160) + `"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if len(reflectDelivery(m)) == 0 {
			b.Fatal("empty")
		}
	}
}
