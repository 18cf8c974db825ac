package testkit

import "encoding/json"

// Event is a JSON object on an inbox topic as a test decodes it: a message,
// an ephemeral message, an error, a receipt, a gap or a presence update.
// The fields a kind does not have stay zero; TS stays the string on the wire.
type Event struct {
	Kind    string          `json:"kind"`
	Conv    string          `json:"conv"`
	Seq     int64           `json:"seq"`
	ID      string          `json:"id"`
	CID     string          `json:"cid"`
	From    string          `json:"from"`
	TS      string          `json:"ts"`
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	User    string          `json:"user"`
	After   int64           `json:"after"`
	Before  int64           `json:"before"`
	// presence
	Online   bool   `json:"online"`
	LastSeen string `json:"last_seen"`
	// replies, mentions and changes of messages
	ReplyTo  int64  `json:"reply_to"`
	Target   int64  `json:"target"`
	Emoji    string `json:"emoji"`
	EditedAt string `json:"edited_at"`
	Deleted  bool   `json:"deleted"`
	// Mentions is a message's list of users, or a read event's count.
	Mentions json.RawMessage `json:"mentions"`
	Unread   *int64          `json:"unread"`
	// settings
	MutedUntil *string `json:"muted_until"`
	Archived   bool    `json:"archived"`
	Pinned     bool    `json:"pinned"`
}
