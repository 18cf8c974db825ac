package parley

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
)

// MarkRead moves the user's read marker in conv forward to seq (publishing
// {"conv","seq"} to the read topic at QoS 1) and returns once the server
// stored it. The user's other devices and the other members get EventRead.
// A marker the server refuses (not a member, invalid conversation) is
// reported as EventError.
func (c *Client) MarkRead(ctx context.Context, conv string, seq int64) error {
	if conv == "" || seq < 1 {
		return fmt.Errorf("parley: mark read: a conversation and a seq >= 1 are required: %w", ErrInvalidPayload)
	}
	if c.isClosed() {
		return ErrClosed
	}
	payload, _ := json.Marshal(struct {
		Conv string `json:"conv"`
		Seq  int64  `json:"seq"`
	}{conv, seq})
	if err := c.wait(ctx, c.mq.Publish(c.opts.TopicPrefix+"/read", 1, false, payload)); err != nil {
		return fmt.Errorf("parley: mark read: %w", err)
	}
	return nil
}

// MemberReceipt is how far another member of a conversation got: its read
// marker and, in direct conversations, the highest seq that any of its
// devices received (0 when none, and always in groups).
type MemberReceipt struct {
	User         string `json:"user"`
	ReadSeq      int64  `json:"read_seq"`
	DeliveredSeq int64  `json:"delivered_seq"`
}

// Receipts are the receipts of the other current members of Conv, as
// Receipts returns them.
type Receipts struct {
	Conv string `json:"conv"`
	// Members are the other current members, sorted by user id; empty when
	// Hidden.
	Members []MemberReceipt `json:"receipts"`
	// Hidden is set for a group larger than the server's receipt limit
	// (PARLEY_RECEIPT_GROUP_MAX), whose members see no read markers of each
	// other.
	Hidden bool `json:"hidden"`
}

// Receipts returns what EventRead and EventDelivered of the other members
// of conv said, as the server keeps it (GET
// /v1/conversations/{conv}/receipts): for a device that was offline when
// they came. Keep the highest seq per user of these and of the events.
// Errors match ErrNotMember (the user is not a current member of conv) and
// ErrNotFound (conv is not a conversation id).
func (a *API) Receipts(ctx context.Context, conv string) (Receipts, error) {
	var out Receipts
	err := a.get(ctx, "/v1/conversations/"+url.PathEscape(conv)+"/receipts", nil, &out)
	return out, err
}
