-- +goose Up
-- changes counts write transactions; SQLite commits them one at a time, so
-- changed_xid values appear in commit order. GET /v1/sync compares them.
CREATE TABLE changes (n INTEGER NOT NULL);
INSERT INTO changes (n) VALUES (0);
ALTER TABLE conversations ADD COLUMN changed_xid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN changed_xid INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_updated ON conversations (updated_at DESC, id DESC);

-- +goose Down
DROP INDEX conversations_updated;
ALTER TABLE members DROP COLUMN changed_xid;
ALTER TABLE conversations DROP COLUMN changed_xid;
DROP TABLE changes;
