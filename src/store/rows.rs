//! The rows both stores read, and their assembly into domain types, written
//! once. The databases encode three things differently — ids (Postgres
//! `uuid`, SQLite text), times (`timestamptz`, unix milliseconds) and
//! attachments (`jsonb`, JSON text) — so each row is generic over those
//! column types and [`Column`] decodes each encoding. A row that does not
//! convert is [`StoreError::Corrupt`].

use chrono::{DateTime, Utc};
use serde_json::Value as JsonValue;
use sqlx::FromRow;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{
    Attachment, Change, Channel, ClientMessageId, Contact, Conversation, ConversationId,
    ConversationSummary, DueNotification, LogEntry, Message, MessageId, NotificationId,
    OutboxEntry, ReadCursor, UserId,
};

/// A column value as one database encodes a `T`.
pub(super) trait Column<T> {
    fn decode(self, op: &'static str) -> Result<T, StoreError>;
}

impl Column<Uuid> for Uuid {
    fn decode(self, _: &'static str) -> Result<Uuid, StoreError> {
        Ok(self)
    }
}

impl Column<Uuid> for String {
    fn decode(self, op: &'static str) -> Result<Uuid, StoreError> {
        Uuid::try_parse(&self).map_err(|e| corrupt(op, format!("id {self:?}: {e}")))
    }
}

impl Column<DateTime<Utc>> for DateTime<Utc> {
    fn decode(self, _: &'static str) -> Result<DateTime<Utc>, StoreError> {
        Ok(self)
    }
}

/// Unix milliseconds.
impl Column<DateTime<Utc>> for i64 {
    fn decode(self, op: &'static str) -> Result<DateTime<Utc>, StoreError> {
        DateTime::from_timestamp_millis(self)
            .ok_or_else(|| corrupt(op, format!("time {self} out of range")))
    }
}

impl Column<Vec<Attachment>> for JsonValue {
    fn decode(self, op: &'static str) -> Result<Vec<Attachment>, StoreError> {
        serde_json::from_value(self).map_err(|e| corrupt(op, format!("attachments: {e}")))
    }
}

/// JSON text.
impl Column<Vec<Attachment>> for String {
    fn decode(self, op: &'static str) -> Result<Vec<Attachment>, StoreError> {
        serde_json::from_str(&self).map_err(|e| corrupt(op, format!("attachments: {e}")))
    }
}

/// A `messages` row; `Id`, `Time` and `Json` are the database's encodings.
#[derive(FromRow)]
pub(super) struct MessageRow<Id, Time, Json> {
    pub(super) id: Id,
    pub(super) conversation_id: Id,
    pub(super) sender_id: String,
    pub(super) content: String,
    pub(super) attachments: Json,
    pub(super) client_message_id: Option<String>,
    pub(super) created_at: Time,
    pub(super) seq: i64,
}

impl<Id, Time, Json> TryFrom<MessageRow<Id, Time, Json>> for Message
where
    Id: Column<Uuid>,
    Time: Column<DateTime<Utc>>,
    Json: Column<Vec<Attachment>>,
{
    type Error = StoreError;

    fn try_from(row: MessageRow<Id, Time, Json>) -> Result<Self, StoreError> {
        const OP: &str = "messages row";
        let client_message_id = row
            .client_message_id
            .as_deref()
            .map(ClientMessageId::parse)
            .transpose()
            .map_err(|e| corrupt(OP, e.to_string()))?;
        Ok(Message {
            id: MessageId::from_uuid(row.id.decode(OP)?),
            conversation_id: ConversationId::from_uuid(row.conversation_id.decode(OP)?),
            sender_id: user_id(OP, &row.sender_id)?,
            content: row.content,
            attachments: row.attachments.decode(OP)?,
            client_message_id,
            created_at: row.created_at.decode(OP)?,
            seq: seq(OP, row.seq)?,
            deleted_at: None,
        })
    }
}

/// A log number as stored (`bigint`, `INTEGER`), which is never negative.
pub(super) fn seq(op: &'static str, raw: i64) -> Result<u64, StoreError> {
    u64::try_from(raw).map_err(|_| corrupt(op, format!("negative seq {raw}")))
}

/// A log number as stored.
pub(super) fn stored_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// One entry of a conversation's log as the replay query reads it: a
/// message (`kind = 'message'`, with its columns) or a conversation_events row.
#[derive(FromRow)]
pub(super) struct LogRow<Id, Time, Json> {
    pub(super) seq: i64,
    pub(super) kind: String,
    pub(super) actor_id: Option<String>,
    pub(super) message_id: Option<Id>,
    pub(super) at: Time,
    pub(super) content: Option<String>,
    pub(super) attachments: Option<Json>,
    pub(super) client_message_id: Option<String>,
    pub(super) deleted_at: Option<Time>,
}

impl<Id, Time, Json> LogRow<Id, Time, Json>
where
    Id: Column<Uuid>,
    Time: Column<DateTime<Utc>>,
    Json: Column<Vec<Attachment>>,
{
    /// The entry; `created` is the conversation, for its creation entry.
    pub(super) fn into_entry(
        self,
        conversation: ConversationId,
        created: &Option<Conversation>,
    ) -> Result<LogEntry, StoreError> {
        const OP: &str = "conversation log row";
        let seq = seq(OP, self.seq)?;
        let message_id = self
            .message_id
            .map(|id| id.decode(OP))
            .transpose()?
            .map(MessageId::from_uuid);
        let message = || message_id.ok_or_else(|| corrupt(OP, "no message_id"));
        let change = match self.kind.as_str() {
            "message" => {
                let deleted_at = self.deleted_at.map(|t| t.decode(OP)).transpose()?;
                let (content, attachments) = match deleted_at {
                    // Gone for the reader: the replay says only that it was.
                    Some(_) => (String::new(), Vec::new()),
                    None => (
                        self.content.unwrap_or_default(),
                        self.attachments
                            .map(|a| a.decode(OP))
                            .transpose()?
                            .unwrap_or_default(),
                    ),
                };
                Change::Message(Message {
                    id: message()?,
                    conversation_id: conversation,
                    sender_id: user_id(OP, self.actor_id.as_deref().unwrap_or_default())?,
                    content,
                    attachments,
                    client_message_id: self
                        .client_message_id
                        .as_deref()
                        .map(ClientMessageId::parse)
                        .transpose()
                        .map_err(|e| corrupt(OP, e.to_string()))?,
                    created_at: self.at.decode(OP)?,
                    seq,
                    deleted_at,
                })
            }
            "read" => Change::Read {
                user: user_id(OP, self.actor_id.as_deref().unwrap_or_default())?,
                message: message()?,
                at: self.at.decode(OP)?,
            },
            "deleted" => Change::Deleted {
                message: message()?,
            },
            "created" => Change::Created(
                created
                    .clone()
                    .ok_or_else(|| corrupt(OP, "creation of a conversation not found"))?,
            ),
            "skipped" => Change::Skipped,
            other => return Err(corrupt(OP, format!("unknown kind {other}"))),
        };
        Ok(LogEntry { seq, change })
    }
}

/// A `conversations` row, without its participants.
#[derive(FromRow)]
pub(super) struct ConversationRow<Id, Time> {
    pub(super) id: Id,
    pub(super) title: Option<String>,
    pub(super) created_at: Time,
    pub(super) last_message_at: Option<Time>,
}

impl<Id: Column<Uuid>, Time: Column<DateTime<Utc>>> ConversationRow<Id, Time> {
    pub(super) fn into_conversation(
        self,
        participant_ids: Vec<UserId>,
    ) -> Result<Conversation, StoreError> {
        const OP: &str = "conversations row";
        Ok(Conversation {
            id: ConversationId::from_uuid(self.id.decode(OP)?),
            participant_ids,
            title: self.title,
            created_at: self.created_at.decode(OP)?,
            last_message_at: self.last_message_at.map(|t| t.decode(OP)).transpose()?,
        })
    }
}

/// One line of a user's conversation list: the conversation, the user's
/// unread count, and the newest non-deleted message (all `lm_*` NULL if none).
#[derive(FromRow)]
pub(super) struct SummaryRow<Id, Time, Json> {
    pub(super) id: Id,
    pub(super) title: Option<String>,
    pub(super) created_at: Time,
    pub(super) last_message_at: Option<Time>,
    pub(super) unread_count: i64,
    pub(super) lm_id: Option<Id>,
    pub(super) lm_sender_id: Option<String>,
    pub(super) lm_content: Option<String>,
    pub(super) lm_attachments: Option<Json>,
    pub(super) lm_client_message_id: Option<String>,
    pub(super) lm_created_at: Option<Time>,
    pub(super) lm_seq: Option<i64>,
}

impl<Id, Time, Json> SummaryRow<Id, Time, Json>
where
    Id: Column<Uuid> + Clone,
    Time: Column<DateTime<Utc>>,
    Json: Column<Vec<Attachment>>,
{
    pub(super) fn into_summary(
        self,
        participant_ids: Vec<UserId>,
    ) -> Result<ConversationSummary, StoreError> {
        const OP: &str = "conversation list row";
        let last_message = match (
            self.lm_id,
            self.lm_sender_id,
            self.lm_content,
            self.lm_attachments,
            self.lm_created_at,
            self.lm_seq,
        ) {
            (
                Some(id),
                Some(sender_id),
                Some(content),
                Some(attachments),
                Some(created_at),
                Some(seq),
            ) => Some(Message::try_from(MessageRow {
                id,
                conversation_id: self.id.clone(),
                sender_id,
                content,
                attachments,
                client_message_id: self.lm_client_message_id,
                created_at,
                seq,
            })?),
            _ => None,
        };
        let conversation = ConversationRow {
            id: self.id,
            title: self.title,
            created_at: self.created_at,
            last_message_at: self.last_message_at,
        }
        .into_conversation(participant_ids)?;
        Ok(ConversationSummary {
            conversation,
            unread_count: count(OP, self.unread_count)?,
            last_message,
        })
    }
}

/// A participant's read cursor.
#[derive(FromRow)]
pub(super) struct CursorRow<Id, Time> {
    pub(super) last_read_message_id: Option<Id>,
    pub(super) last_read_at: Option<Time>,
}

impl<Id: Column<Uuid>, Time: Column<DateTime<Utc>>> TryFrom<CursorRow<Id, Time>> for ReadCursor {
    type Error = StoreError;

