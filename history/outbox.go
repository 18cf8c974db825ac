package history

import (
	"context"
	"strings"
	"time"
)

// Outbox kinds: what an outbox row refers to.
const (
	// OutboxMessage refers to the stored message (Conv, Seq): a send, an
	// edit, a delete, a reaction or a membership message. Its event is
	// built from the message as it is when read, so a delete erases the
	// bodies of undelivered events too.
	OutboxMessage = "message"
	// OutboxRead is a read marker: User read Conv up to Seq.
	OutboxRead = "read"
)

// OutboxEvent is one row of the outbox, the transactional record of every
// stored change that sinks (webhooks, push, Kafka) consume. Stores write
// the rows in the same transaction as the change.
type OutboxEvent struct {
	// Pos orders the outbox: positions increase in commit order, so that a
	// reader that saw Pos p never later sees a new row below p.
	Pos  int64
	ID   string // stable event id: the message's id, or a new id for a read
	Kind string // OutboxMessage or OutboxRead
	Conv string
	Seq  int64
	User string // OutboxRead: the reader
	TS   time.Time
	// Message is the stored message of an OutboxMessage row as it is now
	// (its body null once deleted); nil when the message is gone.
	Message *Message
}

// PushTarget is a user to notify of a new message: none of its devices
// acknowledged the message, the conversation is not muted, and it has push
// tokens.
type PushTarget struct {
	User   string
	Tokens []PushToken
	// Unread is the user's total unread count over its conversations, the
	// badge of a notification.
	Unread int64
}

// PushToken is a device's registration with a push provider.
type PushToken struct {
	Device   string // the client id, USER/DEVICE
	Provider string // "fcm", "apns" or "webhook"
	Token    string
}

// Outboxer is the part of a Store that serves the outbox and push: sinks'
// progress, pruning, push tokens and the push decision. Both stores
// implement it.
type Outboxer interface {
	// Outbox returns up to limit events with Pos > after, in Pos order.
	Outbox(ctx context.Context, after int64, limit int) ([]OutboxEvent, error)
	// OutboxHead returns the highest Pos written so far (0 when none).
	OutboxHead(ctx context.Context) (int64, error)
	// SinkPosition returns the Pos up to which sink consumed the outbox;
	// ok is false for a sink never seen.
	SinkPosition(ctx context.Context, sink string) (pos int64, ok bool, err error)
	// SaveSinkPosition records that sink consumed the outbox up to pos.
	SaveSinkPosition(ctx context.Context, sink string, pos int64) error
	// PruneOutbox deletes the events with Pos <= upTo, at most limit of
	// them, and returns how many it deleted.
	PruneOutbox(ctx context.Context, upTo int64, limit int) (int, error)

	// SetPushToken registers (or replaces) the push token of device (a
	// client id USER/DEVICE) of user.
	SetPushToken(ctx context.Context, user string, t PushToken) error
	// DeletePushToken removes device's push token; removing a missing one
	// succeeds. When token is not empty, only that token is removed (an
	// invalid-token answer must not remove a newer registration).
	DeletePushToken(ctx context.Context, device, token string) error
	// PushTargets returns the users among users, members of conv, to notify
	// of message seq: the message was not deleted, no device of theirs
	// acknowledged seq (a cursor at or past it), conv is not muted for them
	// at now, and they have push tokens. Users without tokens are left out.
	PushTargets(ctx context.Context, conv string, seq int64, users []string, now time.Time) ([]PushTarget, error)
}

// Leaser is a store that can elect one node of a cluster to serve a sink:
// PostgreSQL, with a session advisory lock. A store without it serves one
// node only, which always leads.
type Leaser interface {
	// TryLead tries to become the leader of name without waiting. When it
	// succeeds, lost is closed if the leadership ends (the connection that
	// holds it broke) and release gives it up; when another node leads,
	// ok is false.
	TryLead(ctx context.Context, name string) (ok bool, lost <-chan struct{}, release func(), err error)
}

// CheckOutboxLimit refuses (EINVALID) a limit of Outbox or PruneOutbox
// below 1.
func CheckOutboxLimit(limit int) error {
	if limit < 1 {
		return Errorf(EINVALID, "limit %d: want at least 1", limit)
	}
	return nil
}

// MaxPushTokens bounds the push tokens of one user: registering one more
// device drops the least recently registered ones beyond it.
const MaxPushTokens = 32

// CheckPushToken refuses (EINVALID) a token of a device that is not user's
// (a client id USER/DEVICE, or USER itself) and an empty provider or token.
func CheckPushToken(user string, t PushToken) error {
	if t.Device != user && !strings.HasPrefix(t.Device, user+"/") {
		return Errorf(EINVALID, "device %q is not a device of user %q", t.Device, user)
	}
	if t.Provider == "" || t.Token == "" {
		return Errorf(EINVALID, "push token of %q: provider and token are required", t.Device)
	}
	return nil
}

// TargetUsers returns the users of targets, in order: the users whose
// tokens PushTargets reads once it has the targets.
func TargetUsers(targets []PushTarget) []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		out[i] = t.User
	}
	return out
}

// WithTokens fills in the targets' tokens (by user) and leaves out those
// without any (deleted between the reads of the targets and the tokens);
// nil when none is left. It reuses the array of targets.
func WithTokens(targets []PushTarget, tokens map[string][]PushToken) []PushTarget {
	out := targets[:0]
	for _, t := range targets {
		if t.Tokens = tokens[t.User]; len(t.Tokens) > 0 {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
