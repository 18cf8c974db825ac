-- +goose Up
CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    conv       TEXT NOT NULL REFERENCES conversations (id),
    seq        BIGINT NOT NULL,
    id         TEXT NOT NULL,
    cid        TEXT,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    body       JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conv, seq)
);
CREATE UNIQUE INDEX messages_id ON messages (id);
CREATE UNIQUE INDEX messages_cid ON messages (conv, sender, cid) WHERE cid IS NOT NULL;

CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- members holds current and past members of every conversation (for direct
-- conversations both users); left_seq is set when a member leaves or is removed.
CREATE TABLE members (
    conv       TEXT NOT NULL REFERENCES conversations (id),
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL,
    joined_seq BIGINT NOT NULL,
    left_seq   BIGINT,
    PRIMARY KEY (conv, user_id)
);
CREATE INDEX members_user ON members (user_id);

-- +goose Down
DROP TABLE members;
DROP TABLE groups;
DROP TABLE messages;
DROP TABLE conversations;