    fn try_from(row: CursorRow<Id, Time>) -> Result<Self, StoreError> {
        const OP: &str = "conversation_participants row";
        Ok(ReadCursor {
            message_id: row
                .last_read_message_id
                .map(|id| id.decode(OP).map(MessageId::from_uuid))
                .transpose()?,
            read_at: row.last_read_at.map(|t| t.decode(OP)).transpose()?,
        })
    }
}

pub(super) fn corrupt(op: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        op,
        detail: detail.into(),
    }
}

pub(super) fn user_id(op: &'static str, raw: &str) -> Result<UserId, StoreError> {
    UserId::parse("user_id", raw).map_err(|e| corrupt(op, e.to_string()))
}

/// Stored user ids, validated and sorted here rather than in SQL: `UserId`'s
/// order is byte order, which a database collation need not be.
pub(super) fn sorted_user_ids(op: &'static str, raw: &[String]) -> Result<Vec<UserId>, StoreError> {
    let mut users = raw
        .iter()
        .map(|u| user_id(op, u))
        .collect::<Result<Vec<_>, _>>()?;
    users.sort();
    Ok(users)
}

/// `(conversation, user)` rows grouped into each conversation's sorted
/// participants (see [`sorted_user_ids`] for the order).
pub(super) fn participants_by_conversation<Id: std::hash::Hash + Eq>(
    op: &'static str,
    rows: Vec<(Id, String)>,
) -> Result<std::collections::HashMap<Id, Vec<UserId>>, StoreError> {
    let mut by_conversation: std::collections::HashMap<Id, Vec<UserId>> =
        std::collections::HashMap::new();
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

pub(super) fn count(op: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(op, format!("negative count {n}")))
}

