//! PROTOCOL.md as types: namespace, event and room names, client payloads,
//! every payload the server sends that is not a domain type, the ack
//! envelope and error codes. No logic beyond (de)serialisation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::domain::{
    Attachment, ConversationId, ConversationSummary, Message, MessageId, NotificationId, Page,
    UserId,
};

/// The Socket.IO namespace clients connect to.
pub const NAMESPACE: &str = "/messaging";

/// Event names, client → server and server → client.
pub mod ev {
    pub const JOIN_CONVERSATION: &str = "join-conversation";
    pub const LEAVE_CONVERSATION: &str = "leave-conversation";
    pub const SEND_MESSAGE: &str = "send-message";
    pub const MARK_AS_READ: &str = "mark-as-read";
    pub const MARK_CONVERSATION_AS_READ: &str = "mark-conversation-as-read";
    pub const USER_TYPING: &str = "user-typing";
    pub const USER_STOPPED_TYPING: &str = "user-stopped-typing";
    pub const GET_PRESENCE: &str = "get-presence";
    pub const BLOCK_USER: &str = "block-user";
    pub const UNBLOCK_USER: &str = "unblock-user";
    pub const SYNC: &str = "sync";

    /// Every event a client may send.
    pub const FROM_CLIENT: [&str; 11] = [
        JOIN_CONVERSATION,
        LEAVE_CONVERSATION,
        SEND_MESSAGE,
        MARK_AS_READ,
        MARK_CONVERSATION_AS_READ,
        USER_TYPING,
        USER_STOPPED_TYPING,
        GET_PRESENCE,
        BLOCK_USER,
        UNBLOCK_USER,
        SYNC,
    ];

    pub const NEW_MESSAGE: &str = "new-message";
    pub const CONVERSATION_HISTORY: &str = "conversation-history";
    pub const MESSAGE_READ: &str = "message-read";
    pub const USER_JOINED: &str = "user-joined";
    pub const USER_LEFT: &str = "user-left";
    pub const USER_ONLINE: &str = "user-online";
    pub const USER_OFFLINE: &str = "user-offline";
    pub const UNREAD_COUNT_UPDATED: &str = "unread-count-updated";
    pub const CONVERSATION_CREATED: &str = "conversation-created";
    pub const MESSAGE_DELETED: &str = "message-deleted";
    /// A log number whose change did not happen, or that the receiver may
    /// not see: nothing to apply, only the number to move past.
    pub const SEQ_SKIPPED: &str = "seq-skipped";
    /// A conversation's latest log number, sent when a change may not have
    /// reached everyone live (another node died): a client behind it syncs.
    pub const CONVERSATION_LATEST: &str = "conversation-latest";
    pub const ERROR: &str = "error";
}

/// Room names. Every emit names its room through these.
pub mod rooms {
    use crate::domain::{ConversationId, UserId};

    /// All sockets of one user, on every node.
    pub fn user(id: &UserId) -> String {
        format!("user-{id}")
    }

    /// One socket, wherever it is connected. Every socket joins its own room
    /// at connect, so broadcasts can exclude it on every node.
    pub fn socket(socket_id: &str) -> String {
        format!("socket-{socket_id}")
    }

    /// Sockets that joined a conversation.
    pub fn conversation(id: ConversationId) -> String {
        format!("conversation-{id}")
    }

    /// The conversation whose room `room` is, if it is one.
    pub fn conversation_of(room: &str) -> Option<ConversationId> {
        let id = room.strip_prefix("conversation-")?;
        ConversationId::parse("room", id).ok()
    }
}

/// Error codes of PROTOCOL.md §2 and §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Validation,
    NotFound,
    Forbidden,
    RateLimited,
    Unavailable,
    /// The store may or may not have committed the write (PROTOCOL.md §9):
    /// retry with the same `clientMessageId`.
    UnknownOutcome,
    TokenExpired,
    Unauthorized,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validation => "VALIDATION",
            Self::NotFound => "NOT_FOUND",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
            Self::UnknownOutcome => "UNKNOWN_OUTCOME",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Internal => "INTERNAL",
        }
    }

    /// The HTTP status of PROTOCOL.md §5 (413 for oversized bodies is decided
    /// by the HTTP layer, which knows the cause).
    pub fn http_status(self) -> u16 {
        match self {
            Self::Validation => 400,
            Self::Unauthorized | Self::TokenExpired => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::RateLimited => 429,
            Self::Unavailable | Self::UnknownOutcome => 503,
            Self::Internal => 500,
        }
    }
}

