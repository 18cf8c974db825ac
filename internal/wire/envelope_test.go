package wire_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/send"
	"github.com/parley-im/parley/internal/wire"
)

func TestParseSendPayloadOK(t *testing.T) {
	cid64 := strings.Repeat("é", wire.MaxCIDLen)   // 64 runes, 128 bytes
	type32 := strings.Repeat("é", wire.MaxTypeLen) // 32 runes, 64 bytes
	cases := []struct {
		name      string
		payload   string
		max       int
		cid       string
		typ       string
		body      string
		ephemeral bool
	}{
		{"Minimal", `{"body":1}`, 0, "", history.TypeText, `1`, false},
		{"AllFields", `{"cid":"c1","type":"typing","body":true,"ephemeral":true}`, 0, "c1", "typing", `true`, true},
		{"EmptyTypeDefaults", `{"type":"","body":"hi"}`, 0, "", history.TypeText, `"hi"`, false},
		{"SurroundingSpace", " \n\t{\"body\":\"hi\"}\r\n ", 0, "", history.TypeText, `"hi"`, false},
		{"ObjectBody", `{"body":{"text":"hi","n":[1,2]}}`, 0, "", history.TypeText, `{"text":"hi","n":[1,2]}`, false},
		{"ArrayBody", `{"body":[1,"a",null]}`, 0, "", history.TypeText, `[1,"a",null]`, false},
		{"FalseBody", `{"body":false}`, 0, "", history.TypeText, `false`, false},
		{"EmptyStringBody", `{"body":""}`, 0, "", history.TypeText, `""`, false},
		{"NullStringBody", `{"body":"null"}`, 0, "", history.TypeText, `"null"`, false},
		{"CID64Runes", `{"cid":"` + cid64 + `","body":1}`, 0, cid64, history.TypeText, `1`, false},
		{"Type32Runes", `{"type":"` + type32 + `","body":1}`, 0, "", type32, `1`, false},
		{"UnknownFieldsIgnored", `{"body":1,"extra":{"x":[1]},"seq":7}`, 0, "", history.TypeText, `1`, false},
		{"FromIgnored", `{"from":"mallory","body":1}`, 0, "", history.TypeText, `1`, false},
		{"TypeLikeReservedWord", `{"type":"group","body":1}`, 0, "", "group", `1`, false},
		{"TypeReservedWordInside", `{"type":"x.group.y","body":1}`, 0, "", "x.group.y", `1`, false},
		{"TypeReservedOtherCase", `{"type":"Group.created","body":1}`, 0, "", "Group.created", `1`, false},
		{"ExactlyMax", `{"body":1}`, 10, "", history.TypeText, `1`, false},
		{"EscapedUnicode", `{"cid":"\u00e9","body":"\ud83d\ude00"}`, 0, "é", history.TypeText, `"\ud83d\ude00"`, false},
		// The body is stored as sent (a json column on PostgreSQL, text on
		// SQLite), so escapes that jsonb would refuse are kept, not decoded.
		{"EscapedNULInBody", `{"body":{"t":"a\u0000b","\u0000":1}}`, 0, "", history.TypeText, `{"t":"a\u0000b","\u0000":1}`, false},
		{"LoneSurrogateInBody", `{"body":"\ud800"}`, 0, "", history.TypeText, `"\ud800"`, false},
		// A lone surrogate in cid decodes to U+FFFD, which is valid text.
		{"LoneSurrogateInCID", `{"cid":"\udc00","body":1}`, 0, "\ufffd", history.TypeText, `1`, false},
		{"ControlCharInType", `{"type":"a\u0001","body":1}`, 0, "", "a\x01", `1`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := wire.ParseSendPayload([]byte(tc.payload), tc.max)
			if err != nil {
				t.Fatalf("ParseSendPayload(%q): %v", tc.payload, err)
			}
			if p.CID != tc.cid || p.Type != tc.typ || string(p.Body) != tc.body || p.Ephemeral != tc.ephemeral {
				t.Fatalf("ParseSendPayload(%q) = {cid %q, type %q, body %s, ephemeral %v}; want {cid %q, type %q, body %s, ephemeral %v}",
					tc.payload, p.CID, p.Type, p.Body, p.Ephemeral, tc.cid, tc.typ, tc.body, tc.ephemeral)
			}
		})
	}
}

