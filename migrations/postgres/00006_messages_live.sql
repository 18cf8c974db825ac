-- +goose Up
-- Messages that live: replies, mentions, edits, deletes and reactions.
-- reply_to is the seq a message replies to; mentions the users it mentions.
-- target and emoji belong to change events (message.edited, message.deleted,
-- reaction.*). edited_at is the time of a message's latest edit; deleted is
-- set once it was deleted (its body, and that of its edits, is then JSON
-- null). event marks what only the server writes (group.*, member.*,
-- message.*, reaction.*, system.*): events are never unread.
ALTER TABLE messages
    ADD COLUMN reply_to  BIGINT,
    ADD COLUMN mentions  TEXT[],
    ADD COLUMN target    BIGINT,
    ADD COLUMN emoji     TEXT,
    ADD COLUMN edited_at TIMESTAMPTZ,
    ADD COLUMN deleted   BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN event     BOOLEAN NOT NULL DEFAULT false;
UPDATE messages SET event = true
    WHERE type LIKE 'group.%' OR type LIKE 'member.%' OR type LIKE 'message.%'
       OR type LIKE 'reaction.%' OR type LIKE 'system.%';
-- The change events of a message, such as its edits, which a delete erases.
CREATE INDEX messages_target ON messages (conv, target) WHERE target IS NOT NULL;

-- reactions holds each user's current reactions to messages.
CREATE TABLE reactions (
    conv       TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conv, seq, user_id, emoji),
    FOREIGN KEY (conv, seq) REFERENCES messages (conv, seq)
);

-- A user's own settings of a conversation.
ALTER TABLE members
    ADD COLUMN muted_until TIMESTAMPTZ,
    ADD COLUMN archived    BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN pinned      BOOLEAN NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE members DROP COLUMN pinned, DROP COLUMN archived, DROP COLUMN muted_until;
DROP TABLE reactions;
DROP INDEX messages_target;
ALTER TABLE messages DROP COLUMN event, DROP COLUMN deleted, DROP COLUMN edited_at,
    DROP COLUMN emoji, DROP COLUMN target, DROP COLUMN mentions, DROP COLUMN reply_to;
