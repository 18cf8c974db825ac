-- +goose Up
-- sessions.last_seen is when the device last claimed a session (connected),
-- or when a node last reported it connected; PruneDevices forgets devices
-- whose devices.last_seen and sessions.last_seen are both older than the TTL.
-- Timestamps are UTC in the store's fixed-width layout, so they compare as
-- text.
ALTER TABLE sessions ADD COLUMN last_seen TEXT NOT NULL DEFAULT '';
UPDATE sessions SET last_seen = coalesce(
    (SELECT d.last_seen FROM devices d WHERE d.id = sessions.device),
    strftime('%Y-%m-%dT%H:%M:%S', 'now') || '.000000Z');

-- +goose Down
ALTER TABLE sessions DROP COLUMN last_seen;
