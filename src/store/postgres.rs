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

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::JsonValue;
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

use super::rows::{self, corrupt, count, user_id};
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
use crate::observed::Observable as _;

mod notifications;

/// The columns of a [`MessageRow`], in one place for every `SELECT`/`RETURNING`.
macro_rules! message_columns {
    () => {
        "id, conversation_id, sender_id, content, attachments, client_message_id, created_at"
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
        let mut by_conversation: HashMap<Uuid, Vec<UserId>> = HashMap::new();
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
        let rows: Vec<SummaryRow> = sqlx::query_as(concat!(
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

#[async_trait]
impl Conversations for PostgresStore {
    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError> {
        const OP: &str = "create_conversation";
        let err = |e| StoreError::from_sqlx(OP, e);
        let now = millis(now);
        let key = new.participant_key();
        let mut tx = self.pool.begin().await.map_err(err)?;
        // A concurrent insert of the same key makes this statement wait for
        // that transaction; once it commits, ours does nothing.
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO conversations (id, participant_key, title, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (participant_key) DO NOTHING RETURNING id",
        )
        .bind(id.as_uuid())
        .bind(&key)
        .bind(&new.title)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;

        if inserted.is_some() {
            let users: Vec<&str> = new.participant_ids.iter().map(UserId::as_str).collect();
            sqlx::query(
                "INSERT INTO conversation_participants (conversation_id, user_id) \
                 SELECT $1, u FROM UNNEST($2::text[]) AS u",
            )
            .bind(id.as_uuid())
            .bind(&users)
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
                created_at: now,
                last_message_at: None,
            };
            return Ok((conversation, Created::New));
        }

        // Only a two-person key can conflict (NULL keys never do); the pair's
        // conversation is committed, participants included, by now.
        let existing: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE participant_key = $1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let existing = existing.ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        let conversation = self
            .conversation(ConversationId::from_uuid(existing))
            .await?
            .ok_or_else(|| corrupt(OP, "conflicting conversation not found"))?;
        Ok((conversation, Created::Existing))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        const OP: &str = "conversation";
        let row: Option<ConversationRow> = sqlx::query_as(
            "SELECT id, title, created_at, last_message_at FROM conversations WHERE id = $1",
        )
        .bind(id.as_uuid())
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
             WHERE me.user_id = $1 AND other.user_id <> $1",
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
impl Participants for PostgresStore {
    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversation_participants \
             WHERE conversation_id = $1 AND user_id = $2)",
        )
        .bind(conversation.as_uuid())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("is_participant", e))
    }

    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError> {
        const OP: &str = "participants";
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM conversation_participants WHERE conversation_id = $1",
        )
        .bind(conversation.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        // Sorted here, not in SQL: `UserId`'s order is byte order, which a
        // database collation need not be.
        let mut users = rows
            .iter()
            .map(|u| user_id(OP, u))
            .collect::<Result<Vec<_>, _>>()?;
        users.sort();
        Ok(users)
    }
}

#[async_trait]
impl MessageInserts for PostgresStore {
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(batch.len());
        let mut conversations = Vec::with_capacity(batch.len());
        let mut senders = Vec::with_capacity(batch.len());
        let mut contents = Vec::with_capacity(batch.len());
        let mut attachments = Vec::with_capacity(batch.len());
        let mut client_ids = Vec::with_capacity(batch.len());
        let mut times = Vec::with_capacity(batch.len());
        for m in batch {
            ids.push(m.id.as_uuid());
            conversations.push(m.message.conversation_id.as_uuid());
            senders.push(m.sender.as_str());
            contents.push(m.message.content.as_str());
            attachments.push(
                serde_json::to_string(&m.message.attachments)
                    .map_err(|e| corrupt(OP, format!("attachments: {e}")))?,
            );
            client_ids.push(
                m.message
                    .client_message_id
                    .as_ref()
                    .map(ClientMessageId::as_str),
            );
            times.push(millis(m.now));
        }
        // One statement, so one round trip and one commit for the whole
        // batch. Rows are inserted in input order (a repeated key later in
        // the batch is skipped like a repeat of an older message); a key
        // inserted by a concurrent, uncommitted statement makes this one
        // wait for it and then skip the row. GREATEST ignores NULL and keeps
        // `last_message_at` monotonic even if node clocks disagree a little; a
        // new message un-archives its conversation (retention, issue #14);
        // conversations are updated in id order so that two batches touching
        // the same conversations take their row locks in the same order.
        let stored: Vec<MessageRow> = sqlx::query_as(concat!(
            "WITH input AS ( \
                SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], \
                                     $5::text[], $6::text[], $7::timestamptz[]) WITH ORDINALITY \
                    AS t(id, conversation_id, sender_id, content, attachments, \
                         client_message_id, created_at, position) \
             ), inserted AS ( \
                INSERT INTO messages \
                    (id, conversation_id, sender_id, content, attachments, client_message_id, created_at) \
                SELECT id, conversation_id, sender_id, content, attachments::jsonb, \
                       client_message_id, created_at \
                FROM input ORDER BY position \
                ON CONFLICT (sender_id, client_message_id) DO NOTHING \
                RETURNING ",
            message_columns!(),
            " ), bumped AS ( \
                UPDATE conversations c SET last_message_at = GREATEST(c.last_message_at, b.at), \
                    archived_at = NULL \
                FROM (SELECT conversation_id, max(created_at) AS at FROM inserted \
                      GROUP BY conversation_id ORDER BY conversation_id) b \
                WHERE c.id = b.conversation_id \
             ), outboxed AS ( \
                INSERT INTO notification_outbox (message_id, conversation_id, sender_id) \
                SELECT id, conversation_id, sender_id FROM inserted WHERE $8 \
             ) \
             SELECT ",
            message_columns!(),
            " FROM inserted"
        ))
        .bind(&ids)
        .bind(&conversations)
        .bind(&senders)
        .bind(&contents)
        .bind(&attachments)
        .bind(&client_ids)
        .bind(&times)
        .bind(self.outbox)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let mut stored: HashMap<Uuid, MessageRow> =
            stored.into_iter().map(|row| (row.id, row)).collect();

        // What was not inserted repeats a `(sender, clientMessageId)` that is
        // now committed (ours or the statement we waited for): read it back.
        let (dup_senders, dup_client_ids): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .filter(|m| !stored.contains_key(&m.id.as_uuid()))
            .filter_map(|m| {
                let client_id = m.message.client_message_id.as_ref()?;
                Some((m.sender.as_str(), client_id.as_str()))
            })
            .unzip();
        let mut existing: HashMap<(String, String), Message> = HashMap::new();
        if !dup_senders.is_empty() {
            let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE (sender_id, client_message_id) IN \
                    (SELECT * FROM UNNEST($1::text[], $2::text[]))"
            ))
            .bind(&dup_senders)
            .bind(&dup_client_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
            for row in rows {
                let key = (
                    row.sender_id.clone(),
                    row.client_message_id.clone().unwrap_or_default(),
                );
                existing.insert(key, row.try_into()?);
            }
        }

        Ok(batch
            .iter()
            .map(|m| {
                if let Some(row) = stored.remove(&m.id.as_uuid()) {
                    return Ok((row.try_into()?, Inserted::New));
                }
                let client_id = m
                    .message
                    .client_message_id
                    .as_ref()
                    .map_or("", ClientMessageId::as_str);
                let found = existing
                    .get(&(m.sender.as_str().to_owned(), client_id.to_owned()))
                    .ok_or_else(|| corrupt(OP, "message neither stored nor found"))?;
                duplicate_of(found, m)
            })
            .collect())
    }
}