/// A `notification_outbox` entry.
#[derive(FromRow)]
pub(super) struct OutboxRow<Id> {
    pub(super) message_id: Id,
    pub(super) conversation_id: Id,
    pub(super) sender_id: String,
}

impl<Id: Column<Uuid>> TryFrom<OutboxRow<Id>> for OutboxEntry {
    type Error = StoreError;

    fn try_from(row: OutboxRow<Id>) -> Result<Self, StoreError> {
        const OP: &str = "notification_outbox row";
        Ok(OutboxEntry {
            message_id: MessageId::from_uuid(row.message_id.decode(OP)?),
            conversation_id: ConversationId::from_uuid(row.conversation_id.decode(OP)?),
            sender_id: user_id(OP, &row.sender_id)?,
        })
    }
}

/// A claimed `notifications` row.
#[derive(FromRow)]
pub(super) struct DueRow<Id, Time> {
    pub(super) id: Id,
    pub(super) channel: String,
    pub(super) recipient_id: String,
    pub(super) conversation_id: Id,
    pub(super) latest_message_id: Id,
    pub(super) message_count: i64,
    pub(super) attempts: i64,
    pub(super) created_at: Time,
}

impl<Id: Column<Uuid>, Time: Column<DateTime<Utc>>> TryFrom<DueRow<Id, Time>> for DueNotification {
    type Error = StoreError;

    fn try_from(row: DueRow<Id, Time>) -> Result<Self, StoreError> {
        const OP: &str = "notifications row";
        let small = |n: i64| u32::try_from(n).map_err(|_| corrupt(OP, format!("count {n}")));
        Ok(DueNotification {
            id: NotificationId::from_uuid(row.id.decode(OP)?),
            channel: Channel::parse(&row.channel)
                .ok_or_else(|| corrupt(OP, format!("channel {:?}", row.channel)))?,
            recipient_id: user_id(OP, &row.recipient_id)?,
            conversation_id: ConversationId::from_uuid(row.conversation_id.decode(OP)?),
            latest_message_id: MessageId::from_uuid(row.latest_message_id.decode(OP)?),
            message_count: small(row.message_count)?,
            attempt: small(row.attempts)?,
            created_at: row.created_at.decode(OP)?,
        })
    }
}

/// A `user_contacts` row.
#[derive(FromRow)]
pub(super) struct ContactRow {
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    pub(super) email_enabled: bool,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Contact {
            email: row.email,
            name: row.name,
            email_enabled: row.email_enabled,
        }
    }
}

/// (user, contact) pairs grouped by user, each user's contacts sorted.
pub(super) fn contacts_by_user(
    op: &'static str,
    pairs: Vec<(String, String)>,
) -> Result<std::collections::HashMap<UserId, Vec<UserId>>, StoreError> {
    let mut by_user: std::collections::HashMap<UserId, Vec<UserId>> =
        std::collections::HashMap::new();
    for (user, contact) in pairs {
        by_user
            .entry(user_id(op, &user)?)
            .or_default()
            .push(user_id(op, &contact)?);
    }
    for contacts in by_user.values_mut() {
        contacts.sort();
        contacts.dedup();
    }
    Ok(by_user)
}
