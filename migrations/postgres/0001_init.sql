-- parloir durable schema (Postgres). DESIGN.md "Data" is the source of this
-- shape; src/store/postgres.rs is the only code that reads or writes it.

CREATE TABLE conversations (
    id              uuid PRIMARY KEY,
    -- "userA<U+001F>userB" for a two-person conversation (NULL for groups):
    -- the UNIQUE constraint is what keeps a pair to one conversation, even
    -- under concurrent creates (INSERT ... ON CONFLICT DO NOTHING).
    participant_key text UNIQUE,
    title           text,
    created_at      timestamptz NOT NULL,
    last_message_at timestamptz,
    archived_at     timestamptz
);

CREATE TABLE messages (
    -- UUIDv7: uuid ordering is byte ordering, i.e. creation order, which
    -- history paging relies on.
    id                uuid PRIMARY KEY,
    conversation_id   uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id         text NOT NULL,
    content           text NOT NULL,
    attachments       jsonb NOT NULL DEFAULT '[]'::jsonb,
    client_message_id text,
    created_at        timestamptz NOT NULL,
    deleted_at        timestamptz,
    -- Idempotent sends: NULLs are distinct, so messages without a
    -- client_message_id never collide.
    CONSTRAINT messages_sender_client_message_id_key UNIQUE (sender_id, client_message_id)
);

-- History pages, latest message, unread counts: all range scans on this.
CREATE INDEX messages_conversation_id_id_idx ON messages (conversation_id, id);

CREATE TABLE conversation_participants (
    conversation_id      uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              text NOT NULL,
    -- The read cursor: only ever moves forward (a conditional UPDATE).
    last_read_message_id uuid REFERENCES messages (id) ON DELETE SET NULL,
    last_read_at         timestamptz,
    PRIMARY KEY (conversation_id, user_id)
);

-- A user's conversations (list, unread counts, contacts, presence audience).
-- The conversation list is per user: it reads the user's rows through this
-- index and sorts them by activity, so no activity index on `conversations`
-- (it would cost an index write on every message for no plan that uses it).
CREATE INDEX conversation_participants_user_id_idx
    ON conversation_participants (user_id, conversation_id);
