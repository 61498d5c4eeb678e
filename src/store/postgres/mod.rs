//! The Postgres [`Backend`](super::Backend): production and cluster
//! storage. Owns every SQL statement against `migrations/postgres`; the rows
//! they return are assembled into domain types in `rows.rs`, with
//! Postgres's column types (`uuid`, `timestamptz`, `jsonb`).
//!
//! Integrity under concurrency comes from the database, never from a
//! check-then-write in this process (other nodes write too):
//! - one conversation per pair: `participant_key UNIQUE` + `ON CONFLICT DO NOTHING`;
//! - idempotent sends: `UNIQUE (sender_id, client_message_id)` + `ON CONFLICT DO NOTHING`;
//! - monotonic read cursors: one conditional `UPDATE`, which Postgres
//!   re-checks against the newest row version when two updates race.
//!
//! Files: this one connects, migrates and holds what the statements share;
//! one file per seam holds its statements (`conversations.rs` with the
//! participants, `messages.rs`, `cursors.rs`, `notifications.rs`,
//! `retention.rs`).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::JsonValue;
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

use super::rows::{self, corrupt, count, participants_by_conversation, sorted_user_ids, user_id};
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
use crate::observed::Observable as _;

mod notifications;

/// The columns of a [`MessageRow`], in one place for every `SELECT`/`RETURNING`.
macro_rules! message_columns {
    () => {
        "id, conversation_id, sender_id, content, attachments, client_message_id, created_at, seq"
    };
}

/// Durable storage on Postgres. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Every stored message also goes into `notification_outbox`.
    outbox: bool,
}

impl PostgresStore {
    /// A store over a lazily connected pool: a malformed `url` fails here, an
    /// unreachable server fails the first query (as `Unavailable`) after
    /// `acquire_timeout`, so a node can start and report itself degraded.
    /// A lazy pool: nothing connects until the first call. Every statement
    /// of every connection is cancelled by the server after
    /// `statement_timeout` (answered `Unavailable`).
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::from_sqlx("connect", e))?
            .options([(
                "statement_timeout",
                format!("{}ms", statement_timeout.as_millis().max(1)),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    /// A store over an existing pool (tests, or a pool shared with other
    /// code); the caller has configured it and runs `migrate` if needed.
    pub fn from_pool(pool: PgPool) -> Self {
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

    /// Applies `migrations/postgres`. Safe to run from several nodes at once:
    /// sqlx's Postgres migrator holds a database-wide advisory lock
    /// (`pg_advisory_lock`) while it applies migrations, so one node migrates
    /// and the others wait, then find nothing left to do.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("migrate", e.into()))
    }

    /// The underlying pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads the participants of several conversations in one query.
    async fn participants_of(
        &self,
        op: &'static str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<UserId>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT conversation_id, user_id FROM conversation_participants \
             WHERE conversation_id = ANY($1)",
        )
        .bind(ids)
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
        let rows: Vec<SummaryRow> = sqlx::query_as(concat!(
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
             LEFT JOIN LATERAL ( \
                SELECT ",
            message_columns!(),
            " FROM messages m \
                WHERE m.conversation_id = c.id AND m.deleted_at IS NULL \
                ORDER BY m.id DESC LIMIT 1 \
             ) lm ON true \
             WHERE p.user_id = $1 AND (c.archived_at IS NOT NULL) = $5 \
               AND ($2::timestamptz IS NULL \
                    OR (COALESCE(c.last_message_at, c.created_at), c.id) < ($2, $3)) \
             ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC \
             LIMIT $4"
        ))
        .bind(user.as_str())
        .bind(cursor.map(|c| c.activity_at))
        .bind(cursor.map(|c| c.id.as_uuid()))
        .bind(i64::from(limit))
        .bind(archived)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(op, e))?;

        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut participants = self.participants_of(op, &ids).await?;
        rows.into_iter()
            .map(|row| {
                let users = participants.remove(&row.id).unwrap_or_default();
                row.into_summary(users)
            })
            .collect()
    }
}

type MessageRow = rows::MessageRow<Uuid, DateTime<Utc>, JsonValue>;
type ConversationRow = rows::ConversationRow<Uuid, DateTime<Utc>>;
type SummaryRow = rows::SummaryRow<Uuid, DateTime<Utc>, JsonValue>;
type CursorRow = rows::CursorRow<Uuid, DateTime<Utc>>;

mod conversations;
mod cursors;
mod log;
mod messages;
mod retention;

/// Times are stored at the wire's millisecond precision, so what a caller
/// gets back equals what clients are sent.
fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(3)
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| StoreError::from_sqlx("ping", e))
    }
}
