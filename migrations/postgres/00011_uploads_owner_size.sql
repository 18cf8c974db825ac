-- +goose Up
-- uploads_owner carries size too, so the upload quota's sum of an owner's
-- sizes (UploadBytes, at every upload) is an index-only scan instead of an
-- index scan fetching every one of the owner's rows from the table (rows on
-- pages not yet all-visible are still fetched). Dropped and created again
-- under the same name in one transaction.
DROP INDEX uploads_owner;
CREATE INDEX uploads_owner ON uploads (owner) INCLUDE (size);

-- +goose Down
DROP INDEX uploads_owner;
CREATE INDEX uploads_owner ON uploads (owner);
