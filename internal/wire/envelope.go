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
	// Op is what the payload does: history.OpSend (the default), OpEdit,
	// OpDelete, OpReact or OpUnreact.
	Op        string          `json:"op"`
	CID       string          `json:"cid"`
	Type      string          `json:"type"`
	Body      json.RawMessage `json:"body"`
	Ephemeral bool            `json:"ephemeral"`
	// ReplyTo and Mentions belong to sends.
	ReplyTo  int64    `json:"reply_to"`
	Mentions []string `json:"mentions"`
	// Target is the seq of the message an edit, delete, react or unreact
	// changes; Emoji is a reaction's.
	Target int64  `json:"target"`
	Emoji  string `json:"emoji"`
	// Attachments (sends only) name uploads of the sender; see
	// AttachmentRef.
	Attachments []AttachmentRef `json:"attachments"`
}

// AttachmentRef is a file a send refers to: the id of an upload of the
// sender (POST /v1/uploads) and the name shown for it.
type AttachmentRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// MaxAttachmentNameLen bounds an attachment's name, in characters.
const MaxAttachmentNameLen = 255

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
	if e := p.Validate(); e != nil {
		return fail("%s", e.Message)
	}
	return p, nil
}

// Validate checks the fields of a decoded payload (ParseSendPayload calls
// it; the REST API calls it on payloads it builds) and fills in the
// defaults: op "send", type "text" for a send, and for the other ops the
// stored event type and a null body where the op has none. Errors are
// CodeInvalidPayload.
func (p *SendPayload) Validate() *Error {
	if p.Op == "" {
		p.Op = history.OpSend
	}
	if !history.ValidText(p.Type) {
		return Errorf(CodeInvalidPayload, "type must be valid text without U+0000")
	}
	if p.Op != history.OpSend {
		return p.validateChange()
	}
	if p.Type == "" {
		p.Type = history.TypeText
	}
	if utf8.RuneCountInString(p.Type) > MaxTypeLen {
		return Errorf(CodeInvalidPayload, "type is longer than %d characters", MaxTypeLen)
	}
	if history.IsEvent(p.Type) {
		return Errorf(CodeInvalidPayload, "type %q is reserved for the server", p.Type)
	}
	if len(p.Body) == 0 || string(p.Body) == "null" {
		return Errorf(CodeInvalidPayload, "body is required")
	}
	if p.Target != 0 || p.Emoji != "" {
		return Errorf(CodeInvalidPayload, `target and emoji belong to the ops edit, delete, react and unreact, not to a send`)
	}
	if p.ReplyTo < 0 {
		return Errorf(CodeInvalidPayload, "reply_to must be the seq of a message")
	}
	if p.Ephemeral && (p.ReplyTo != 0 || len(p.Mentions) > 0) {
		return Errorf(CodeInvalidPayload, "an ephemeral message cannot reply or mention")
	}
	if e := p.validateAttachments(); e != nil {
		return e
	}
	if len(p.Mentions) > history.MaxMentions {
		return Errorf(CodeInvalidPayload, "a message mentions at most %d users", history.MaxMentions)
	}
	seen := make(map[string]bool, len(p.Mentions))
	mentions := p.Mentions[:0:0]
	for _, u := range p.Mentions {
		if !history.ValidUserID(u) {
			return Errorf(CodeInvalidPayload, "mentions: invalid user id %q", u)
		}
		if !seen[u] {
			seen[u] = true
			mentions = append(mentions, u)
		}
	}
	p.Mentions = mentions
	return nil
}

// validateChange checks the payload of an op other than send.
func (p *SendPayload) validateChange() *Error {
	typ := history.OpType(p.Op)
	switch {
	case typ == "":
		return Errorf(CodeInvalidPayload, `unknown op %q: use "send", "edit", "delete", "react" or "unreact"`, p.Op)
	case p.Type != "" && p.Type != typ:
		return Errorf(CodeInvalidPayload, "op %q takes no type", p.Op)
	case p.Ephemeral:
		return Errorf(CodeInvalidPayload, "op %q cannot be ephemeral", p.Op)
	case p.Target < 1:
		return Errorf(CodeInvalidPayload, `op %q needs "target": the seq of the message`, p.Op)
	case p.ReplyTo != 0 || len(p.Mentions) > 0 || len(p.Attachments) > 0:
		return Errorf(CodeInvalidPayload, "only a send has reply_to, mentions and attachments")
	}
	p.Type = typ
	react := p.Op == history.OpReact || p.Op == history.OpUnreact
	switch {
	case react && (p.Emoji == "" || len(p.Emoji) > history.MaxEmojiLen || !history.ValidText(p.Emoji)):
		return Errorf(CodeInvalidPayload, "emoji must be 1 to %d bytes of text", history.MaxEmojiLen)
	case !react && p.Emoji != "":
		return Errorf(CodeInvalidPayload, "op %q takes no emoji", p.Op)
	}
	if p.Op == history.OpEdit {
		if len(p.Body) == 0 || string(p.Body) == "null" {
			return Errorf(CodeInvalidPayload, "body is required: the message's new body")
		}
		return nil
	}
	if len(p.Body) > 0 && string(p.Body) != "null" {
		return Errorf(CodeInvalidPayload, "op %q takes no body", p.Op)
	}
	p.Body = json.RawMessage("null")
	return nil
}

