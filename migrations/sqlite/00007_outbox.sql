-- +goose Up
-- outbox is the transactional record of every stored change, which sinks
-- (webhooks, push, Kafka) consume in pos order. SQLite commits one writer
-- at a time, so AUTOINCREMENT positions are in commit order. kind 'message'
-- refers to the message (conv, seq); kind 'read' is user_id's read marker
-- moved to seq. Timestamps are UTC in the store's fixed-width layout.
CREATE TABLE outbox (
    pos     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('message', 'read')),
    conv    TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    user_id TEXT,
    ts      TEXT NOT NULL
);

-- sink_positions holds, per sink, the outbox pos up to which it consumed.
CREATE TABLE sink_positions (
    sink       TEXT PRIMARY KEY,
    pos        INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- push_tokens holds each device's (client id's) push registration.
CREATE TABLE push_tokens (
    device     TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    provider   TEXT NOT NULL,
    token      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX push_tokens_user ON push_tokens (user_id);

-- PushTargets looks up a user's devices (their cursors tell whether any
-- acknowledged a message). user_id never changes, so the index costs a
-- device's first connection only.
CREATE INDEX devices_user ON devices (user_id);

-- +goose Down
DROP INDEX devices_user;
DROP TABLE push_tokens;
DROP TABLE sink_positions;
DROP TABLE outbox;
