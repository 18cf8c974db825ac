-- +goose Up
-- changed_xid is the id of the last transaction that changed the row; GET
-- /v1/sync compares it with the xmin of an earlier snapshot, which is safe
-- whatever the commit order.
ALTER TABLE conversations ADD COLUMN changed_xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN changed_xid BIGINT NOT NULL DEFAULT 0;
CREATE INDEX conversations_updated ON conversations (updated_at DESC, id DESC);

-- +goose Down
DROP INDEX conversations_updated;
ALTER TABLE members DROP COLUMN changed_xid;
ALTER TABLE conversations DROP COLUMN changed_xid;
