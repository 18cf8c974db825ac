-- +goose Up
-- sessions holds each device's session epoch (a fencing token), bumped at
-- every CONNECT on any node; cursor writes of an older epoch are ignored.
CREATE TABLE sessions (
    device TEXT PRIMARY KEY,
    epoch  BIGINT NOT NULL
);
-- member_version counts membership changes of a group conversation.
ALTER TABLE conversations ADD COLUMN member_version BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE conversations DROP COLUMN member_version;
DROP TABLE sessions;
