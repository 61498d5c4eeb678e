-- Presence by consent and blocks (issue #25); same shape as
-- migrations/postgres/0004_consent_and_blocks.sql.

-- When the participant first took part (sent, read, joined or created).
ALTER TABLE conversation_participants ADD COLUMN engaged_at INTEGER;

UPDATE conversation_participants SET engaged_at = (
    SELECT c.created_at FROM conversations c WHERE c.id = conversation_participants.conversation_id)
WHERE last_read_message_id IS NOT NULL
   OR EXISTS (SELECT 1 FROM messages m
              WHERE m.conversation_id = conversation_participants.conversation_id
                AND m.sender_id = conversation_participants.user_id);

CREATE TABLE blocks (
    blocker_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX blocks_blocked_id_idx ON blocks (blocked_id, blocker_id);