#[async_trait]
impl Messages for PostgresStore {
    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        // Absent bounds become the extreme UUIDs, so both bounds are always
        // index range conditions (no `$n IS NULL OR ...` that a generic
        // prepared plan could not use). No UUIDv7 equals nil or max.
        let before = page.before.map_or(Uuid::max(), |m| m.as_uuid());
        let after = page.after.map_or(Uuid::nil(), |m| m.as_uuid());
        let sql = if page.reads_backwards() {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL \
                 AND id < $2 AND id > $3 ORDER BY id DESC LIMIT $4"
            )
        } else {
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL \
                 AND id < $2 AND id > $3 ORDER BY id ASC LIMIT $4"
            )
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(conversation.as_uuid())
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
            " FROM messages WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.as_uuid())
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
            sqlx::query("UPDATE messages SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                .bind(id.as_uuid())
                .bind(millis(now))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::from_sqlx("soft_delete_message", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(conversation.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("latest_message_id", e))?;
        Ok(id.map(MessageId::from_uuid))
    }
}

#[async_trait]
impl ReadCursors for PostgresStore {
    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError> {
        // When two of these race on one row, the second waits for the first
        // and re-evaluates the WHERE against the committed cursor, so the
        // cursor can only ever grow.
        let moved: Option<CursorRow> = sqlx::query_as(
            "UPDATE conversation_participants \
             SET last_read_message_id = $3, last_read_at = $4 \
             WHERE conversation_id = $1 AND user_id = $2 \
               AND (last_read_message_id IS NULL OR last_read_message_id < $3) \
             RETURNING last_read_message_id, last_read_at",
        )
        .bind(conversation.as_uuid())
        .bind(user.as_str())
        .bind(to.as_uuid())
        .bind(millis(now))
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
             WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.as_uuid())
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
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT p.conversation_id, count(*) \
             FROM conversation_participants p \
             JOIN messages m ON m.conversation_id = p.conversation_id \
               AND m.deleted_at IS NULL AND m.sender_id <> p.user_id \
               AND (p.last_read_message_id IS NULL OR m.id > p.last_read_message_id) \
             WHERE p.user_id = $1 \
             GROUP BY p.conversation_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.into_iter()
            .map(|(id, n)| Ok((ConversationId::from_uuid(id), count(OP, n)?)))
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
             WHERE p.conversation_id = $1 \
             GROUP BY p.user_id",
        )
        .bind(conversation.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        rows.iter()
            .map(|(user, n)| Ok((user_id(OP, user)?, count(OP, *n)?)))
            .collect()
    }
}

