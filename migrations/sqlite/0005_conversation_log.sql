-- The conversation log (issue #23); same shape as
-- migrations/postgres/0005_conversation_log.sql.

ALTER TABLE conversations ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN log_floor INTEGER NOT NULL DEFAULT 0;

-- Always set by the store (SQLite cannot add a NOT NULL column without a default).
ALTER TABLE messages ADD COLUMN seq INTEGER;

CREATE TABLE conversation_events (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    actor_id        TEXT,
    message_id      TEXT,
    at              INTEGER NOT NULL,
    data            TEXT CHECK (data IS NULL OR json_valid(data)),
    PRIMARY KEY (conversation_id, seq)
) STRICT, WITHOUT ROWID;

INSERT INTO conversation_events (conversation_id, seq, kind, at)
SELECT id, 1, 'created', created_at FROM conversations;
UPDATE messages SET seq = 1 + (
    SELECT count(*) FROM messages earlier
    WHERE earlier.conversation_id = messages.conversation_id AND earlier.id <= messages.id);
UPDATE conversations SET last_seq = 1 + (
    SELECT count(*) FROM messages m WHERE m.conversation_id = conversations.id);

CREATE UNIQUE INDEX messages_conversation_id_seq_idx ON messages (conversation_id, seq);
