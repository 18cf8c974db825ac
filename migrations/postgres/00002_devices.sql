-- +goose Up
-- devices records every client id that ever connected.
CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- cursors holds, per device and conversation, the highest acknowledged seq.
CREATE TABLE cursors (
    device TEXT NOT NULL,
    conv   TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (device, conv)
);

-- read_seq is the user's read marker in the conversation.
ALTER TABLE members ADD COLUMN read_seq BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE members DROP COLUMN read_seq;
DROP TABLE cursors;
DROP TABLE devices;