/// `{code, message}` as carried by acks and HTTP error bodies.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// The `error` event (PROTOCOL.md §2).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
pub struct ErrorEvent<'a> {
    pub code: ErrorCode,
    pub message: &'a str,
    /// The client event that failed, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub event: Option<&'a str>,
}

/// The single ack argument: `{ok: true, data}` or `{ok: false, error}`.
#[derive(Debug, Serialize, TS)]
#[serde(untagged)]
pub enum Ack<T> {
    Ok {
        #[ts(type = "true")]
        ok: bool,
        data: T,
    },
    Err {
        #[ts(type = "false")]
        ok: bool,
        error: ErrorBody,
    },
}

impl<T: Serialize> Ack<T> {
    pub fn ok(data: T) -> Self {
        Self::Ok { ok: true, data }
    }

    pub fn err(error: ErrorBody) -> Self {
        Self::Err { ok: false, error }
    }
}

// ---- client → server payloads. Fields stay loosely typed (strings, numbers)
// ---- so that domain constructors, not serde, produce VALIDATION messages.

#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct JoinConversation {
    pub conversation_id: String,
    /// 1 to 100 messages; 50 when absent.
    #[ts(optional, as = "Option<u32>")]
    pub limit: Option<i64>,
    /// A message id: the page just older than it.
    #[ts(optional)]
    pub before: Option<String>,
    /// A message id: the page just newer than it.
    #[ts(optional)]
    pub after: Option<String>,
    /// The last log number the client saw (PROTOCOL.md §8): the socket gets
    /// every numbered event after it, in order, instead of a history page.
    #[ts(optional, as = "Option<u32>")]
    pub after_seq: Option<i64>,
}

/// `sync`: what a reconnecting client last saw of each conversation.
#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// Conversation id → the last log number seen (at most 100 entries).
    #[schema(value_type = Object)]
    #[ts(as = "HashMap<String, u32>")]
    pub conversations: HashMap<String, i64>,
    /// `syncedAt` of the previous sync: conversations the user was added to
    /// since are listed in `conversationsAdded` (default: the last 30 days).
    #[ts(optional)]
    pub since: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRef {
    pub conversation_id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub conversation_id: String,
    /// May be empty when the message has attachments.
    #[serde(default)]
    #[ts(optional, as = "Option<String>")]
    pub content: String,
    #[serde(default)]
    #[ts(optional, as = "Option<Vec<Attachment>>")]
    pub attachments: Vec<Attachment>,
    /// The client's own id for the message: a retry with it stores nothing new.
    #[ts(optional)]
    pub client_message_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct MarkAsRead {
    pub message_id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct GetPresence {
    pub user_ids: Vec<String>,
}

/// `block-user` / `unblock-user`.
#[derive(Debug, Deserialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub user_id: String,
}

// ---- server → client payloads that are not domain types.

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAck {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    /// The conversation's latest log number when the join was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub latest_seq: Option<u64>,
    /// With `afterSeq`: more events followed than one join replays; continue
    /// with `sync` from the last number received.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub has_more: Option<bool>,
    /// With `afterSeq`: false when the gap is older than the log still held
    /// (nothing was replayed): refetch the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub recovered: Option<bool>,
}

impl ConversationAck {
    pub fn plain(conversation_id: ConversationId) -> Self {
        Self {
            conversation_id,
            latest_seq: None,
            has_more: None,
            recovered: None,
        }
    }
}

/// `conversation-created`: the conversation, and its creation's number (1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ConversationCreated {
    #[serde(flatten)]
    #[ts(flatten)]
    pub conversation: crate::domain::Conversation,
    #[ts(type = "number")]
    pub seq: u64,
}

/// `seq-skipped` and `conversation-latest`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct SeqMark {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[ts(type = "number")]
    pub seq: u64,
}

/// One event of a replay: `type` is the event's name, `data` its payload as
/// it would have been sent live.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedEvent {
    #[ts(type = "number")]
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[schema(value_type = Object)]
    #[ts(type = "unknown")]
    pub data: serde_json::Value,
}

/// What `sync` answers for one conversation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(untagged)]
pub enum ConversationReplay {
    Replayed {
        /// In order, numbers without holes from `afterSeq + 1` on.
        events: Vec<ReplayedEvent>,
        #[serde(rename = "hasMore")]
        has_more: bool,
        #[serde(rename = "latestSeq")]
        #[ts(type = "number")]
        latest_seq: u64,
    },
    /// The gap is older than the log still held, or the conversation is not
    /// the caller's: refetch its history.
    NotRecovered {
        #[ts(type = "false")]
        recovered: bool,
    },
}

