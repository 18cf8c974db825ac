package history

import (
	"context"
	"fmt"
)

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

// Rows is what the adapters' query results offer (database/sql and pgx
// alike), for the row readers both share.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// CollectMQTTRecords reads rows of (kind, client, key, data) into records.
// It does not close rows.
func CollectMQTTRecords(rows Rows) ([]MQTTRecord, error) {
	var out []MQTTRecord
	for rows.Next() {
		var r MQTTRecord
		var kind string
		if err := rows.Scan(&kind, &r.Client, &r.Key, &r.Data); err != nil {
			return nil, err
		}
		if kind == "" {
			return nil, fmt.Errorf("history: an MQTT state record of client %q without a kind", r.Client)
		}
		r.Kind = kind[0]
		out = append(out, r)
	}
	return out, rows.Err()
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
