-- +goose Up
-- Attachments: uploads holds every stored file (its bytes are in the blob
-- store under its id, its thumbnail's under thumb_id); message_files records
-- which messages refer to which uploads, for access checks and for the
-- collector, which deletes uploads that no message refers to (attached ones
-- once their messages are deleted, the others after a day). A message's
-- attachments column is a JSON array of history.Attachment, NULL for none.
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    size         BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    width        INTEGER NOT NULL DEFAULT 0,
    height       INTEGER NOT NULL DEFAULT 0,
    thumb_id     TEXT,
    thumb_size   BIGINT NOT NULL DEFAULT 0,
    thumb_type   TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    attached     BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX uploads_owner ON uploads (owner);
CREATE UNIQUE INDEX uploads_thumb ON uploads (thumb_id) WHERE thumb_id IS NOT NULL;
CREATE INDEX uploads_created ON uploads (created_at) WHERE NOT attached;

CREATE TABLE message_files (
    upload_id TEXT NOT NULL REFERENCES uploads (id),
    conv      TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (upload_id, conv, seq)
);
CREATE INDEX message_files_message ON message_files (conv, seq);

ALTER TABLE messages ADD COLUMN attachments JSON;

-- +goose Down
ALTER TABLE messages DROP COLUMN attachments;
DROP TABLE message_files;
DROP TABLE uploads;
