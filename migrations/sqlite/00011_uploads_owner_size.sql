-- +goose Up
-- uploads_owner carries size too, so the upload quota's sum of an owner's
-- sizes (UploadBytes, at every upload) reads the index alone (a covering
-- index) instead of a table row per stored file. Dropped and created again
-- under the same name in one transaction.
DROP INDEX uploads_owner;
CREATE INDEX uploads_owner ON uploads (owner, size);

-- +goose Down
DROP INDEX uploads_owner;
CREATE INDEX uploads_owner ON uploads (owner);
