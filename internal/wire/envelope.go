package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/parley-im/parley/history"
)

// Limits of a send payload's fields.
const (
	MaxCIDLen  = 64
	MaxTypeLen = 32
)

// TSLayout is the format of timestamps on the wire: RFC 3339, UTC,
// milliseconds.
const TSLayout = "2006-01-02T15:04:05.000Z"

// SendPayload is the JSON object a client publishes to a send topic.
type SendPayload struct {
	CID       string          `json:"cid"`
	Type      string          `json:"type"`
	Body      json.RawMessage `json:"body"`
	Ephemeral bool            `json:"ephemeral"`
}

// reservedTypes are written by the server only; clients cannot forge them.
var reservedTypes = []string{"group.", "member.", "system."}

// ParseSendPayload decodes and validates a send payload of at most max bytes.
// Unknown fields, "from" included, are ignored. The payload must be UTF-8 and
// cid and type valid text (history.ValidText: no U+0000, even escaped); body
// is any JSON value other than null and is stored as sent, escapes included.
func ParseSendPayload(b []byte, max int) (SendPayload, *Error) {
	var p SendPayload
	if max > 0 && len(b) > max {
		return p, Errorf(CodeTooLarge, "message of %d bytes is larger than the server's limit of %d bytes", len(b), max)
	}
	if !utf8.Valid(b) {
		return p, Errorf(CodeInvalidPayload, "payload is not valid UTF-8")
	}
	b = bytes.Trim(b, jsonSpace)
	if len(b) == 0 || b[0] != '{' {
		return p, Errorf(CodeInvalidPayload, "payload must be a JSON object")
	}
	if err := decodeSend(b, &p); err != nil {
		// Keep the cid when the rest is wrong, so the error can name it.
		cid := p.CID
		if utf8.RuneCountInString(cid) > MaxCIDLen || !history.ValidText(cid) {
			cid = ""
		}
		p = SendPayload{CID: cid}
		return p, &Error{Code: CodeInvalidPayload, Message: JSONError("payload", nil, err), CID: cid}
	}
	fail := func(format string, args ...any) (SendPayload, *Error) {
		e := Errorf(CodeInvalidPayload, format, args...)
		e.CID = p.CID
		return p, e
	}
	if utf8.RuneCountInString(p.CID) > MaxCIDLen {
		p.CID = ""
		return fail("cid is longer than %d characters", MaxCIDLen)
	}
	// A JSON escape such as \u0000 decodes to text that PostgreSQL refuses:
	// refused here on every store, before the message joins a group commit.
	if !history.ValidText(p.CID) {
		p.CID = ""
		return fail("cid must be valid text without U+0000")
	}
	if !history.ValidText(p.Type) {
		return fail("type must be valid text without U+0000")
	}
	if p.Type == "" {
		p.Type = history.TypeText
	}
	if utf8.RuneCountInString(p.Type) > MaxTypeLen {
		return fail("type is longer than %d characters", MaxTypeLen)
	}
	for _, r := range reservedTypes {
		if len(p.Type) >= len(r) && p.Type[:len(r)] == r {
			return fail("type %q is reserved for the server", p.Type)
		}
	}
	if len(p.Body) == 0 || string(p.Body) == "null" {
		return fail("body is required")
	}
	return p, nil
}

// jsonSpace is the white space JSON allows around a value.
const jsonSpace = " \t\r\n"

// decodeSend decodes a send payload object into p. Field names match exactly
// (encoding/json alone would match "CID" or "Body" too); other fields are
// ignored. On an error p keeps the cid when it could be read.
func decodeSend(b []byte, p *SendPayload) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	if raw, ok := fields["cid"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &p.CID); err != nil {
			return fieldError("cid", err)
		}
	}
	if raw, ok := fields["type"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &p.Type); err != nil {
			return fieldError("type", err)
		}
	}
	if raw, ok := fields["ephemeral"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &p.Ephemeral); err != nil {
			return fieldError("ephemeral", err)
		}
	}
	if raw, ok := fields["body"]; ok {
		p.Body = raw
	}
	return nil
}

// Delivery is the JSON object of a message on an inbox topic.
type Delivery struct {
	Kind string          `json:"kind"` // "message" or "ephemeral"
	Conv string          `json:"conv"`
	Seq  int64           `json:"seq,omitempty"`
	ID   string          `json:"id,omitempty"`
	CID  string          `json:"cid,omitempty"`
	From string          `json:"from"`
	TS   string          `json:"ts"`
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// MessageDelivery returns the inbox payload of a stored message.
func MessageDelivery(m history.Message) []byte {
	b, _ := json.Marshal(Delivery{Kind: "message", Conv: m.Conv, Seq: m.Seq, ID: m.ID, CID: m.CID,
		From: m.From, TS: m.TS.UTC().Format(TSLayout), Type: m.Type, Body: m.Body})
	return b
}

// ErrorEvent is the JSON object of an error on the sender's inbox.
type ErrorEvent struct {
	Kind    string `json:"kind"` // "error"
	CID     string `json:"cid,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Topic   string `json:"topic,omitempty"`
	// RetryAfter is, for rate_limited, the seconds until the user may send
	// again.
	RetryAfter int `json:"retry_after,omitempty"`
}

// ErrorPayload returns the inbox payload of the error event for e, a failed
// publish to topic.
func ErrorPayload(e *Error, topic string) []byte {
	b, _ := json.Marshal(ErrorEvent{Kind: "error", CID: e.CID, Code: e.Code, Message: e.Message, Topic: topic, RetryAfter: e.RetryAfterSeconds()})
	return b
}

// ReadRequest is the payload of a read marker: {"conv": "...", "seq": N}.
type ReadRequest struct {
	Conv string `json:"conv"`
	Seq  int64  `json:"seq"`
}

// readShape ends the error texts of ParseReadRequest.
const readShape = `a read marker is {"conv": "...", "seq": N}`

// ParseReadRequest decodes a read marker payload. Errors are
// CodeInvalidPayload and say what is wrong (a field of the wrong type, no
// conv, not JSON) and what a marker looks like.
func ParseReadRequest(b []byte) (ReadRequest, *Error) {
	var req ReadRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return ReadRequest{}, Errorf(CodeInvalidPayload, "%s; %s", JSONError("payload", &req, err), readShape)
	}
	if req.Conv == "" {
		return ReadRequest{}, Errorf(CodeInvalidPayload, `field "conv" is required; %s`, readShape)
	}
	return req, nil
}
