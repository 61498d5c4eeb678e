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
//!
//! Files: this one connects, migrates and holds what the statements share;
//! one file per seam holds its statements (`conversations.rs` with the
//! participants, `messages.rs`, `cursors.rs`, `notifications.rs`,
//! `retention.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use uuid::Uuid;

use super::rows::{
    self, Column as _, corrupt, count, participants_by_conversation, sorted_user_ids, user_id,
};
use super::{
    ArchiveBatch, BlockRelations, Blocks, ConversationLog, Conversations, Created, CursorMove,
    Health, InsertOutcome, Inserted, MessageInsert, MessageInserts, Messages, Participants,
    ReadCursors, Retention, RetentionLease, StoreError, duplicate_of, insert_alone,
};
use crate::domain::{
    ClientMessageId, Conversation, ConversationId, ConversationSummary, ListCursor, LogPage,
    Message, MessageId, NewConversation, NewMessage, Page, PageRequest, ReadCursor,
    RetentionCounts, RetentionCutoffs, UserId,
};

mod notifications;

/// The columns of a [`MessageRow`], in one place for every `SELECT`/`RETURNING`.
macro_rules! message_columns {
    () => {
        "id, conversation_id, sender_id, content, attachments, client_message_id, created_at, seq"
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
        participants_by_conversation(op, rows)
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
                lm.created_at AS lm_created_at, lm.seq AS lm_seq \
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

mod conversations;
mod cursors;
mod log;
mod messages;
mod retention;

/// Takes the next number of a conversation's log, inside a write transaction.
async fn log_next(
    tx: &mut sqlx::SqliteConnection,
    op: &'static str,
    conversation: &str,
) -> Result<u64, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
    )
    .bind(conversation)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| StoreError::from_sqlx(op, e))?;
    rows::seq(op, seq)
}

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
