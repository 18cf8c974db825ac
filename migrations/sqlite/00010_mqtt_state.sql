-- +goose Up
-- mqtt_state holds the plain MQTT broker state that survives a restart
-- (topics outside Parley's prefix only): kind 'c' a persistent session's
-- client (key ''), 's' one of its subscriptions (key: the filter), 'i' a
-- message queued or in flight for it (key: the packet id), 'r' a retained
-- message (client '', key: the topic), 'p' a publish acknowledged to its
-- sender and not yet handed to the sessions (client: the sender, key: its
-- packet id). data is the broker's own encoding, opaque to the store.
CREATE TABLE mqtt_state (
    kind   TEXT NOT NULL CHECK (kind IN ('c', 's', 'i', 'r', 'p')),
    client TEXT NOT NULL,
    key    TEXT NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (kind, client, key)
);

-- +goose Down
DROP TABLE mqtt_state;
