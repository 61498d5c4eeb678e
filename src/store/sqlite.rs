//! The SQLite [`Backend`](super::Backend): the embedded single-node mode (a
//! file under `./data/`). Owns every SQL statement against
//! `migrations/sqlite`; the rows they return are assembled into domain types
//! in `rows.rs`, with the encodings below.
//!
//! Encodings: ids are lowercase hyphenated UUID text (text order == UUID byte
//! order == UUIDv7 time order, which history paging relies on), times are
//! unix milliseconds, attachments are JSON text.
//!
//! Concurrency: SQLite has one writer at a time. Every multi-statement write
//! opens with `BEGIN IMMEDIATE`, which takes the write lock up front and waits
//! for it (busy timeout) instead of failing with `SQLITE_BUSY` when a read
//! transaction tries to upgrade; single-statement writes take the lock as
//! they start and wait the same way. Integrity rules come from the schema
//! (UNIQUE + `ON CONFLICT DO NOTHING`, a conditional `UPDATE`), exactly as in
//! the Postgres store, so both pass the same contract suite.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use uuid::Uuid;

use super::rows::{self, Column as _, corrupt, count, user_id};
use super::{
    ArchiveBatch, Conversations, Created, CursorMove, Health, InsertOutcome, Inserted,
    MessageInsert, MessageInserts, Messages, Participants, ReadCursors, Retention, RetentionLease,
    StoreError, duplicate_of, insert_alone,
};
use crate::domain::{
    ClientMessageId, Conversation, ConversationId, ConversationSummary, ListCursor, Message,
    MessageId, NewConversation, NewMessage, Page, PageRequest, ReadCursor, RetentionCounts,
    RetentionCutoffs, UserId,
};

mod notifications;

/// The columns of a [`MessageRow`], in one place for every `SELECT`/`RETURNING`.
macro_rules! message_columns {
    () => {
        "id, conversation_id, sender_id, content, attachments, client_message_id, created_at"
    };
}

/// How long a connection waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers run concurrently under WAL; writers queue on the write lock.
const MAX_CONNECTIONS: u32 = 8;
/// How long a caller waits for a free connection before `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Starts a write transaction holding the write lock (see the module docs).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Durable storage in one SQLite file. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Every stored message also goes into `notification_outbox`.
    outbox: bool,
}

impl SqliteStore {
    /// Opens (creating if missing, parent directory included) the database
    /// at `path` in WAL mode with `synchronous = NORMAL` (a power loss may
    /// drop the last commits, an application crash loses nothing), foreign
    /// keys on and a 5 s busy timeout.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        const OP: &str = "open";
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StoreError::from_sqlx(OP, sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::from_sqlx(OP, e))?;
        Ok(Self::from_pool(pool))
    }

    /// A store over an existing pool (tests, or a pool shared with other
    /// code); the caller has configured it and runs `migrate` if needed.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            outbox: false,
        }
    }

    /// Also writes every stored message into the notification outbox, in
    /// the message's transaction (when a notification channel is configured).
    pub fn with_notification_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }

    /// Applies `migrations/sqlite`. One node owns the file, so there is no
    /// cross-process race to guard against beyond SQLite's own locking.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("migrate", e.into()))
    }

    /// The underlying pool, for health checks and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Loads the participants of several conversations in one query.
    async fn participants_of(
        &self,
        op: &'static str,
        ids: &[String],
    ) -> Result<HashMap<String, Vec<UserId>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids_json = serde_json::Value::from(ids.to_vec()).to_string();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT conversation_id, user_id FROM conversation_participants \
             WHERE conversation_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids_json)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(op, e))?;
        let mut by_conversation: HashMap<String, Vec<UserId>> = HashMap::new();
        for (conversation, user) in rows {
            by_conversation
                .entry(conversation)
                .or_default()
                .push(user_id(op, &user)?);
        }
        for users in by_conversation.values_mut() {
            users.sort();
        }
        Ok(by_conversation)
    }

    /// The user's conversations, archived or not (see `list_conversations`).
    async fn list(
        &self,
        op: &'static str,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
        archived: bool,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT c.id, c.title, c.created_at, c.last_message_at, \
                (SELECT count(*) FROM messages m \
                  WHERE m.conversation_id = c.id AND m.deleted_at IS NULL \
                    AND m.sender_id <> p.user_id \
                    AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
                ) AS unread_count, \
                lm.id AS lm_id, lm.sender_id AS lm_sender_id, lm.content AS lm_content, \
                lm.attachments AS lm_attachments, lm.client_message_id AS lm_client_message_id, \
                lm.created_at AS lm_created_at \
             FROM conversation_participants p \
             JOIN conversations c ON c.id = p.conversation_id \
             LEFT JOIN messages lm ON lm.id = ( \
                SELECT m.id FROM messages m \
                WHERE m.conversation_id = c.id AND m.deleted_at IS NULL \
                ORDER BY m.id DESC LIMIT 1) \
             WHERE p.user_id = ?1 AND (c.archived_at IS NOT NULL) = ?5 \
               AND (?2 IS NULL \
                    OR (COALESCE(c.last_message_at, c.created_at), c.id) < (?2, ?3)) \
             ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC \
             LIMIT ?4",
        )
        .bind(user.as_str())
        .bind(cursor.map(|c| c.activity_at.timestamp_millis()))
        .bind(cursor.map(|c| text(c.id.as_uuid())))
        .bind(i64::from(limit))
        .bind(archived)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(op, e))?;

        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut participants = self.participants_of(op, &ids).await?;
        rows.into_iter()
            .map(|row| {
                let users = participants.remove(&row.id).unwrap_or_default();
                row.into_summary(users)
            })
            .collect()
    }
}

