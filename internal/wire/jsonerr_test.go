package wire_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/parley-im/parley/internal/wire"
)

// TestJSONError checks that decoding errors read in JSON's terms: the field,
// the type expected and the type sent, never Go's type names.
func TestJSONError(t *testing.T) {
	type inner struct {
		N uint `json:"n"`
	}
	type body struct {
		Seq     *int64   `json:"seq"`
		Members []string `json:"members"`
		Role    string   `json:"role"`
		Flag    bool     `json:"flag"`
		Ratio   float64  `json:"ratio"`
		In      inner    `json:"in"`
	}
	cases := []struct {
		name, doc, want string
	}{
		{"StringForInteger", `{"seq": "5"}`, `field "seq" must be an integer, got a string`},
		{"Fraction", `{"seq": 1.5}`, `field "seq" must be an integer, got 1.5`},
		{"OutOfRange", `{"seq": 1e30}`, `field "seq" must be an integer, got 1e30`},
		{"NumberInArray", `{"members": ["bob", 7]}`, `field "members" must be an array of strings, got a number in it`},
		{"StringForArray", `{"members": "bob"}`, `field "members" must be an array, got a string`},
		{"ObjectForString", `{"role": {}}`, `field "role" must be a string, got an object`},
		{"StringForBool", `{"flag": "yes"}`, `field "flag" must be true or false, got a string`},
		{"BoolForNumber", `{"ratio": true}`, `field "ratio" must be a number, got a boolean`},
		{"Nested", `{"in": {"n": -1}}`, `field "in.n" must be a non-negative integer, got -1`},
		{"ArrayBody", `[]`, `request body must be a JSON object, got an array`},
		{"StringBody", `"x"`, `request body must be a JSON object, got a string`},
		{"Syntax", `{"seq": x}`, `request body is not valid JSON: invalid character 'x' looking for beginning of value (at byte 9)`},
		{"Truncated", `{"seq":`, `request body is not valid JSON: unexpected end of JSON input (at byte 7)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v body
			err := json.Unmarshal([]byte(tc.doc), &v)
			if err == nil {
				t.Fatalf("%s decoded", tc.doc)
			}
			got := wire.JSONError("request body", &v, err)
			if got != tc.want {
				t.Fatalf("JSONError(%s) = %q, want %q", tc.doc, got, tc.want)
			}
			if strings.Contains(got, "Go ") || strings.Contains(got, "int64") {
				t.Fatalf("JSONError(%s) = %q names Go types", tc.doc, got)
			}
		})
	}
}

func TestParseSendPayloadFieldTypes(t *testing.T) {
	cases := []struct {
		name, payload, want string
	}{
		{"CID", `{"cid": 5, "body": "hi"}`, `field "cid" must be a string, got a number`},
		{"Type", `{"type": ["text"], "body": "hi"}`, `field "type" must be a string, got an array`},
		{"Ephemeral", `{"cid": "c1", "ephemeral": "yes", "body": "hi"}`, `field "ephemeral" must be true or false, got a string`},
		{"Syntax", `{"body": "hi",}`, `payload is not valid JSON: invalid character '}' looking for beginning of object key string (at byte 15)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.ParseSendPayload([]byte(tc.payload), 0)
			if err == nil || err.Code != wire.CodeInvalidPayload || err.Message != tc.want {
				t.Fatalf("ParseSendPayload(%s) = %v, want invalid_payload %q", tc.payload, err, tc.want)
			}
		})
	}
	t.Run("TooLarge", func(t *testing.T) {
		_, err := wire.ParseSendPayload([]byte(`{"body": "`+strings.Repeat("x", 100)+`"}`), 64)
		want := "message of 112 bytes is larger than the server's limit of 64 bytes"
		if err == nil || err.Code != wire.CodeTooLarge || err.Message != want {
			t.Fatalf("ParseSendPayload = %v, want too_large %q", err, want)
		}
	})
}

func TestParseReadRequest(t *testing.T) {
	const shape = `; a read marker is {"conv": "...", "seq": N}`
	cases := []struct {
		name, payload, want string
	}{
		{"SeqString", `{"conv": "dm:alice:bob", "seq": "5"}`, `field "seq" must be an integer, got a string` + shape},
		{"ConvNumber", `{"conv": 5, "seq": 1}`, `field "conv" must be a string, got a number` + shape},
		{"NoConv", `{"seq": 1}`, `field "conv" is required` + shape},
		{"NotObject", `[1]`, `payload must be a JSON object, got an array` + shape},
		{"NotJSON", `seq=1`, `payload is not valid JSON: invalid character 's' looking for beginning of value (at byte 1)` + shape},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.ParseReadRequest([]byte(tc.payload))
			if err == nil || err.Code != wire.CodeInvalidPayload || err.Message != tc.want {
				t.Fatalf("ParseReadRequest(%s) = %v, want invalid_payload %q", tc.payload, err, tc.want)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		req, err := wire.ParseReadRequest([]byte(`{"conv": "g:team", "seq": 7}`))
		if err != nil || req != (wire.ReadRequest{Conv: "g:team", Seq: 7}) {
			t.Fatalf("ParseReadRequest = %+v, %v", req, err)
		}
	})
}

func FuzzParseReadRequest(f *testing.F) {
	for _, s := range []string{
		`{"conv":"dm:alice:bob","seq":3}`,
		`{"conv":"g:team","seq":"3"}`,
		`{"conv":5}`,
		`{"seq":1.5,"conv":"g:x"}`,
		`[]`,
		`{"conv":"g:x","seq":1e400}`,
		`{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := wire.ParseReadRequest(b)
		if err != nil {
			if err.Code != wire.CodeInvalidPayload || err.Message == "" {
				t.Fatalf("ParseReadRequest(%q) = %v", b, err)
			}
			if strings.Contains(err.Message, "Go ") || strings.Contains(err.Message, "json: ") {
				t.Fatalf("ParseReadRequest(%q): message %q speaks of Go", b, err.Message)
			}
			return
		}
		if req.Conv == "" {
			t.Fatalf("ParseReadRequest(%q) accepted an empty conv", b)
		}
	})
}
