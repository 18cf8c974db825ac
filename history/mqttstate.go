package history

import "context"

// Kinds of MQTTRecord.
const (
	MQTTClient       byte = 'c' // a persistent session's client; Key ""
	MQTTSubscription byte = 's' // one of its subscriptions; Key the filter
	MQTTInflight     byte = 'i' // a message queued or in flight for it; Key the packet id
	MQTTRetained     byte = 'r' // a retained message; Client "", Key the topic
	MQTTPending      byte = 'p' // a publish acknowledged to its sender, not yet queued for the sessions
)

// MQTTRecord is one piece of the plain MQTT broker state (topics outside
// Parley's prefix): Data is the broker's own encoding, opaque to the store.
type MQTTRecord struct {
	Kind   byte
	Client string
	Key    string
	Data   []byte
}

// MQTTStater is implemented by stores that keep the plain MQTT broker state
// across restarts: persistent sessions, their subscriptions and queued
// messages, and retained messages. Each method is one transaction.
type MQTTStater interface {
	// PutMQTT stores records, replacing those with the same kind, client
	// and key.
	PutMQTT(ctx context.Context, recs ...MQTTRecord) error
	// DeleteMQTT deletes the record of kind, client and key, if any.
	DeleteMQTT(ctx context.Context, kind byte, client, key string) error
	// DeleteMQTTClient deletes a client's session: its client record,
	// subscriptions and queued messages.
	DeleteMQTTClient(ctx context.Context, client string) error
	// MQTTState returns every record of kind.
	MQTTState(ctx context.Context, kind byte) ([]MQTTRecord, error)
	// MQTTSession returns the session of client: its client record,
	// subscriptions and queued messages (none when it has no session).
	MQTTSession(ctx context.Context, client string) ([]MQTTRecord, error)
}