type MessageRow = rows::MessageRow<String, i64, String>;
type ConversationRow = rows::ConversationRow<String, i64>;
type SummaryRow = rows::SummaryRow<String, i64, String>;
type CursorRow = rows::CursorRow<String, i64>;

/// The stored form of an id: lowercase hyphenated (what `Display` writes).
fn text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| StoreError::from_sqlx("ping", e))
    }
}

#[async_trait]
impl Conversations for SqliteStore {
    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError> {
        const OP: &str = "create_conversation";
        let err = |e| StoreError::from_sqlx(OP, e);
        let key = new.participant_key();
        let id_text = text(id.as_uuid());
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO conversations (id, participant_key, title, created_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (participant_key) DO NOTHING RETURNING id",
        )
        .bind(&id_text)
        .bind(&key)
        .bind(&new.title)
        .bind(now.timestamp_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;

        if inserted.is_some() {
            let users: Vec<&str> = new.participant_ids.iter().map(UserId::as_str).collect();
            sqlx::query(
                "INSERT INTO conversation_participants (conversation_id, user_id) \
                 SELECT ?1, value FROM json_each(?2)",
            )
            .bind(&id_text)
            .bind(Json(&users))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let mut participant_ids = new.participant_ids.clone();
            participant_ids.sort();
            let conversation = Conversation {
                id,
                participant_ids,
                title: new.title.clone(),
                created_at: now.timestamp_millis().decode(OP)?,
                last_message_at: None,
            };
            return Ok((conversation, Created::New));
        }

        // Only a two-person key can conflict (NULL keys never do). Writers
        // are serialized, so the pair's conversation is fully committed.
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE participant_key = ?1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let existing = existing.ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        let conversation = self
            .conversation(ConversationId::from_uuid(existing.decode(OP)?))
            .await?
            .ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        Ok((conversation, Created::Existing))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        const OP: &str = "conversation";
        let row: Option<ConversationRow> = sqlx::query_as(
            "SELECT id, title, created_at, last_message_at FROM conversations WHERE id = ?1",
        )
        .bind(text(id.as_uuid()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let Some(row) = row else { return Ok(None) };
        // Participants never change after creation, so a second statement
        // outside a transaction reads a consistent set.
        let participants = self.participants(id).await?;
        row.into_conversation(participants).map(Some)
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.list("list_conversations", user, limit, cursor, false)
            .await
    }

    async fn list_archived_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.list("list_archived_conversations", user, limit, cursor, true)
            .await
    }

    async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        const OP: &str = "contacts";
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT other.user_id \
             FROM conversation_participants me \
             JOIN conversation_participants other ON other.conversation_id = me.conversation_id \
             WHERE me.user_id = ?1 AND other.user_id <> ?1",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let mut users = rows
            .iter()
            .map(|u| user_id(OP, u))
            .collect::<Result<Vec<_>, _>>()?;
        users.sort();
        Ok(users)
    }
}

#[async_trait]
impl Participants for SqliteStore {
    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversation_participants \
             WHERE conversation_id = ?1 AND user_id = ?2)",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("is_participant", e))
    }

    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError> {
        const OP: &str = "participants";
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM conversation_participants WHERE conversation_id = ?1",
        )
        .bind(text(conversation.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        let mut users = rows
            .iter()
            .map(|u| user_id(OP, u))
            .collect::<Result<Vec<_>, _>>()?;
        users.sort();
        Ok(users)
    }
}

