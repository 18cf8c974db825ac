-- +goose Up
-- sessions.last_seen is when the device last claimed a session (connected),
-- or when a node last reported it connected; PruneDevices forgets devices
-- whose devices.last_seen and sessions.last_seen are both older than the TTL.
-- No index: pruning scans these tables once an hour, while an index on a
-- column that every CONNECT updates would cost every CONNECT.
ALTER TABLE sessions ADD COLUMN last_seen TIMESTAMPTZ NOT NULL DEFAULT now();
UPDATE sessions SET last_seen = d.last_seen FROM devices d WHERE d.id = sessions.device;

-- +goose Down
ALTER TABLE sessions DROP COLUMN last_seen;
