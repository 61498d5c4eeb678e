//! Plain, validated types of the messaging domain: ids, content, attachments,
//! messages, conversations, page requests. Constructors validate; nothing here
//! does I/O or knows about sqlx, Socket.IO or HTTP.

mod content;
mod ids;
mod log;
mod message;
mod notification;
pub mod page;
mod retention;

pub use content::{Attachment, Content, Limits};
pub use ids::{ClientMessageId, ConversationId, MessageId, NotificationId, UserId};
pub use log::{
    Change, JoinRequest, LogEntry, LogPage, MAX_SYNC_CONVERSATIONS, SyncCommand, parse_seq,
};
pub use message::{
    Conversation, ConversationSummary, Message, NewConversation, NewMessage, ReadCursor,
    format_time,
};
pub use notification::{
    Channel, Contact, ContactClaims, DueNotification, Gathered, OutboxEntry, Settlement, excerpt,
};
pub use page::{ListCursor, ListRequest, Page, PageRequest};
pub use retention::{RetentionCounts, RetentionCutoffs, RetentionPolicy};

use std::borrow::Cow;

/// A field of client input that broke a rule of the contract. Its `Display` is
/// shown to the client as the `VALIDATION` message, so it names the field and
/// the rule and never echoes the (possibly huge) value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    pub field: Cow<'static, str>,
    pub rule: Cow<'static, str>,
}

impl ValidationError {
    pub fn new(field: impl Into<Cow<'static, str>>, rule: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Current time truncated to the millisecond, the precision of the wire format
/// (PROTOCOL.md conventions), so what is stored equals what is sent.
pub fn now_millis() -> chrono::DateTime<chrono::Utc> {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(3)
}
