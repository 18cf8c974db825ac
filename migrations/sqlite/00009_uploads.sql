-- +goose Up
-- Attachments: uploads holds every stored file (its bytes are in the blob
-- store under its id, its thumbnail's under thumb_id); message_files records
-- which messages refer to which uploads, for access checks and for the
-- collector, which deletes uploads that no message refers to (attached ones
-- once their messages are deleted, the others after a day). A message's
-- attachments column is a JSON array of history.Attachment, NULL for none.
-- Times are RFC 3339 text; booleans 0 or 1.
CREATE TABLE uploads (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    width        INTEGER NOT NULL DEFAULT 0,
    height       INTEGER NOT NULL DEFAULT 0,
    thumb_id     TEXT,
    thumb_size   INTEGER NOT NULL DEFAULT 0,
    thumb_type   TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    attached     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX uploads_owner ON uploads (owner);
CREATE UNIQUE INDEX uploads_thumb ON uploads (thumb_id) WHERE thumb_id IS NOT NULL;
CREATE INDEX uploads_created ON uploads (created_at) WHERE attached = 0;

CREATE TABLE message_files (
    upload_id TEXT NOT NULL REFERENCES uploads (id),
    conv      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (upload_id, conv, seq)
);
CREATE INDEX message_files_message ON message_files (conv, seq);

ALTER TABLE messages ADD COLUMN attachments TEXT;

-- +goose Down
ALTER TABLE messages DROP COLUMN attachments;
DROP TABLE message_files;
DROP TABLE uploads;
