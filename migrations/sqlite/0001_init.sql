-- parloir durable schema (SQLite, embedded single node). Same shape as
-- migrations/postgres; src/store/sqlite.rs is the only code that reads or
-- writes it.
--
-- Encodings: ids are lowercase hyphenated UUID text, whose lexicographic
-- (BINARY) order equals UUID byte order, i.e. creation order for UUIDv7
-- message ids, which history paging relies on. Times are INTEGER unix
-- milliseconds (the wire precision). Attachments are a JSON array as TEXT.

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36 AND id = lower(id)),
    -- "userA<U+001F>userB" for a two-person conversation (NULL for groups);
    -- UNIQUE keeps a pair to one conversation under concurrent creates.
    participant_key TEXT UNIQUE,
    title           TEXT,
    created_at      INTEGER NOT NULL,
    last_message_at INTEGER,
    archived_at     INTEGER
) STRICT;

CREATE TABLE messages (
    id                TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36 AND id = lower(id)),
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id         TEXT NOT NULL,
    content           TEXT NOT NULL,
    attachments       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(attachments)),
    client_message_id TEXT,
    created_at        INTEGER NOT NULL,
    deleted_at        INTEGER,
    -- Idempotent sends; NULL client_message_ids never collide.
    UNIQUE (sender_id, client_message_id)
) STRICT;

CREATE INDEX messages_conversation_id_id_idx ON messages (conversation_id, id);

CREATE TABLE conversation_participants (
    conversation_id      TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              TEXT NOT NULL,
    last_read_message_id TEXT REFERENCES messages (id) ON DELETE SET NULL,
    last_read_at         INTEGER,
    PRIMARY KEY (conversation_id, user_id)
) STRICT, WITHOUT ROWID;

-- A user's conversations; the list is sorted per user (see the Postgres
-- migration for why there is no activity index).
CREATE INDEX conversation_participants_user_id_idx
    ON conversation_participants (user_id, conversation_id);
