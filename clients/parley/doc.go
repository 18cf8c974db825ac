// Package parley is the Go client of Parley, the instant-messaging backend
// that speaks MQTT. It speaks only the public protocol (docs/protocol.md and
// docs/api.md): MQTT 3.1.1 through github.com/eclipse/paho.mqtt.golang for
// sending and receiving, and the REST API for history, conversations, sync
// and groups. Applications use it instead of hand-rolling topics, JSON
// envelopes, retries, deduplication and gap filling.
//
// # Connecting
//
// Dial connects one device of a user. The user is the sub claim of the token;
// the MQTT client id is USER/DEVICE; the session is persistent, so the server
// keeps delivery cursors for the device and sends it whatever it missed when
// it comes back:
//
//	c, err := parley.Dial(ctx, parley.Options{
//		Broker: "tcp://localhost:1883",
//		HTTP:   "http://localhost:8080",
//		Token:  token, // or TokenSource, called on every (re)connection
//		Device: "laptop",
//	})
//	if err != nil { ... }
//	defer c.Close()
//
// The client reconnects by itself with exponential backoff and subscribes to
// the user's inbox again after every connection.
//
// # Sending
//
// Send sends any JSON-encodable body to a user or a group and returns the
// stored message, with its conversation, seq and id, once the server's echo
// arrives:
//
//	m, err := c.Send(ctx, parley.User("bob"), "hi bob")
//	m, err = c.Send(ctx, parley.Group("team"), map[string]any{"url": "..."}, parley.WithType("link"))
//	switch {
//	case errors.Is(err, parley.ErrNotMember): ...
//	case errors.Is(err, parley.ErrRateLimited): ...
//	}
//
// Every send carries a client message id (cid). Send publishes the message
// again with the same cid after a reconnection or when the server's store is
// unavailable, until its context ends; the server stores a (conversation,
// cid) once, so a message is never stored twice.
//
// # Receiving
//
// Events arrive on the channel returned by Events, or, with
// Options.Handler, in calls to the handler from one goroutine. Stored
// messages (EventMessage) are surfaced per conversation in seq order and
// exactly once: the client remembers the last seq it surfaced in each
// conversation, drops duplicates (a message may reach a device twice, live
// and again in a catch-up), and when a message arrives after a gap, or the
// server reports a gap in its catch-up, it first fetches the missing
// messages from the REST history. The first message the client sees in a
// conversation starts it; which one that is, the server decides (for a
// device it knows, the first one the device has not acknowledged).
//
//	for ev := range c.Events() {
//		switch ev.Kind {
//		case parley.EventMessage:
//			fmt.Printf("%s #%d %s: %s\n", ev.Message.Conv, ev.Message.Seq, ev.Message.From, ev.Message.Text())
//		case parley.EventRead, parley.EventDelivered:
//			...
//		}
//	}
//
// The user's own messages, sent from this device or another one, are
// surfaced too, so every device shows the whole conversation.
//
// # Replies, mentions, edits, deletes and reactions
//
// Reply (or the option ReplyTo) sends a reply to a message of the same
// conversation; Mention names users who count it in their mentions:
//
//	r, err := c.Reply(ctx, parley.Group("team"), 12, "agreed, @bob", parley.Mention("bob"))
//
// Edit, Delete, React and Unreact change message seq of a conversation.
// Each accepted change is a message of its own (an event of type
// TypeEdited, TypeDeleted, TypeReactionAdded or TypeReactionRemoved, whose
// Target is the seq it changes), which reaches every device like any
// message; Apply folds such events into the messages an application shows:
//
//	if _, err := c.React(ctx, parley.User("bob"), 12, "👍"); errors.Is(err, parley.ErrNoSuchMessage) { ... }
//	...
//	case parley.EventMessage:
//		shown = parley.Apply(shown, ev.Message, c.User())
//
// History, Message and Sync return messages with their current state
// (latest body, EditedAt, Deleted, Reactions). Refusals match
// ErrNotAllowed (not the author, not an admin, edit window passed, the
// target is an event) and ErrNoSuchMessage.
//
// Conversations carry the user's Unread and Mentions counts and settings
// (SetSettings: muted, archived, pinned); a read marker moved on one
// device reaches the user's other devices as an EventRead with the new
// counts (Receipt.HasCounts), a settings change as EventSettings.
//
// # The rest
//
// MarkRead sets a read marker, Typing sends a typing indicator, Presence
// watches a user's presence. History, Message, Conversations and Sync read
// over REST; CreateGroup, Group, AddMember, RemoveMember, SetSettings and
// the changes Edit, Delete, React and Unreact write over REST; NewAPI gives
// these without an MQTT connection.
//
// A Client is safe for concurrent use. Close disconnects and releases every
// goroutine and connection it started.
package parley