/// The `sync` ack data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct SyncAck {
    /// Conversation id → its replay.
    #[schema(value_type = Object)]
    pub conversations: HashMap<ConversationId, ConversationReplay>,
    /// Conversations the user was added to since `since` (created at or
    /// after it) that the call did not name: at most 100, oldest first.
    pub conversations_added: Vec<crate::domain::Conversation>,
    /// More were added: sync again with `since` set to the last one's
    /// `createdAt`.
    pub conversations_added_has_more: bool,
    pub unread: UnreadReport,
    /// Give it as `since` to the next `sync`.
    pub synced_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct MemberEvent {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[schema(value_type = String)]
    pub user_id: UserId,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[schema(value_type = String, format = Uuid)]
    pub message_id: MessageId,
    #[ts(type = "number")]
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
pub struct Empty {}

/// Ack of `mark-as-read` / `mark-conversation-as-read`; also the
/// `message-read` payload (with `user_id`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub message_id: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    #[ts(optional)]
    pub user_id: Option<UserId>,
    pub read_at: Option<String>,
    /// The read's number in the conversation's log, when the cursor moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub seq: Option<u64>,
}

/// `unread-count-updated`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct UnreadUpdate {
    pub total_unread: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    #[ts(optional)]
    pub conversation_id: Option<ConversationId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub conversation_unread: Option<u64>,
}

/// `GET /api/v1/unread`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct UnreadReport {
    pub total_unread: u64,
    /// Conversation id → unread count, non-zero only.
    #[schema(value_type = Object)]
    pub conversations: HashMap<ConversationId, u64>,
}

/// `get-presence` ack data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct PresenceReport {
    /// User id → online on any device.
    #[schema(value_type = Object)]
    pub online: HashMap<UserId, bool>,
    /// User id → when their last device disconnected, if known.
    #[schema(value_type = Object)]
    pub last_seen: HashMap<UserId, Option<String>>,
}

/// `user-typing` / `user-stopped-typing`.
#[derive(Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct TypingEvent<'a> {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[schema(value_type = String)]
    pub user_id: &'a UserId,
    pub user_name: &'a str,
}

/// `user-online`.
#[derive(Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct OnlineEvent<'a> {
    #[schema(value_type = String)]
    pub user_id: &'a UserId,
    pub at: String,
}

/// `user-offline`.
#[derive(Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct OfflineEvent<'a> {
    #[schema(value_type = String)]
    pub user_id: &'a UserId,
    pub last_seen_at: String,
}

/// `conversation-history` (PROTOCOL.md §4) and the HTTP history body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct History {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

impl History {
    pub fn new(conversation_id: ConversationId, page: Page) -> Self {
        Self {
            conversation_id,
            messages: page.messages,
            has_more: page.has_more,
        }
    }
}

/// Ack of `block-user` / `unblock-user`, and the body of the block routes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct BlockAck {
    #[schema(value_type = String)]
    pub user_id: UserId,
    /// Whether the caller now blocks the user.
    pub blocked: bool,
}

/// `GET /api/v1/me/blocks`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct BlockList {
    /// Most recent first.
    pub blocks: Vec<BlockedUser>,
}

/// One user the caller blocks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct BlockedUser {
    #[schema(value_type = String)]
    pub user_id: UserId,
    pub blocked_at: String,
}

/// The HTTP conversation list body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
    pub next_cursor: Option<String>,
}

/// The `type` of an unread-message notification.
pub const MESSAGE_UNREAD: &str = "message.unread";

/// The body of a notification webhook (PROTOCOL.md §7): messages wait
/// unread for a participant with no connected device.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreadNotification {
    /// The `webhook-id`: the same on every attempt, for de-duplication.
    #[schema(value_type = String, format = Uuid)]
    pub id: NotificationId,
    /// Always `message.unread`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = String)]
    pub recipient_id: UserId,
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    /// The recipient's unread messages in the conversation when sent.
    pub unread_count: u64,
    pub latest_message: NotifiedMessage,
}

/// The newest unread message, as a notification shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifiedMessage {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    #[schema(value_type = String)]
    pub sender_id: UserId,
    /// The `name` claim of the sender's token, else the sender's id.
    pub sender_name: String,
    /// At most 140 characters of the content.
    pub excerpt: String,
    pub created_at: String,
}

/// `PUT /api/v1/me/notifications`: the caller's choice, and the answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Offline notifications by e-mail (on unless turned off).
    pub email: bool,
}
