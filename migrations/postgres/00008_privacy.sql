-- +goose Up
-- Search, retention, blocks and account deletion.

-- search_config holds the text search configuration (language) of the
-- search vectors; the store sets it from PARLEY_SEARCH_LANGUAGE.
CREATE TABLE search_config (
    one      BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    language TEXT NOT NULL
);
INSERT INTO search_config (language) VALUES ('simple');

-- messages.search is the text search vector of a message's string values
-- (history.SearchText: not keys, numbers or booleans): NULL for events and
-- deleted messages. The trigger keeps it current on insert, edit and
-- delete. A body whose escapes PostgreSQL cannot decode (\u0000, a lone
-- surrogate such as \ud800) is indexed with every \uXXXX escape read as
-- U+FFFD, in a subtransaction that costs a few microseconds a row.
ALTER TABLE messages ADD COLUMN search tsvector;
-- +goose StatementBegin
CREATE FUNCTION messages_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event OR NEW.deleted THEN
        NEW.search := NULL;
    ELSE
        BEGIN
            NEW.search := json_to_tsvector((SELECT language FROM search_config)::regconfig, NEW.body, '["string"]');
        EXCEPTION WHEN untranslatable_character OR invalid_text_representation OR character_not_in_repertoire THEN
            NEW.search := json_to_tsvector((SELECT language FROM search_config)::regconfig,
                regexp_replace(NEW.body::text, '\\u[0-9a-fA-F]{4}', '\\ufffd', 'g')::json, '["string"]');
        END;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER messages_search BEFORE INSERT OR UPDATE OF body, deleted ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_search();
UPDATE messages SET body = body;
CREATE INDEX messages_search ON messages USING gin (search);

-- A conversation's own retention in seconds (NULL: none), and the first seq
-- that retention kept (0: none expired): history and catch-up start there.
ALTER TABLE conversations
    ADD COLUMN retention_s    BIGINT,
    ADD COLUMN expired_before BIGINT NOT NULL DEFAULT 0;

-- blocks: user_id blocks blocked.
CREATE TABLE blocks (
    user_id    TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);

-- users holds what Parley knows of a user besides its memberships: tokens
-- issued before tokens_valid_after are refused (set by account deletion).
CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    tokens_valid_after TIMESTAMPTZ
);

-- Export and account deletion list a user's messages.
CREATE INDEX messages_sender ON messages (sender);

-- +goose Down
DROP INDEX messages_sender;
DROP TABLE users;
DROP TABLE blocks;
ALTER TABLE conversations DROP COLUMN expired_before, DROP COLUMN retention_s;
DROP INDEX messages_search;
DROP TRIGGER messages_search ON messages;
DROP FUNCTION messages_search();
ALTER TABLE messages DROP COLUMN search;
DROP TABLE search_config;