/// The key of the retention job's advisory lock: a constant no other code
/// takes on this database ("parloir" and 1 in ASCII; sqlx's migrator
/// derives its own key from the database name).
const RETENTION_LOCK_KEY: i64 = 0x7061_726c_6f69_7201;

/// Conversations archival takes: not archived, no activity since `$1`.
macro_rules! idle_conversation {
    () => {
        "archived_at IS NULL AND COALESCE(last_message_at, created_at) < $1"
    };
}

/// A message whose content and attachments were not erased yet.
macro_rules! unpurged {
    () => {
        "(content <> '' OR attachments <> '[]'::jsonb)"
    };
}

/// Messages the purge erases: soft-deleted before `$1`, content still there.
/// The terms of the partial index `messages_purgeable_idx`.
macro_rules! purgeable_message {
    () => {
        concat!(
            "deleted_at IS NOT NULL AND deleted_at < $1 AND ",
            unpurged!()
        )
    };
}

/// Messages deletion takes: sent before `$1`, the first id of that instant
/// (UUIDv7 ids are ordered by send time: `MessageId::first_sent_at`).
macro_rules! old_message {
    () => {
        "id < $1"
    };
}

/// The retention lock as held: a session lock on a connection of its own.
/// Dropping it closes the connection, and the server releases the lock
/// with the session.
pub(super) struct AdvisoryLock {
    connection: PgConnection,
}

impl AdvisoryLock {
    /// Unlocks and closes the connection, waiting for the server to confirm
    /// the unlock (a close alone is not waited for).
    pub(super) async fn release(mut self) -> Result<(), StoreError> {
        const OP: &str = "release_retention_lock";
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(RETENTION_LOCK_KEY)
            .execute(&mut self.connection)
            .await
            .map_err(|e| StoreError::from_sqlx(OP, e))?;
        self.connection
            .close()
            .await
            .map_err(|e| StoreError::from_sqlx(OP, e))
    }
}

/// The count of one retention condition (`$1` = `cutoff`).
async fn count_where<T>(pool: &PgPool, sql: &'static str, cutoff: T) -> Result<u64, StoreError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    const OP: &str = "count_retention";
    let n: i64 = sqlx::query_scalar(sql)
        .bind(cutoff)
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
    count(OP, n)
}