#[async_trait]
impl MessageInserts for SqliteStore {
    async fn insert_message(
        &self,
        id: MessageId,
        sender: &UserId,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Inserted), StoreError> {
        insert_alone(self, MessageInsert::new(id, sender, message, now)).await
    }

    async fn insert_messages(
        &self,
        batch: &[MessageInsert],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        const OP: &str = "insert_messages";
        let err = |e| StoreError::from_sqlx(OP, e);
        // One write transaction, so one WAL commit for the whole batch.
        // Writers are serialized, so a conflicting row is committed (or
        // earlier in this transaction) and visible to the lookup.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(err)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            let now = m.now.timestamp_millis();
            let conversation_id = text(m.message.conversation_id.as_uuid());
            let client_message_id = m
                .message
                .client_message_id
                .as_ref()
                .map(ClientMessageId::as_str);
            let row: Option<MessageRow> = sqlx::query_as(concat!(
                "INSERT INTO messages \
                    (id, conversation_id, sender_id, content, attachments, client_message_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (sender_id, client_message_id) DO NOTHING \
                 RETURNING ",
                message_columns!()
            ))
            .bind(text(m.id.as_uuid()))
            .bind(&conversation_id)
            .bind(m.sender.as_str())
            .bind(m.message.content.as_str())
            .bind(Json(&m.message.attachments))
            .bind(client_message_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;

            if let Some(row) = row {
                // Monotonic even if the clock steps back (SQLite's two-argument
                // MAX is NULL when either side is, hence the COALESCE); a new
                // message un-archives its conversation (retention, issue #14).
                sqlx::query(
                    "UPDATE conversations \
                     SET last_message_at = MAX(COALESCE(last_message_at, ?2), ?2), \
                         archived_at = NULL WHERE id = ?1",
                )
                .bind(&conversation_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                if self.outbox {
                    sqlx::query(
                        "INSERT INTO notification_outbox (message_id, conversation_id, sender_id) \
                         VALUES (?1, ?2, ?3)",
                    )
                    .bind(&row.id)
                    .bind(&conversation_id)
                    .bind(m.sender.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
                outcomes.push(row.try_into().map(|message| (message, Inserted::New)));
                continue;
            }

            // Only a non-NULL client_message_id can conflict.
            let existing: Option<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE sender_id = ?1 AND client_message_id = ?2"
            ))
            .bind(m.sender.as_str())
            .bind(client_message_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            outcomes.push(
                existing
                    .ok_or_else(|| corrupt(OP, "conflicting message not found"))
                    .and_then(Message::try_from)
                    .and_then(|existing| duplicate_of(&existing, m)),
            );
        }
        tx.commit().await.map_err(err)?;
        Ok(outcomes)
    }
}

#[async_trait]
impl Messages for SqliteStore {
    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        // Absent bounds become the extreme UUIDs, so both bounds are always
        // plain range conditions on the (conversation_id, id) index. No
        // UUIDv7 equals nil or max.
        let before = text(page.before.map_or(Uuid::max(), |m| m.as_uuid()));
        let after = text(page.after.map_or(Uuid::nil(), |m| m.as_uuid()));
        let sql = if page.reads_backwards() {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL \
                 AND id < ?2 AND id > ?3 ORDER BY id DESC LIMIT ?4"
            )
        } else {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL \
                 AND id < ?2 AND id > ?3 ORDER BY id ASC LIMIT ?4"
            )
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(text(conversation.as_uuid()))
            .bind(before)
            .bind(after)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("history", e))?;
        let messages = rows
            .into_iter()
            .map(Message::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page::from_rows(page, messages))
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = ?1 AND deleted_at IS NULL"
        ))
        .bind(text(id.as_uuid()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("message", e))?;
        row.map(Message::try_from).transpose()
    }

    async fn soft_delete_message(
        &self,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE messages SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL")
                .bind(text(id.as_uuid()))
                .bind(now.timestamp_millis())
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::from_sqlx("soft_delete_message", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        const OP: &str = "latest_message_id";
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE conversation_id = ?1 AND deleted_at IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(text(conversation.as_uuid()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        id.map(|id| id.decode(OP).map(MessageId::from_uuid))
            .transpose()
    }
}

#[async_trait]
impl ReadCursors for SqliteStore {
    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError> {
        // One statement, so it runs under the write lock from its start: a
        // concurrent advance is either fully before or fully after it.
        let moved: Option<CursorRow> = sqlx::query_as(
            "UPDATE conversation_participants \
             SET last_read_message_id = ?3, last_read_at = ?4 \
             WHERE conversation_id = ?1 AND user_id = ?2 \
               AND (last_read_message_id IS NULL OR last_read_message_id < ?3) \
             RETURNING last_read_message_id, last_read_at",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .bind(text(to.as_uuid()))
        .bind(now.timestamp_millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("advance_read_cursor", e))?;
        match moved {
            Some(row) => Ok(CursorMove {
                cursor: row.try_into()?,
                moved: true,
            }),
            None => Ok(CursorMove {
                cursor: self.read_cursor(conversation, user).await?,
                moved: false,
            }),
        }
    }

    async fn read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<ReadCursor, StoreError> {
        let row: Option<CursorRow> = sqlx::query_as(
            "SELECT last_read_message_id, last_read_at FROM conversation_participants \
             WHERE conversation_id = ?1 AND user_id = ?2",
        )
        .bind(text(conversation.as_uuid()))
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("read_cursor", e))?;
        match row {
            Some(row) => row.try_into(),
            None => Ok(ReadCursor {
                message_id: None,
                read_at: None,
            }),
        }
    }

    async fn unread_counts(
        &self,
        user: &UserId,
    ) -> Result<HashMap<ConversationId, u64>, StoreError> {
        const OP: &str = "unread_counts";
        // The inner join drops conversations with nothing unread.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT p.conversation_id, count(*) \
             FROM conversation_participants p \
             JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.user_id = ?1 \
             GROUP BY p.conversation_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.into_iter()
            .map(|(id, n)| Ok((ConversationId::from_uuid(id.decode(OP)?), count(OP, n)?)))
            .collect()
    }

    async fn unread_in_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<(UserId, u64)>, StoreError> {
        const OP: &str = "unread_in_conversation";
        // The left join keeps participants with nothing unread (count 0).
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT p.user_id, count(m.id) \
             FROM conversation_participants p \
             LEFT JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.conversation_id = ?1 \
             GROUP BY p.user_id",
        )
        .bind(text(conversation.as_uuid()))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.iter()
            .map(|(user, n)| Ok((user_id(OP, user)?, count(OP, *n)?)))
            .collect()
    }
}

/// Conversations archival takes: not archived, no activity since `?1`.
macro_rules! idle_conversation {
    () => {
        "archived_at IS NULL AND COALESCE(last_message_at, created_at) < ?1"
    };
}

/// A message whose content and attachments were not erased yet.
macro_rules! unpurged {
    () => {
        "(content <> '' OR attachments <> '[]')"
    };
}

/// Messages the purge erases: soft-deleted before `?1`, content still there.
/// The terms of the partial index `messages_purgeable_idx`.
macro_rules! purgeable_message {
    () => {
        concat!(
            "deleted_at IS NOT NULL AND deleted_at < ?1 AND ",
            unpurged!()
        )
    };
}

/// Messages deletion takes: sent before `?1`, the first id of that instant.
macro_rules! old_message {
    () => {
        "id < ?1"
    };
}

/// The count of one retention condition (`?1` = `cutoff`).
async fn count_where<T>(pool: &SqlitePool, sql: &'static str, cutoff: T) -> Result<u64, StoreError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
{
    const OP: &str = "count_retention";
    let n: i64 = sqlx::query_scalar(sql)
        .bind(cutoff)
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
    count(OP, n)
}

/// Each statement below is one write: it holds SQLite's write lock from its
/// start, so it reads and changes its batch with no other writer between.
/// The conditions are re-checked in the outer statement anyway, exactly as
/// on Postgres, where that is what keeps concurrent runs from changing a row
/// twice.
#[async_trait]
impl Retention for SqliteStore {
    /// One node owns the file: there is no other node to exclude. (A
    /// `parloir retention` beside the node is safe: see above.)
    async fn try_lock_retention(&self) -> Result<Option<RetentionLease>, StoreError> {
        Ok(Some(RetentionLease::uncontended()))
    }

    async fn archive_idle_conversations(
        &self,
        cutoffs: &RetentionCutoffs,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<ArchiveBatch, StoreError> {
        const OP: &str = "archive_idle_conversations";
        // Visited in id order from `after`, so a run reads each row once.
        let archived: Vec<String> = sqlx::query_scalar(concat!(
            "UPDATE conversations SET archived_at = ?2 \
             WHERE id IN (SELECT id FROM conversations WHERE id > ?3 AND ",
            idle_conversation!(),
            " ORDER BY id LIMIT ?4) AND ",
            idle_conversation!(),
            " RETURNING id"
        ))
        .bind(cutoffs.archive_idle_before.timestamp_millis())
        .bind(cutoffs.now.timestamp_millis())
        .bind(text(after.map_or(Uuid::nil(), |c| c.as_uuid())))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        // Under the write lock every row of the batch is archived, so the
        // archived ids are the visited ones; a full batch may have more after it.
        let visited = archived.len();
        let next = match archived.into_iter().max() {
            Some(last) if visited >= limit as usize => {
                Some(ConversationId::from_uuid(last.decode(OP)?))
            }
            _ => None,
        };
        Ok(ArchiveBatch {
            archived: visited as u64,
            next,
        })
    }

    async fn purge_deleted_messages(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(concat!(
            "UPDATE messages SET content = '', attachments = '[]' \
             WHERE id IN (SELECT id FROM messages WHERE ",
            purgeable_message!(),
            " ORDER BY deleted_at LIMIT ?2) AND ",
            unpurged!()
        ))
        .bind(cutoffs.purge_deleted_before.timestamp_millis())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("purge_deleted_messages", e))?;
        Ok(done.rows_affected())
    }

    async fn delete_old_messages(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let Some(before) = cutoffs.delete_sent_before else {
            return Ok(0);
        };
        // As on Postgres, read cursors on a deleted message become NULL
        // (`ON DELETE SET NULL`: the store opens every connection with
        // `foreign_keys` on, as sqlx does by default), and unread counts stay
        // exact because only the oldest ids of each conversation go.
        let done = sqlx::query(concat!(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE ",
            old_message!(),
            " ORDER BY id LIMIT ?2) AND ",
            old_message!()
        ))
        .bind(text(MessageId::first_sent_at(before).as_uuid()))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("delete_old_messages", e))?;
        Ok(done.rows_affected())
    }

    async fn count_retention(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<RetentionCounts, StoreError> {
        let archived = count_where(
            &self.pool,
            concat!(
                "SELECT count(*) FROM conversations WHERE ",
                idle_conversation!()
            ),
            cutoffs.archive_idle_before.timestamp_millis(),
        )
        .await?;
        let purged = count_where(
            &self.pool,
            concat!("SELECT count(*) FROM messages WHERE ", purgeable_message!()),
            cutoffs.purge_deleted_before.timestamp_millis(),
        )
        .await?;
        let deleted = match cutoffs.delete_sent_before {
            None => 0,
            Some(before) => {
                count_where(
                    &self.pool,
                    concat!("SELECT count(*) FROM messages WHERE ", old_message!()),
                    text(MessageId::first_sent_at(before).as_uuid()),
                )
                .await?
            }
        };
        Ok(RetentionCounts {
            archived,
            purged,
            deleted,
        })
    }
}
