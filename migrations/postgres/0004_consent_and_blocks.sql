-- Presence by consent and blocks (issue #25). src/store/postgres/ is the
-- only code that reads or writes these columns and tables.

-- When the participant first took part in the conversation: sent a message,
-- read one, joined it, or created it. Presence flows only between users who
-- both took part in a shared conversation: being added to one by someone
-- else reveals nothing.
ALTER TABLE conversation_participants ADD COLUMN engaged_at timestamptz;

-- Participants who had already sent or read before this migration took part.
UPDATE conversation_participants p SET engaged_at = c.created_at
FROM conversations c
WHERE c.id = p.conversation_id
  AND (p.last_read_message_id IS NOT NULL
       OR EXISTS (SELECT 1 FROM messages m
                  WHERE m.conversation_id = p.conversation_id AND m.sender_id = p.user_id));

-- Who blocked whom. Read per user in both directions (a user's blocks, and
-- whoever blocked them), so both columns lead an index.
CREATE TABLE blocks (
    blocker_id text NOT NULL,
    blocked_id text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked_id_idx ON blocks (blocked_id, blocker_id);