// TestParseSendPayloadOps: the ops other than send, their defaults and
// mentions deduplicated.
func TestParseSendPayloadOps(t *testing.T) {
	cases := []struct {
		payload                     string
		op, typ, body, emoji, ments string
		target, reply               int64
	}{
		{`{"body":1,"reply_to":3,"mentions":["bob","al","bob"]}`, "send", "text", "1", "", "[bob al]", 0, 3},
		{`{"op":"send","body":1}`, "send", "text", "1", "", "[]", 0, 0},
		{`{"op":"edit","target":4,"body":{"t":"x"}}`, "edit", "message.edited", `{"t":"x"}`, "", "[]", 4, 0},
		{`{"op":"delete","target":4}`, "delete", "message.deleted", "null", "", "[]", 4, 0},
		{`{"op":"delete","target":4,"body":null}`, "delete", "message.deleted", "null", "", "[]", 4, 0},
		{`{"op":"react","target":4,"emoji":"👍"}`, "react", "reaction.added", "null", "👍", "[]", 4, 0},
		{`{"op":"unreact","target":4,"emoji":"👍","type":"reaction.removed"}`, "unreact", "reaction.removed", "null", "👍", "[]", 4, 0},
	}
	for _, c := range cases {
		p, err := wire.ParseSendPayload([]byte(c.payload), 0)
		if err != nil {
			t.Errorf("%s: %v", c.payload, err)
			continue
		}
		if p.Op != c.op || p.Type != c.typ || string(p.Body) != c.body || p.Emoji != c.emoji || p.Target != c.target || p.ReplyTo != c.reply || fmt.Sprint(p.Mentions) != c.ments {
			t.Errorf("%s: got %+v (body %s)", c.payload, p, p.Body)
		}
	}
}

