package cluster

import (
	"bytes"
	"testing"
)

func TestFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    frame
	}{
		{"Message", frame{conv: "dm:alice:bob", seq: 42, qos: 1, payload: []byte(`{"kind":"message"}`)}},
		{"MessageBigSeq", frame{conv: "g:team", seq: 1 << 40, qos: 1, payload: []byte(`{}`)}},
		{"MessageEmptyPayload", frame{conv: "g:x", seq: 1, qos: 0}},
		{"Event", frame{qos: 0, payload: []byte(`{"kind":"typing"}`)}},
		{"EventEmpty", frame{qos: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendFrame(nil, tc.f)
			got, err := parseFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.conv != tc.f.conv || got.seq != tc.f.seq || got.qos != tc.f.qos || !bytes.Equal(got.payload, tc.f.payload) {
				t.Fatalf("round trip %+v, want %+v", got, tc.f)
			}
		})
	}
}

func TestFrameMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"Empty", nil},
		{"Short", []byte{'m'}},
		{"UnknownKind", []byte{'x', 1, 'a'}},
		{"NoConvLength", []byte{'m', 1}},
		{"EmptyConv", []byte{'m', 1, 0, 1}},
		{"ConvTooLong", []byte{'m', 1, 9, 'a', 'b'}},
		{"NoSeq", []byte{'m', 1, 1, 'a'}},
		{"ZeroSeq", []byte{'m', 1, 1, 'a', 0}},
		{"OldFormat", append([]byte{'m', 1}, `{"kind":"message","conv":"dm:a:b","seq":1}`...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := parseFrame(tc.b); err == nil {
				t.Fatalf("parsed %+v", f)
			}
		})
	}
}

// FuzzFrame: whatever parses is a well-formed frame (a message has a conv
// and a positive seq, an event neither) and parses back to itself once
// encoded again.
func FuzzFrame(f *testing.F) {
	f.Add([]byte{'e', 0})
	f.Add(appendFrame(nil, frame{conv: "dm:a:b", seq: 7, qos: 1, payload: []byte(`{}`)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			return
		}
		if fr.conv == "" && fr.seq != 0 || fr.conv != "" && fr.seq <= 0 {
			t.Fatalf("parsed %+v", fr)
		}
		again, err := parseFrame(appendFrame(nil, fr))
		if err != nil || again.conv != fr.conv || again.seq != fr.seq || again.qos != fr.qos || !bytes.Equal(again.payload, fr.payload) {
			t.Fatalf("re-encoded %+v as %+v (%v)", fr, again, err)
		}
	})
}
