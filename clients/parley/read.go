package parley

import (
	"context"
	"encoding/json"
	"fmt"
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