// validateAttachments checks the attachments of a send: at most
// history.MaxAttachments, each an upload id once with a name of valid text.
func (p *SendPayload) validateAttachments() *Error {
	if len(p.Attachments) == 0 {
		return nil
	}
	if p.Ephemeral {
		return Errorf(CodeInvalidPayload, "an ephemeral message cannot have attachments")
	}
	if len(p.Attachments) > history.MaxAttachments {
		return Errorf(CodeInvalidPayload, "a message has at most %d attachments", history.MaxAttachments)
	}
	seen := make(map[string]bool, len(p.Attachments))
	for _, a := range p.Attachments {
		switch {
		case !history.ValidUploadID(a.ID) || len(a.ID) != 33:
			return Errorf(CodeInvalidPayload, "attachments: no upload %q", a.ID)
		case seen[a.ID]:
			return Errorf(CodeInvalidPayload, "attachments: upload %q is attached twice", a.ID)
		case !history.ValidText(a.Name) || utf8.RuneCountInString(a.Name) > MaxAttachmentNameLen:
			return Errorf(CodeInvalidPayload, "attachments: a name is valid text of at most %d characters", MaxAttachmentNameLen)
		}
		seen[a.ID] = true
	}
	return nil
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
	for _, f := range []struct {
		name string
		dst  any
	}{{"cid", &p.CID}, {"op", &p.Op}, {"type", &p.Type}, {"ephemeral", &p.Ephemeral},
		{"reply_to", &p.ReplyTo}, {"mentions", &p.Mentions}, {"target", &p.Target}, {"emoji", &p.Emoji},
		{"attachments", &p.Attachments}} {
		if raw, ok := fields[f.name]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return fieldError(f.name, err)
			}
		}
	}
	if raw, ok := fields["body"]; ok {
		p.Body = raw
	}
	return nil
}

// Delivery is the JSON object of a message on an inbox topic.
type Delivery struct {
	Kind string          `json:"kind,omitempty"` // "message" or "ephemeral"; none in REST items
	Conv string          `json:"conv"`
	Seq  int64           `json:"seq,omitempty"`
	ID   string          `json:"id,omitempty"`
	CID  string          `json:"cid,omitempty"`
	From string          `json:"from"`
	TS   string          `json:"ts"`
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
	// ReplyTo and Mentions come with messages that reply or mention;
	// Target with change events (message.edited, message.deleted,
	// reaction.added, reaction.removed), Emoji with reaction events.
	ReplyTo  int64    `json:"reply_to,omitempty"`
	Mentions []string `json:"mentions,omitempty"`
	Target   int64    `json:"target,omitempty"`
	Emoji    string   `json:"emoji,omitempty"`
	// EditedAt and Deleted tell the state of a message that changed before
	// it was delivered (catch-up): its body is then the latest, or null.
	EditedAt string `json:"edited_at,omitempty"`
	Deleted  bool   `json:"deleted,omitempty"`
	// Attachments are the files of a message that has some.
	Attachments []history.Attachment `json:"attachments,omitempty"`
}

// StoredDelivery returns the Delivery of a stored message, of kind "message".
// MessageDelivery (delivery.go) writes its JSON without reflection and must
// follow any change here.
func StoredDelivery(m history.Message) Delivery {
	d := Delivery{Kind: "message", Conv: m.Conv, Seq: m.Seq, ID: m.ID, CID: m.CID,
		From: m.From, TS: m.TS.UTC().Format(TSLayout), Type: m.Type, Body: m.Body,
		ReplyTo: m.ReplyTo, Mentions: m.Mentions, Target: m.Target, Emoji: m.Emoji, Deleted: m.Deleted,
		Attachments: m.Attachments}
	if !m.EditedAt.IsZero() {
		d.EditedAt = m.EditedAt.UTC().Format(TSLayout)
	}
	return d
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
