// Package outbox delivers the stored changes of Parley (messages, edits,
// deletes, reactions, membership changes, read markers) to sinks: webhooks,
// push notifications, a Kafka topic. The store writes each change's event in
// the same transaction as the change (the transactional outbox); a
// Dispatcher per sink reads them in order, hands them to the sink and
// records its progress, so that no event is lost and each reaches the sink
// at least once, always with the same id, in seq order per conversation.
package outbox

import (
	"context"
	"encoding/json"
	"time"
)

// Event types.
const (
	TypeMessageCreated  = "message.created"
	TypeMessageEdited   = "message.edited"
	TypeMessageDeleted  = "message.deleted"
	TypeReactionAdded   = "reaction.added"
	TypeReactionRemoved = "reaction.removed"
	TypeGroupCreated    = "group.created"
	TypeRead            = "read"
	// member.added, member.removed, member.left and member.role keep the
	// type of their membership message.
)

// Event is one stored change as sinks receive it: the JSON object
// {"id","type","ts","conv","seq","data"} of webhooks and Kafka.
type Event struct {
	// ID is stable: a redelivery carries the same id.
	ID   string    `json:"id"`
	Type string    `json:"type"`
	TS   time.Time `json:"ts"`
	Conv string    `json:"conv"`
	// Seq is the seq of the message the event stored (for read: the read
	// marker).
	Seq int64 `json:"seq"`
	// Data is the message as inbox deliveries carry it (see
	// docs/protocol.md), as it is when the event is delivered (a deleted
	// message's body is null), or for read {"kind":"read","conv","user","seq"}.
	Data json.RawMessage `json:"data"`
}

// Sink receives events. Deliver is called with events in outbox order (in
// seq order per conversation), one batch at a time, never concurrently for
// one sink. It returns how many of evs, from the first, were delivered; an
// error with n < len(evs) means evs[n] (and what follows) will be offered
// again later, after a backoff.
type Sink interface {
	// Name identifies the sink's progress in the store; keep it stable
	// across restarts ("webhook:https://...", "kafka:parley.events", "push").
	Name() string
	Deliver(ctx context.Context, evs []Event) (n int, err error)
}
