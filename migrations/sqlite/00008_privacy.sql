-- +goose Up
-- Search, retention, blocks and account deletion.

-- message_search is the FTS5 index of messages' string values (not keys,
-- numbers or booleans: json_tree's 'text' leaves), one row per message that
-- is neither an event nor deleted, under the message's rowid. The triggers
-- keep it current on insert, edit, delete and expiry. SQLite keeps the
-- rowids of a table without an INTEGER PRIMARY KEY only until a VACUUM:
-- Parley never runs one, and operators must not (see docs/architecture.md).
CREATE VIRTUAL TABLE message_search USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
-- +goose StatementBegin
CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
WHEN NOT NEW.event AND NOT NEW.deleted BEGIN
    INSERT INTO message_search (rowid, text)
        SELECT NEW.rowid, group_concat(value, char(10)) FROM json_tree(NEW.body) WHERE type = 'text' HAVING count(*) > 0;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER messages_search_update AFTER UPDATE OF body, deleted ON messages BEGIN
    DELETE FROM message_search WHERE rowid = OLD.rowid;
    INSERT INTO message_search (rowid, text)
        SELECT NEW.rowid, group_concat(value, char(10)) FROM json_tree(NEW.body) WHERE type = 'text'
        HAVING count(*) > 0 AND NOT NEW.event AND NOT NEW.deleted;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_search WHERE rowid = OLD.rowid;
END;
-- +goose StatementEnd
INSERT INTO message_search (rowid, text)
    SELECT m.rowid, (SELECT group_concat(value, char(10)) FROM json_tree(m.body) WHERE type = 'text')
    FROM messages m WHERE NOT m.event AND NOT m.deleted
    AND EXISTS (SELECT 1 FROM json_tree(m.body) WHERE type = 'text');

-- A conversation's own retention in seconds (NULL: none), and the first seq
-- that retention kept (0: none expired): history and catch-up start there.
ALTER TABLE conversations ADD COLUMN retention_s INTEGER;
ALTER TABLE conversations ADD COLUMN expired_before INTEGER NOT NULL DEFAULT 0;

-- blocks: user_id blocks blocked.
CREATE TABLE blocks (
    user_id    TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);

-- users holds what Parley knows of a user besides its memberships: tokens
-- issued before tokens_valid_after are refused (set by account deletion).
CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    tokens_valid_after TEXT
);

-- Export and account deletion list a user's messages.
CREATE INDEX messages_sender ON messages (sender);

-- +goose Down
DROP INDEX messages_sender;
DROP TABLE users;
DROP TABLE blocks;
ALTER TABLE conversations DROP COLUMN expired_before;
ALTER TABLE conversations DROP COLUMN retention_s;
DROP TRIGGER messages_search_delete;
DROP TRIGGER messages_search_update;
DROP TRIGGER messages_search_insert;
DROP TABLE message_search;
