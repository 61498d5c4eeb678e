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
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::JsonValue;
use uuid::Uuid;

use super::rows::{self, corrupt, count, user_id};
use super::{
    Conversations, Created, CursorMove, Health, InsertOutcome, Inserted, MessageInsert,
    MessageInserts, Messages, Participants, ReadCursors, StoreError, duplicate_of, insert_alone,
};
use crate::domain::{
    ClientMessageId, Conversation, ConversationId, ConversationSummary, ListCursor, Message,
    MessageId, NewConversation, NewMessage, Page, PageRequest, ReadCursor, UserId,
};

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
        const OP: &str = "list_conversations";
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
             WHERE p.user_id = $1 \
               AND ($2::timestamptz IS NULL \
                    OR (COALESCE(c.last_message_at, c.created_at), c.id) < ($2, $3)) \
             ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.id DESC \
             LIMIT $4"
        ))
        .bind(user.as_str())
        .bind(cursor.map(|c| c.activity_at))
        .bind(cursor.map(|c| c.id.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx(OP, e))?;

        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut participants = self.participants_of(OP, &ids).await?;
        rows.into_iter()
            .map(|row| {
                let users = participants.remove(&row.id).unwrap_or_default();
                row.into_summary(users)
            })
            .collect()
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
        // `last_message_at` monotonic even if node clocks disagree a little;
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
                UPDATE conversations c SET last_message_at = GREATEST(c.last_message_at, b.at) \
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
