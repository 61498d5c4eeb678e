-- Offline notifications (webhook and e-mail): the same shape as
-- migrations/postgres/0003_notifications.sql (which explains each table),
-- in this schema's encodings.

CREATE TABLE notification_outbox (
    message_id      TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL,
    sender_id       TEXT NOT NULL,
    lease_until     INTEGER
) STRICT;

CREATE TABLE notifications (
    id                TEXT PRIMARY KEY NOT NULL,
    channel           TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
    recipient_id      TEXT NOT NULL,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    latest_message_id TEXT NOT NULL,
    message_count     INTEGER NOT NULL CHECK (message_count > 0),
    state             TEXT NOT NULL
        CHECK (state IN ('pending', 'sending', 'sent', 'cancelled', 'dead')),
    due_at            INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_until       INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX notifications_gathering_idx
    ON notifications (recipient_id, conversation_id, channel) WHERE state = 'pending';

CREATE INDEX notifications_due_idx
    ON notifications (due_at) WHERE state IN ('pending', 'sending');

CREATE TABLE user_contacts (
    user_id       TEXT PRIMARY KEY NOT NULL,
    email         TEXT,
    name          TEXT,
    email_enabled INTEGER NOT NULL DEFAULT 1,
    updated_at    INTEGER NOT NULL
) STRICT;

-- What the retention job forgets, oldest first (sent, cancelled and dead
-- notifications are kept 30 days for inquiries).
CREATE INDEX notifications_settled_idx
    ON notifications (updated_at) WHERE state IN ('sent', 'cancelled', 'dead');
