package parley

import (
	"context"
	"errors"
	"fmt"
)

// Presence watches the presence of user (one's own, or that of a user one
// shares a conversation with): the current state and every change arrive
// as EventPresence, also after reconnections, until Close. A refused
// subscription returns an error matching ErrForbidden.
func (c *Client) Presence(ctx context.Context, user string) error {
	if user == "" {
		return errors.New("parley: presence: empty user")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.presence[user] = true
	c.mu.Unlock()
	err := c.subscribe(ctx, c.presenceTopic(user))
	if err != nil {
		c.mu.Lock()
		delete(c.presence, user)
		c.mu.Unlock()
		return fmt.Errorf("parley: presence of %s: %w", user, err)
	}
	return nil
}
