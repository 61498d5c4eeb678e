//! The store's seams: one trait per thing that changes together, each
//! declared with `seam!` (which also writes its observed implementation),
//! and `Backend`, the union a database implements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::*;
use crate::observed::seam;

seam! {
    /// Whether the database answers: readiness checks.
    pub trait Health {
        /// Cheap round trip.
        async fn ping(&self) -> Result<(), StoreError> = "ping";
    }
}

seam! {
    /// Conversations as wholes: creating them and listing a user's.
    pub trait Conversations {
        /// Creates a conversation. For exactly two participants the pair is unique
        /// (even under concurrent calls): the existing conversation is returned
        /// with `Created::Existing`. `id` and `now` are used only when new.
        async fn create_conversation(
            &self,
            id: ConversationId,
            new: &NewConversation,
            now: DateTime<Utc>,
        ) -> Result<(Conversation, Created), StoreError> = "create_conversation";

        /// The conversation with its participants, or `None` if it does not exist.
        async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>
            = "conversation";

        /// The user's conversations that are not archived, most recent activity
        /// (`last_message_at`, else `created_at`) first, then by id descending;
        /// at most `limit`, strictly after `cursor`. Each carries the user's
        /// unread count and the newest non-deleted message.
        async fn list_conversations(
            &self,
            user: &UserId,
            limit: u32,
            cursor: Option<ListCursor>,
        ) -> Result<Vec<ConversationSummary>, StoreError> = "list_conversations";

        /// The user's archived conversations, in the order and with the paging
        /// of `list_conversations` (which leaves them out).
        async fn list_archived_conversations(
            &self,
            user: &UserId,
            limit: u32,
            cursor: Option<ListCursor>,
        ) -> Result<Vec<ConversationSummary>, StoreError> = "list_archived_conversations";

        /// Every user whose presence `user` may see, and who may see
        /// `user`'s: both took part (`mark_engaged`) in a conversation they
        /// share, and neither blocks the other. Not `user` itself.
        async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> = "contacts";

        /// `contacts` for many users at once (a batch of handshakes): each
        /// user with at least one contact, and those contacts, sorted.
        async fn contacts_of(
            &self,
            users: &[UserId],
        ) -> Result<HashMap<UserId, Vec<UserId>>, StoreError> = "contacts_of";

        /// Records that `user` took part in `conversation` (sent, read,
        /// joined or created it), if not yet; sends and reads record it in
        /// their own statements. True when it was not recorded before;
        /// nothing happens for a non-participant.
        async fn mark_engaged(
            &self,
            conversation: ConversationId,
            user: &UserId,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> = "mark_engaged";
    }
}

seam! {
    /// The conversation log (PROTOCOL.md §8), as a replay reads it. Entries
    /// are written by the changes themselves, in their own transactions
    /// (`insert_messages`, `soft_delete_message`, `advance_read_cursor`,
    /// `create_conversation`).
    pub trait ConversationLog {
        /// Up to `limit` entries after number `after`, oldest first; `None`
        /// when the conversation does not exist.
        async fn log_after(
            &self,
            conversation: ConversationId,
            after: u64,
            limit: u32,
        ) -> Result<Option<LogPage>, StoreError> = "log_after";

        /// The latest number of each conversation that exists.
        async fn latest_seqs(
            &self,
            conversations: &[ConversationId],
        ) -> Result<HashMap<ConversationId, u64>, StoreError> = "latest_seqs";

        /// The conversations of `user` created at or after `since`, oldest
        /// first, at most `limit`.
        async fn conversations_since(
            &self,
            user: &UserId,
            since: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<Conversation>, StoreError> = "conversations_since";
    }
}

seam! {
    /// Who blocks whom (PROTOCOL.md §10).
    pub trait Blocks {
        /// `blocker` blocks `blocked`; false when it already did.
        async fn block_user(
            &self,
            blocker: &UserId,
            blocked: &UserId,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> = "block_user";

        /// Lifts a block; false when there was none.
        async fn unblock_user(&self, blocker: &UserId, blocked: &UserId) -> Result<bool, StoreError>
            = "unblock_user";

        /// The users `blocker` blocks, with when, most recent first.
        async fn blocked_by(
            &self,
            blocker: &UserId,
        ) -> Result<Vec<(UserId, DateTime<Utc>)>, StoreError> = "blocked_by";

        /// Whom `user` blocks and who blocks `user`.
        async fn block_relations(&self, user: &UserId) -> Result<BlockRelations, StoreError>
            = "block_relations";

        /// `block_relations` for many users at once: each user in a block,
        /// and theirs (users in none are left out).
        async fn block_relations_of(
            &self,
            users: &[UserId],
        ) -> Result<HashMap<UserId, BlockRelations>, StoreError> = "block_relations_of";
    }
}

seam! {
    /// Who takes part in a conversation: asked by every send, read, typing
    /// event and join, and never changed once the conversation exists.
    pub trait Participants {
        /// Whether `user` is a participant of `conversation` (false if it does not exist).
        async fn is_participant(
            &self,
            conversation: ConversationId,
            user: &UserId,
        ) -> Result<bool, StoreError> = "is_participant";

        /// The participants of a conversation, sorted (empty if it does not exist).
        async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError>
            = "participants";
    }
}

seam! {
    /// Storing new messages: the write path of a send.
    pub trait MessageInserts {
        /// Stores a message and bumps the conversation's `last_message_at` (and
        /// un-archives it), in one transaction. Idempotent on `(sender, client_message_id)`: a repeat
        /// (also a concurrent one) returns the stored message and
        /// `Inserted::Duplicate`; a repeat naming another conversation is
        /// `StoreError::ClientMessageIdReused`. `id` and `now` are used only when new.
        async fn insert_message(
            &self,
            id: MessageId,
            sender: &UserId,
            message: &NewMessage,
            now: DateTime<Utc>,
        ) -> Result<(Message, Inserted), StoreError> = "insert_message";

        /// Stores several messages with one commit (group commit): one outcome
        /// per input, in input order, each exactly what `insert_message` would
        /// answer for it had the messages been inserted one after the other in
        /// that order (a repeat of a `clientMessageId` earlier in the batch is a
        /// `Duplicate` of it). `Err` means nothing was stored; the caller may
        /// retry the messages one by one.
        async fn insert_messages(
            &self,
            batch: &[MessageInsert],
        ) -> Result<Vec<InsertOutcome>, StoreError> = "insert_messages";
    }
}

seam! {
    /// Stored messages: reading them and deleting one.
    pub trait Messages {
        /// A page of non-deleted messages of a conversation (see [`PageRequest`]).
        async fn history(
            &self,
            conversation: ConversationId,
            page: &PageRequest,
        ) -> Result<Page, StoreError> = "history";

        /// A non-deleted message by id.
        async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> = "message";

        /// Soft-deletes a message and logs the deletion: its number in the
        /// conversation's log, or `None` if the message did not exist or was
        /// already deleted (nothing changes).
        async fn soft_delete_message(
            &self,
            id: MessageId,
            now: DateTime<Utc>,
        ) -> Result<Option<u64>, StoreError> = "soft_delete_message";

        /// The newest non-deleted message of a conversation.
        async fn latest_message_id(
            &self,
            conversation: ConversationId,
        ) -> Result<Option<MessageId>, StoreError> = "latest_message_id";
    }
}

seam! {
    /// Read cursors and the unread counts they define.
    pub trait ReadCursors {
        /// Moves `user`'s read cursor in `conversation` to `to`, never backwards,
        /// atomically (two devices marking concurrently end at the newer one),
        /// and logs the move (its number in `CursorMove::seq`).
        /// The caller guarantees `user` is a participant and `to` belongs to the
        /// conversation.
        async fn advance_read_cursor(
            &self,
            conversation: ConversationId,
            user: &UserId,
            to: MessageId,
            now: DateTime<Utc>,
        ) -> Result<CursorMove, StoreError> = "advance_read_cursor";

        /// The user's current read cursor in a conversation.
        async fn read_cursor(
            &self,
            conversation: ConversationId,
            user: &UserId,
        ) -> Result<ReadCursor, StoreError> = "read_cursor";

        /// Unread counts recomputed from the source of truth: per conversation of
        /// the user, non-deleted messages newer than the cursor and not sent by
        /// the user. Conversations with zero unread are omitted.
        async fn unread_counts(
            &self,
            user: &UserId,
        ) -> Result<HashMap<ConversationId, u64>, StoreError> = "unread_counts";

        /// `unread_counts` for many users at once (a batch of handshakes):
        /// each user with something unread, and their non-zero counts.
        async fn unread_counts_of(
            &self,
            users: &[UserId],
        ) -> Result<HashMap<UserId, HashMap<ConversationId, u64>>, StoreError> = "unread_counts_of";

        /// Every participant's unread count in one conversation, counted as
        /// `unread_counts` counts (zeros included): what a delete changes, in
        /// one query however many participants there are.
        async fn unread_in_conversation(
            &self,
            conversation: ConversationId,
        ) -> Result<Vec<(UserId, u64)>, StoreError> = "unread_in_conversation";
    }
}

seam! {
    /// Offline notifications (see `domain::notification` for their life)
    /// and what they need to know about users. Claims lease rows to the
    /// caller until `lease_until`, so every node may run a worker: on
    /// Postgres each row goes to one claimer (`FOR UPDATE SKIP LOCKED`),
    /// and a claimer that dies leaves it to the next once the lease ends.
    pub trait Notifications {
        /// Remembers the `email` and `name` claims of a user's token (the
        /// e-mail address notifications go to, the name they show).
        async fn remember_contact(
            &self,
            user: &UserId,
            email: Option<&str>,
            name: Option<&str>,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> = "remember_contact";

        /// `remember_contact` for many users at once (a batch of handshakes),
        /// in one statement; a user named twice keeps the last claims.
        async fn remember_contacts(
            &self,
            contacts: &[ContactClaims],
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> = "remember_contacts";

        /// Turns a user's e-mail notifications on or off.
        async fn set_email_notifications(
            &self,
            user: &UserId,
            enabled: bool,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> = "set_email_notifications";

        /// What is known of a user (`None`: never seen).
        async fn contact(&self, user: &UserId) -> Result<Option<Contact>, StoreError> = "contact";

        /// Up to `limit` outbox entries not leased to anyone, leased to the
        /// caller until `lease_until`, oldest first.
        async fn claim_outbox(
            &self,
            now: DateTime<Utc>,
            lease_until: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<OutboxEntry>, StoreError> = "claim_outbox";

        /// In one transaction: folds each gathered notification into the
        /// pending one of its recipient, conversation and channel (count
        /// added, latest message moved forward; nothing when it is not
        /// newer, so gathering twice adds nothing) or starts one, and
        /// deletes the `done` outbox entries.
        async fn gather_notifications(
            &self,
            gathered: &[Gathered],
            done: &[MessageId],
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> = "gather_notifications";

        /// Up to `limit` notifications due at `now` and not leased, soonest
        /// first, each moved to `sending` (no longer gathering), its attempt
        /// counted and leased to the caller until `lease_until`.
        async fn claim_due_notifications(
            &self,
            now: DateTime<Utc>,
            lease_until: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<DueNotification>, StoreError> = "claim_due_notifications";

        /// Records how attempt `attempt` ended. False when that attempt no
        /// longer holds the notification (its lease ran out and another
        /// claimer took it): nothing changes.
        async fn settle_notification(
            &self,
            id: NotificationId,
            attempt: u32,
            settlement: &Settlement,
            now: DateTime<Utc>,
        ) -> Result<bool, StoreError> = "settle_notification";

        /// Notifications not yet settled for good, and the earliest due.
        async fn notification_backlog(&self) -> Result<Backlog, StoreError>
            = "notification_backlog";
    }
}

seam! {
    /// The retention job's statements (issue #14). Each changes at most
    /// `limit` rows in one short statement, and re-checks its condition on
    /// the rows it changes, so that two runs at once (or a run racing a
    /// send) never change a row twice or change one that no longer
    /// qualifies: the counts they return add up to the rows changed.
    pub trait Retention {
        /// Takes the database-wide retention lock if no one holds it: `None`
        /// when another node (or process) runs retention now. Postgres: a
        /// session advisory lock (`pg_try_advisory_lock`) on a connection of
        /// its own; SQLite: always granted (one node owns the file).
        async fn try_lock_retention(&self) -> Result<Option<RetentionLease>, StoreError>
            = "try_lock_retention";

        /// Archives (`archived_at = cutoffs.now`) up to `limit` conversations
        /// that are not archived and whose last activity is before
        /// `cutoffs.archive_idle_before`, visiting conversations in id order
        /// after `after`. `next` says where the following batch starts; `None`
        /// once every conversation was visited.
        async fn archive_idle_conversations(
            &self,
            cutoffs: &RetentionCutoffs,
            after: Option<ConversationId>,
            limit: u32,
        ) -> Result<ArchiveBatch, StoreError> = "archive_idle_conversations";

        /// Erases the content and attachments (`''`, `[]`) of up to `limit`
        /// messages soft-deleted before `cutoffs.purge_deleted_before` and not
        /// yet erased; the rows stay (ids and paging are unchanged). Returns
        /// how many were erased: fewer than `limit` means none is left.
        async fn purge_deleted_messages(
            &self,
            cutoffs: &RetentionCutoffs,
            limit: u32,
        ) -> Result<u64, StoreError> = "purge_deleted_messages";

        /// Deletes up to `limit` offline notifications settled for good
        /// (sent, cancelled, dead) before `cutoffs.forget_notifications_before`.
        /// Returns how many: fewer than `limit` means none is left.
        async fn forget_settled_notifications(
            &self,
            cutoffs: &RetentionCutoffs,
            limit: u32,
        ) -> Result<u64, StoreError> = "forget_settled_notifications";

        /// Deletes up to `limit` messages sent before
        /// `cutoffs.delete_sent_before` (none when it is `None`), oldest first.
        /// A message's age is its id's (UUIDv7) timestamp, so what goes is
        /// always the oldest part of each conversation, and a read cursor on a
        /// deleted message (set to NULL by the schema) still counts exactly
        /// the messages after it as unread. Returns how many were deleted:
        /// fewer than `limit` means none is left.
        async fn delete_old_messages(
            &self,
            cutoffs: &RetentionCutoffs,
            limit: u32,
        ) -> Result<u64, StoreError> = "delete_old_messages";

        /// What a run with `cutoffs` would change now, counted with the same
        /// conditions as the three statements above (a dry run).
        async fn count_retention(
            &self,
            cutoffs: &RetentionCutoffs,
        ) -> Result<RetentionCounts, StoreError> = "count_retention";
    }
}

/// A database that implements every seam (Postgres, SQLite).
///
/// Every method is cancel-safe in the sense that a dropped future leaves the
/// database consistent (each write is one statement or one transaction).
pub trait Backend:
    Health
    + Blocks
    + ConversationLog
    + Conversations
    + Participants
    + MessageInserts
    + Messages
    + ReadCursors
    + Notifications
    + Retention
{
}

impl<T> Backend for T where
    T: Health
        + Blocks
        + ConversationLog
        + Conversations
        + Participants
        + MessageInserts
        + Messages
        + ReadCursors
        + Notifications
        + Retention
{
}
