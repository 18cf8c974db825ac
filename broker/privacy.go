package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/internal/auth"
	"github.com/parley-im/parley/internal/send"
)

// Retention job defaults.
const (
	// DefaultRetentionBatch is the default Options.RetentionBatch.
	DefaultRetentionBatch = 500
	// DefaultRetentionEvery is the default Options.RetentionEvery.
	DefaultRetentionEvery = time.Minute
	// retentionPause separates two batches of one pass, so that sends take
	// the store between them.
	retentionPause = 50 * time.Millisecond
)

// ErrAccountDeleted is what a deleted user's connections are stopped with.
var ErrAccountDeleted = errors.New("broker: account deleted")

// setupPrivacy wires search, retention, blocks and account deletion into
// the engines when the store implements history.Privacy.
func (b *Broker) setupPrivacy() error {
	switch b.opts.DMPolicy {
	case "", send.DMOpen, send.DMContacts:
	default:
		return fmt.Errorf("broker: DMPolicy %q: want %q or %q", b.opts.DMPolicy, send.DMOpen, send.DMContacts)
	}
	p, ok := b.opts.Store.(history.Privacy)
	if !ok {
		return nil
	}
	b.privacy = p
	b.tokens.Revocations = &auth.Revocations{Store: p}
	b.authorizer.Privacy = p
	b.messenger.Privacy = p
	b.messenger.DMPolicy = b.opts.DMPolicy
	b.api.Privacy = p
	b.api.Retention = b.opts.Retention
	forget := func(x, y string) { b.authorizer.Forget(x, y); b.messenger.ForgetRelation(x, y) }
	b.api.OnBlock = forget
	b.api.Disconnect = b.disconnectUser
	if b.bus != nil {
		// Cluster mode: the other nodes forget and disconnect too.
		b.api.OnBlock = func(x, y string) { forget(x, y); b.bus.Block(x, y) }
		b.bus.BlockChanged = forget
		b.bus.UserDeleted = func(user string) {
			b.messenger.ForgetRelations()
			b.tokens.Revocations.Forget(user)
			b.disconnectUser(user)
		}
	}
	b.api.DeleteUser = b.DeleteUser
	return nil
}

// DeleteUser deletes user's account as DELETE /v1/users/me does (for
// operators: `parleyd user delete`): its messages become deleted events,
// its data and its files go, its tokens stop working and its devices connected to this
// node are disconnected. It returns how many of its messages were deleted.
func (b *Broker) DeleteUser(ctx context.Context, user string) (int, error) {
	if b.privacy == nil {
		return 0, errors.New("broker: the store cannot delete users")
	}
	del, err := b.messenger.DeleteAccount(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("broker: delete user %s: %w", user, err)
	}
	b.tokens.Revocations.Forget(user)
	b.disconnectUser(user)
	if b.bus != nil {
		b.bus.DeleteUser(user)
	}
	if err := b.DeleteUserFiles(ctx, user); err != nil {
		return 0, fmt.Errorf("broker: delete the files of user %s: %w", user, err)
	}
	return len(del.Events) + del.Erased, nil
}

// disconnectUser stops the connections of user's devices on this node. In
// cluster mode DeleteUser tells the other nodes, which do the same.
func (b *Broker) disconnectUser(user string) {
	for _, cl := range b.mqtt.Clients.GetAll() {
		if !cl.Net.Inline && !cl.Closed() && auth.UserOf(cl.ID) == user {
			cl.Stop(ErrAccountDeleted)
		}
	}
}

// expireMessages runs the retention job until ctx ends: every
// RetentionEvery, batches of at most RetentionBatch messages, each its own
// short transaction, with a pause between them, until none is left.
func (b *Broker) expireMessages(ctx context.Context) {
	defer close(b.expired)
	tick := time.NewTicker(b.opts.RetentionEvery)
	defer tick.Stop()
	for {
		for {
			ectx, cancel := context.WithTimeout(ctx, time.Minute)
			n, err := b.privacy.Expire(ectx, time.Now(), b.opts.Retention, b.opts.RetentionBatch)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					b.log.Warn("expire messages", "error", err)
				}
				break
			}
			if n == 0 {
				break
			}
			b.log.Debug("expired messages", "messages", n)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retentionPause):
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
