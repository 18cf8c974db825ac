-- +goose Up
-- devices records every client id that ever connected.
CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);

-- cursors holds, per device and conversation, the highest acknowledged seq.
CREATE TABLE cursors (
    device TEXT NOT NULL,
    conv   TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (device, conv)
);

-- read_seq is the user's read marker in the conversation.
ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE members DROP COLUMN read_seq;
DROP TABLE cursors;
DROP TABLE devices;