func TestParseSendPayloadErrors(t *testing.T) {
	cid65 := strings.Repeat("é", wire.MaxCIDLen+1)
	type33 := strings.Repeat("é", wire.MaxTypeLen+1)
	cases := []struct {
		name    string
		payload string
		max     int
		code    string
		cid     string // of the error
	}{
		{"TooLarge", `{"cid":"c1","body":12345}`, 10, wire.CodeTooLarge, ""},
		{"TooLargeByOne", `{"body":12}`, 10, wire.CodeTooLarge, ""},
		{"TooLargeBeforeUTF8", "{\"body\":\"\xff\xff\xff\xff\"}", 5, wire.CodeTooLarge, ""},
		{"InvalidUTF8", "{\"cid\":\"c1\",\"body\":\"\xff\"}", 0, wire.CodeInvalidPayload, ""},
		{"Empty", ``, 0, wire.CodeInvalidPayload, ""},
		{"Spaces", "  \n ", 0, wire.CodeInvalidPayload, ""},
		{"Array", `[{"body":1}]`, 0, wire.CodeInvalidPayload, ""},
		{"String", `"hi"`, 0, wire.CodeInvalidPayload, ""},
		{"Number", `1`, 0, wire.CodeInvalidPayload, ""},
		{"Null", `null`, 0, wire.CodeInvalidPayload, ""},
		{"Truncated", `{"cid":"c1","body":1`, 0, wire.CodeInvalidPayload, ""},
		{"TrailingGarbage", `{"cid":"c1","body":1}x`, 0, wire.CodeInvalidPayload, ""},
		{"TwoObjects", `{"body":1}{"body":2}`, 0, wire.CodeInvalidPayload, ""},
		{"BodyMissing", `{"cid":"c1"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EmptyObject", `{}`, 0, wire.CodeInvalidPayload, ""},
		{"BodyNull", `{"cid":"c1","body":null}`, 0, wire.CodeInvalidPayload, "c1"},
		{"BodyNullSpaced", `{"cid":"c1", "body" :  null }`, 0, wire.CodeInvalidPayload, "c1"},
		{"DuplicateBodyLastNull", `{"cid":"c1","body":1,"body":null}`, 0, wire.CodeInvalidPayload, "c1"},
		{"CID65Runes", `{"cid":"` + cid65 + `","body":1}`, 0, wire.CodeInvalidPayload, ""},
		{"Type33Runes", `{"cid":"c1","type":"` + type33 + `","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReservedGroup", `{"cid":"c1","type":"group.created","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReservedMember", `{"cid":"c1","type":"member.added","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReservedMessage", `{"cid":"c1","type":"message.edited","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReservedReaction", `{"cid":"c1","type":"reaction.added","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"UnknownOp", `{"cid":"c1","op":"shout","target":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"OpNotString", `{"cid":"c1","op":1,"target":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EditNoTarget", `{"cid":"c1","op":"edit","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EditNoBody", `{"cid":"c1","op":"edit","target":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EditWithType", `{"cid":"c1","op":"edit","target":1,"body":1,"type":"text"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EditEphemeral", `{"cid":"c1","op":"edit","target":1,"body":1,"ephemeral":true}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EditReply", `{"cid":"c1","op":"edit","target":1,"body":1,"reply_to":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"DeleteWithBody", `{"cid":"c1","op":"delete","target":1,"body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"DeleteWithEmoji", `{"cid":"c1","op":"delete","target":1,"emoji":"x"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReactNoEmoji", `{"cid":"c1","op":"react","target":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReactLongEmoji", `{"cid":"c1","op":"react","target":1,"emoji":"` + strings.Repeat("👍", 9) + `"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReactNegativeTarget", `{"cid":"c1","op":"unreact","target":-1,"emoji":"x"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"SendWithTarget", `{"cid":"c1","body":1,"target":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReplyNegative", `{"cid":"c1","body":1,"reply_to":-1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReplyNotNumber", `{"cid":"c1","body":1,"reply_to":"1"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"MentionBadID", `{"cid":"c1","body":1,"mentions":["bad id"]}`, 0, wire.CodeInvalidPayload, "c1"},
		{"MentionsNotArray", `{"cid":"c1","body":1,"mentions":"bob"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EphemeralReply", `{"cid":"c1","body":1,"ephemeral":true,"reply_to":2}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReservedSystem", `{"cid":"c1","type":"system.notice","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"ReservedBarePrefix", `{"cid":"c1","type":"member.","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"TypeNotString", `{"cid":"c1","type":5,"body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"EphemeralNotBool", `{"cid":"c1","ephemeral":"yes","body":1}`, 0, wire.CodeInvalidPayload, "c1"},
		{"CIDNotString", `{"cid":7,"body":1}`, 0, wire.CodeInvalidPayload, ""},
		// U+0000, escaped in JSON, is refused in every text field; a cid that
		// holds it is never echoed.
		{"NULInCID", `{"cid":"a\u0000b","body":"x"}`, 0, wire.CodeInvalidPayload, ""},
		{"OnlyNULCID", `{"cid":"\u0000","body":"x"}`, 0, wire.CodeInvalidPayload, ""},
		{"NULInType", `{"cid":"c1","type":"x\u0000","body":"x"}`, 0, wire.CodeInvalidPayload, "c1"},
		{"NULInTypeNoCID", `{"type":"x\u0000","body":"x"}`, 0, wire.CodeInvalidPayload, ""},
		{"NULInCIDWrongBody", `{"cid":"a\u0000","body":null}`, 0, wire.CodeInvalidPayload, ""},
		{"NULInCIDBadJSON", `{"cid":"a\u0000","type":5,"body":1}`, 0, wire.CodeInvalidPayload, ""},
		{"RawNUL", "{\"cid\":\"a\x00b\",\"body\":1}", 0, wire.CodeInvalidPayload, ""},
		{"RawNULInBody", "{\"body\":\"\x00\"}", 0, wire.CodeInvalidPayload, ""},
		// A cid over the limit is never echoed, whichever check fails.
		{"CID65RunesWithWrongType", `{"cid":"` + cid65 + `","type":5,"body":1}`, 0, wire.CodeInvalidPayload, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.ParseSendPayload([]byte(tc.payload), tc.max)
			if err == nil {
				t.Fatalf("ParseSendPayload(%q) succeeded, want %s", tc.payload, tc.code)
			}
			if err.Code != tc.code || err.CID != tc.cid {
				t.Fatalf("ParseSendPayload(%q) error = {code %q, cid %q}, want {code %q, cid %q} (%v)",
					tc.payload, err.Code, err.CID, tc.code, tc.cid, err)
			}
			if err.Message == "" {
				t.Fatalf("ParseSendPayload(%q): error has no message", tc.payload)
			}
		})
	}
}

func TestSendError(t *testing.T) {
	cases := []struct {
		name      string
		code      string
		permanent bool
	}{
		{"InvalidPayload", wire.CodeInvalidPayload, true},
		{"TooLarge", wire.CodeTooLarge, true},
		{"NotMember", wire.CodeNotMember, true},
		{"NoSuchGroup", wire.CodeNoSuchGroup, true},
		{"InvalidPeer", wire.CodeInvalidPeer, true},
		{"RateLimited", wire.CodeRateLimited, true},
		{"Unavailable", wire.CodeUnavailable, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &wire.Error{Code: tc.code, Message: "details"}
			if got := e.Permanent(); got != tc.permanent {
				t.Fatalf("Permanent() = %v, want %v", got, tc.permanent)
			}
			if got, want := e.Error(), tc.code+": details"; got != want {
				t.Fatalf("Error() = %q, want %q", got, want)
			}
		})
	}
}

func TestReasonCode(t *testing.T) {
	cases := []struct {
		name string
		code string
		want byte
	}{
		{"InvalidPayload", wire.CodeInvalidPayload, 0x99},
		{"TooLarge", wire.CodeTooLarge, 0x99},
		{"NotMember", wire.CodeNotMember, 0x87},
		{"NoSuchGroup", wire.CodeNoSuchGroup, 0x87},
		{"InvalidPeer", wire.CodeInvalidPeer, 0x90},
		{"RateLimited", wire.CodeRateLimited, 0x97},
		{"Unavailable", wire.CodeUnavailable, 0x80},
		{"Unknown", "something_else", 0x80},
		{"Empty", "", 0x80},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := wire.ReasonCode(tc.code)
			if got.Code != tc.want {
				t.Fatalf("ReasonCode(%q) = %#x, want %#x", tc.code, got.Code, tc.want)
			}
			if got.String == "" {
				t.Fatalf("ReasonCode(%q) has no reason string", tc.code)
			}
		})
	}
	// The unspecified error is what clients may retry; check it is the
	// package's own value, not merely the same byte.
	if got := wire.ReasonCode(wire.CodeUnavailable); got.Code != packets.ErrUnspecifiedError.Code || got.String != packets.ErrUnspecifiedError.Reason {
		t.Fatalf("ReasonCode(unavailable) = %v, want %v", got, packets.ErrUnspecifiedError)
	}
}

func TestMessageDelivery(t *testing.T) {
	cases := []struct {
		name string
		msg  history.Message
		want string
	}{
		{
			name: "AllFields",
			msg: history.Message{Conv: "dm:alice:bob", Seq: 42, ID: "06h1nr7s9leg7onr8palrab3qg", CID: "c1", From: "alice",
				TS: time.Date(2026, 11, 27, 6, 0, 0, 123_000_000, time.UTC), Type: "text", Body: json.RawMessage(`"hi bob"`)},
			want: `{"kind":"message","conv":"dm:alice:bob","seq":42,"id":"06h1nr7s9leg7onr8palrab3qg","cid":"c1","from":"alice","ts":"2026-11-27T06:00:00.123Z","type":"text","body":"hi bob"}`,
		},
		{
			name: "NoCID",
			msg: history.Message{Conv: "g:team", Seq: 1, ID: "x", From: "alice",
				TS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Type: "member.added", Body: json.RawMessage(`{"user":"bob","role":"member"}`)},
			want: `{"kind":"message","conv":"g:team","seq":1,"id":"x","from":"alice","ts":"2026-01-02T03:04:05.000Z","type":"member.added","body":{"user":"bob","role":"member"}}`,
		},
		{
			name: "OtherZoneTruncatedMillis",
			msg: history.Message{Conv: "dm:a:b", Seq: 3, ID: "y", From: "b",
				TS: time.Date(2026, 11, 27, 7, 30, 0, 999_999_999, time.FixedZone("CET+1:30", 90*60)), Type: "text", Body: json.RawMessage(`1`)},
			want: `{"kind":"message","conv":"dm:a:b","seq":3,"id":"y","from":"b","ts":"2026-11-27T06:00:00.999Z","type":"text","body":1}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := wire.MessageDelivery(tc.msg)
			if string(got) != tc.want {
				t.Fatalf("MessageDelivery =\n%s\nwant\n%s", got, tc.want)
			}
			var d wire.Delivery
			if err := json.Unmarshal(got, &d); err != nil {
				t.Fatalf("MessageDelivery output does not decode: %v", err)
			}
			ts, err := time.Parse(wire.TSLayout, d.TS)
			if err != nil {
				t.Fatalf("ts %q does not parse with TSLayout: %v", d.TS, err)
			}
			if want := tc.msg.TS.Truncate(time.Millisecond); !ts.Equal(want) {
				t.Fatalf("ts %q = %v, want %v", d.TS, ts, want)
			}
		})
	}
}

// FuzzParseSendPayload checks that ParseSendPayload never panics and that
// whatever it accepts satisfies the documented limits.
func FuzzParseSendPayload(f *testing.F) {
	const max = 4096
	for _, s := range []string{
		`{"body":1}`,
		`{"cid":"c1","type":"typing","body":true,"ephemeral":true}`,
		`{"cid":"c1","type":"group.created","body":1}`,
		`{"cid":"c1","body":null}`,
		`{"cid":"c1","type":5,"body":1}`,
		`[{"body":1}]`,
		" {\"body\":\"\\ud800\"} ",
		"{\"body\":\"\xff\"}",
		`{"body":1,"body":null}`,
		`{"BODY":{},"Type":"member.x"}`,
		`{"cid":"a\u0000b","body":"x"}`,
		`{"type":"x\u0000","body":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := wire.ParseSendPayload(b, max)
		if err != nil {
			switch err.Code {
			case wire.CodeInvalidPayload, wire.CodeTooLarge:
			default:
				t.Fatalf("ParseSendPayload(%q): unexpected code %q", b, err.Code)
			}
			if err.Message == "" {
				t.Fatalf("ParseSendPayload(%q): error without a message", b)
			}
			if strings.Contains(err.Message, "Go ") || strings.Contains(err.Message, "json: ") {
				t.Fatalf("ParseSendPayload(%q): message %q speaks of Go", b, err.Message)
			}
			if !history.ValidText(err.CID) {
				t.Fatalf("ParseSendPayload(%q): error echoes cid %q, not valid text", b, err.CID)
			}
			return
		}
		if len(b) > max {
			t.Fatalf("ParseSendPayload accepted %d bytes, max %d", len(b), max)
		}
		if p.Type == "" {
			t.Fatalf("ParseSendPayload(%q): empty type", b)
		}
		if n := utf8.RuneCountInString(p.Type); n > wire.MaxTypeLen {
			t.Fatalf("ParseSendPayload(%q): type of %d runes", b, n)
		}
		for _, r := range []string{"group.", "member.", "system."} {
			if strings.HasPrefix(p.Type, r) {
				t.Fatalf("ParseSendPayload(%q): accepted reserved type %q", b, p.Type)
			}
		}
		if n := utf8.RuneCountInString(p.CID); n > wire.MaxCIDLen {
			t.Fatalf("ParseSendPayload(%q): cid of %d runes", b, n)
		}
		if !history.ValidText(p.CID) || !history.ValidText(p.Type) {
			t.Fatalf("ParseSendPayload(%q): cid %q or type %q is not valid text", b, p.CID, p.Type)
		}
		if !history.ValidText(string(p.Body)) {
			t.Fatalf("ParseSendPayload(%q): body %q is not valid text", b, p.Body)
		}
		// Round trip against an independent reading of the object: exact
		// field names, the body byte for byte, type "text" by default.
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(b, &fields); err != nil {
			t.Fatalf("ParseSendPayload(%q) accepted what is not a JSON object: %v", b, err)
		}
		str := func(key, def string) string {
			raw, ok := fields[key]
			if !ok || string(raw) == "null" {
				return def
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("ParseSendPayload(%q) accepted a non-string %s: %s", b, key, raw)
			}
			return v
		}
		if want := str("cid", ""); p.CID != want {
			t.Fatalf("ParseSendPayload(%q): cid %q, want %q", b, p.CID, want)
		}
		if want := str("type", history.TypeText); p.Type != want && !(want == "" && p.Type == history.TypeText) {
			t.Fatalf("ParseSendPayload(%q): type %q, want %q", b, p.Type, want)
		}
		if raw := fields["body"]; !bytes.Equal(p.Body, raw) {
			t.Fatalf("ParseSendPayload(%q): body %q, want %q as sent", b, p.Body, raw)
		}
		if len(p.Body) == 0 || string(p.Body) == "null" {
			t.Fatalf("ParseSendPayload(%q): body %q accepted", b, p.Body)
		}
		if !json.Valid(p.Body) {
			t.Fatalf("ParseSendPayload(%q): body %q is not valid JSON", b, p.Body)
		}
	})
}

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
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if len(wire.MessageDelivery(m)) == 0 {
			b.Fatal("empty")
		}
	}
}