#[async_trait]
impl Retention for PostgresStore {
    async fn try_lock_retention(&self) -> Result<Option<RetentionLease>, StoreError> {
        const OP: &str = "try_lock_retention";
        let err = |e| StoreError::from_sqlx(OP, e);
        // Not a pooled connection: a session lock left on one would outlive
        // the run (the pool hands the connection to the next caller), and
        // a pooled connection may be reset or closed by the pool at will.
        let options = self.pool.connect_options();
        let connect = PgConnection::connect_with(&options);
        let mut connection =
            match tokio::time::timeout(self.pool.options().get_acquire_timeout(), connect).await {
                Ok(connected) => connected.map_err(err)?,
                Err(elapsed) => return Err(StoreError::timed_out(OP, elapsed)),
            };
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RETENTION_LOCK_KEY)
            .fetch_one(&mut connection)
            .await
            .map_err(err)?;
        if !locked {
            connection.close().await.map_err(err)?;
            return Ok(None);
        }
        Ok(Some(RetentionLease::postgres(AdvisoryLock { connection })))
    }

    async fn archive_idle_conversations(
        &self,
        cutoffs: &RetentionCutoffs,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<ArchiveBatch, StoreError> {
        const OP: &str = "archive_idle_conversations";
        // Conversations are visited in id order from `after` (the primary
        // key), so a run reads each row once however many batches it takes.
        // The batch is locked in id order, the order a group commit locks
        // the conversations it bumps, so the two cannot deadlock; a row
        // that a send changed meanwhile is re-checked against the condition
        // (and left out) before it is locked. The UPDATE re-checks too.
        let (visited, last, archived): (i64, Option<Uuid>, i64) = sqlx::query_as(concat!(
            "WITH batch AS ( \
                SELECT id FROM conversations WHERE id > $3 AND ",
            idle_conversation!(),
            " ORDER BY id LIMIT $4 FOR NO KEY UPDATE \
             ), archived AS ( \
                UPDATE conversations SET archived_at = $2 \
                WHERE id = ANY (ARRAY(SELECT id FROM batch)) AND ",
            idle_conversation!(),
            " RETURNING id \
             ) \
             SELECT (SELECT count(*) FROM batch), \
                    (SELECT id FROM batch ORDER BY id DESC LIMIT 1), \
                    (SELECT count(*) FROM archived)"
        ))
        .bind(cutoffs.archive_idle_before)
        .bind(millis(cutoffs.now))
        .bind(after.map_or(Uuid::nil(), |c| c.as_uuid()))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;
        Ok(ArchiveBatch {
            archived: count(OP, archived)?,
            // A full batch may have more after it; a short one reached the end.
            next: last
                .filter(|_| visited >= i64::from(limit))
                .map(ConversationId::from_uuid),
        })
    }

    async fn purge_deleted_messages(
        &self,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // Purged rows leave the condition (and the partial index), so each
        // batch starts from the oldest deletion still waiting. `= ANY
        // (ARRAY(...))` makes the outer statement look its rows up by
        // primary key, whatever the planner thinks of the subquery's size
        // (an `IN` may be planned as a join that scans every qualifying row
        // at each batch); the same in the two other statements. Its
        // re-check is only "not erased yet": `deleted_at` never changes
        // once set (and with it the planner would scan the partial index).
        let done = sqlx::query(concat!(
            "UPDATE messages SET content = '', attachments = '[]'::jsonb \
             WHERE id = ANY (ARRAY(SELECT id FROM messages WHERE ",
            purgeable_message!(),
            " ORDER BY deleted_at LIMIT $2)) AND ",
            unpurged!()
        ))
        .bind(cutoffs.purge_deleted_before)
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
        // Read cursors on a deleted message become NULL (`ON DELETE SET
        // NULL`). That keeps unread counts exact: what is deleted is every
        // message with an id below `first`, so every message left in the
        // conversation is newer than the cursor's message was, and a NULL
        // cursor counts all of them, as the old cursor did.
        let first = MessageId::first_sent_at(before);
        let done = sqlx::query(concat!(
            "DELETE FROM messages WHERE id = ANY (ARRAY(SELECT id FROM messages WHERE ",
            old_message!(),
            " ORDER BY id LIMIT $2)) AND ",
            old_message!()
        ))
        .bind(first.as_uuid())
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
            cutoffs.archive_idle_before,
        )
        .await?;
        let purged = count_where(
            &self.pool,
            concat!("SELECT count(*) FROM messages WHERE ", purgeable_message!()),
            cutoffs.purge_deleted_before,
        )
        .await?;
        let deleted = match cutoffs.delete_sent_before {
            None => 0,
            Some(before) => {
                count_where(
                    &self.pool,
                    concat!("SELECT count(*) FROM messages WHERE ", old_message!()),
                    MessageId::first_sent_at(before).as_uuid(),
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
