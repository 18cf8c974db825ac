-- +goose Up
-- Messages that live: replies, mentions, edits, deletes and reactions.
-- reply_to is the seq a message replies to; mentions the users it mentions
-- (a JSON array of user ids). target and emoji belong to change events
-- (message.edited, message.deleted, reaction.*). edited_at is the time of a
-- message's latest edit; deleted is set once it was deleted (its body, and
-- that of its edits, is then JSON null). event marks what only the server
-- writes (group.*, member.*, message.*, reaction.*, system.*): events are
-- never unread. Booleans are 0 or 1.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN mentions TEXT;
ALTER TABLE messages ADD COLUMN target INTEGER;
ALTER TABLE messages ADD COLUMN emoji TEXT;
ALTER TABLE messages ADD COLUMN edited_at TEXT;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN event INTEGER NOT NULL DEFAULT 0;
-- GLOB, unlike LIKE, is case-sensitive, as history.IsEvent is.
UPDATE messages SET event = 1
    WHERE type GLOB 'group.*' OR type GLOB 'member.*' OR type GLOB 'message.*'
       OR type GLOB 'reaction.*' OR type GLOB 'system.*';
-- The change events of a message, such as its edits, which a delete erases.
CREATE INDEX messages_target ON messages (conv, target) WHERE target IS NOT NULL;

-- reactions holds each user's current reactions to messages.
CREATE TABLE reactions (
    conv       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    emoji      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (conv, seq, user_id, emoji),
    FOREIGN KEY (conv, seq) REFERENCES messages (conv, seq)
);

-- A user's own settings of a conversation.
ALTER TABLE members ADD COLUMN muted_until TEXT;
ALTER TABLE members ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE members DROP COLUMN pinned;
ALTER TABLE members DROP COLUMN archived;
ALTER TABLE members DROP COLUMN muted_until;
DROP TABLE reactions;
DROP INDEX messages_target;
ALTER TABLE messages DROP COLUMN event;
ALTER TABLE messages DROP COLUMN deleted;
ALTER TABLE messages DROP COLUMN edited_at;
ALTER TABLE messages DROP COLUMN emoji;
ALTER TABLE messages DROP COLUMN target;
ALTER TABLE messages DROP COLUMN mentions;
ALTER TABLE messages DROP COLUMN reply_to;
