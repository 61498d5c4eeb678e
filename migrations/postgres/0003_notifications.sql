-- Offline notifications (webhook and e-mail). src/store/postgres.rs is the
-- only code that reads or writes these tables; src/domain/notification.rs
-- describes a notification's life.

-- Committed messages not yet turned into notifications: written in the
-- message's own transaction (when a channel is configured), so a node that
-- crashes right after acknowledging a send loses no notification. A worker
-- on any node claims entries with a lease, gathers them into
-- `notifications` and deletes them.
CREATE TABLE notification_outbox (
    message_id      uuid PRIMARY KEY,
    conversation_id uuid NOT NULL,
    sender_id       text NOT NULL,
    lease_until     timestamptz
);

CREATE TABLE notifications (
    -- The webhook-id: the same on every attempt.
    id                uuid PRIMARY KEY,
    channel           text NOT NULL CHECK (channel IN ('webhook', 'email')),
    recipient_id      text NOT NULL,
    conversation_id   uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- No foreign key: retention may erase the message; delivery then cancels.
    latest_message_id uuid NOT NULL,
    message_count     integer NOT NULL CHECK (message_count > 0),
    -- pending: gathering messages until due; sending: claimed at least once
    -- (retries stay here, due at the next attempt); then sent, cancelled or
    -- dead, which are final.
    state             text NOT NULL
        CHECK (state IN ('pending', 'sending', 'sent', 'cancelled', 'dead')),
    due_at            timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    -- While an attempt runs: nobody else claims the row before this.
    lease_until       timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- One gathering notification per recipient, conversation and channel: new
-- messages fold into it until it is first claimed; later ones start anew.
CREATE UNIQUE INDEX notifications_gathering_idx
    ON notifications (recipient_id, conversation_id, channel) WHERE state = 'pending';

-- What the workers claim, and the backlog gauges.
CREATE INDEX notifications_due_idx
    ON notifications (due_at) WHERE state IN ('pending', 'sending');

-- What users' tokens said about them (the `email` and `name` claims),
-- remembered when they connect or call the API, and their choice about
-- e-mails.
CREATE TABLE user_contacts (
    user_id       text PRIMARY KEY,
    email         text,
    name          text,
    email_enabled boolean NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL
);

-- What the retention job forgets, oldest first (sent, cancelled and dead
-- notifications are kept 30 days for inquiries).
CREATE INDEX notifications_settled_idx
    ON notifications (updated_at) WHERE state IN ('sent', 'cancelled', 'dead');
