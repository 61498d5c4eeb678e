-- The conversation log (issue #23): every change a participant must see is
-- numbered per conversation (`seq`: 1, 2, 3, … without holes), in the
-- transaction that makes the change. src/store/postgres/ is the only code
-- that reads or writes it.
--
-- A message is its own log entry (messages.seq): a send writes no second
-- row. Every other change is a row of conversation_events. A number whose
-- change did not happen after all (a send that lost a race for its
-- clientMessageId after its number was taken) is a `skipped` event, so the
-- numbers stay without holes.

-- The latest number given out, and the lowest number still held (retention
-- deleted everything at or below it).
ALTER TABLE conversations ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN log_floor bigint NOT NULL DEFAULT 0;

ALTER TABLE messages ADD COLUMN seq bigint;

CREATE TABLE conversation_events (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint NOT NULL,
    -- created, read, deleted, skipped (and what later issues add)
    kind            text NOT NULL,
    actor_id        text,
    -- No foreign key: retention may delete the message and keep the event.
    message_id      uuid,
    at              timestamptz NOT NULL,
    data            jsonb,
    PRIMARY KEY (conversation_id, seq)
);

-- Existing conversations: created is 1, their messages follow in id order.
INSERT INTO conversation_events (conversation_id, seq, kind, at)
SELECT id, 1, 'created', created_at FROM conversations;
UPDATE messages m SET seq = numbered.seq
FROM (SELECT id, 1 + row_number() OVER (PARTITION BY conversation_id ORDER BY id) AS seq
      FROM messages) numbered
WHERE m.id = numbered.id;
UPDATE conversations c SET last_seq = 1 + (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id);

ALTER TABLE messages ALTER COLUMN seq SET NOT NULL;
-- Replays read a conversation's messages by number.
CREATE UNIQUE INDEX messages_conversation_id_seq_idx ON messages (conversation_id, seq);
