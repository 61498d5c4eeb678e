//! Offline notifications: what the store keeps between a committed message
//! and the webhook or e-mail that tells an absent participant about it.
//!
//! A notification's life: a committed message leaves an [`OutboxEntry`] (in
//! the message's own transaction); a worker turns entries into one
//! [`Gathered`] notification per offline recipient, conversation and
//! [`Channel`] (several messages before it falls due fold into one); when
//! due, a worker claims it ([`DueNotification`]) and settles it
//! ([`Settlement`]).

use chrono::{DateTime, Utc};

use super::{ConversationId, MessageId, NotificationId, UserId};

/// How a notification reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A signed POST to the business's back-end (push, SMS: its choice).
    Webhook,
    /// An e-mail to the address in the recipient's token.
    Email,
}

impl Channel {
    pub const ALL: [Self; 2] = [Self::Webhook, Self::Email];

    /// The stored and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

/// What a user's tokens told the node about them, for notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub email: Option<String>,
    pub name: Option<String>,
    /// The user has not turned e-mail notifications off.
    pub email_enabled: bool,
}

/// What a user's token says about them (`email`, `name`), to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactClaims {
    pub user: UserId,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A committed message not yet turned into notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
}

/// New messages for one offline recipient in one conversation, to add to
/// the pending notification of that channel (or to start one, due at `due_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered {
    /// Used only when a new notification starts.
    pub id: NotificationId,
    pub channel: Channel,
    pub recipient_id: UserId,
    pub conversation_id: ConversationId,
    /// The newest of the messages; a notification never moves back to an
    /// older one, so gathering the same messages twice adds nothing.
    pub latest_message_id: MessageId,
    pub message_count: u32,
    pub due_at: DateTime<Utc>,
}

/// A notification claimed for one delivery attempt, leased to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueNotification {
    pub id: NotificationId,
    pub channel: Channel,
    pub recipient_id: UserId,
    pub conversation_id: ConversationId,
    pub latest_message_id: MessageId,
    pub message_count: u32,
    /// This attempt's number, from 1. Settling names it, so an attempt
    /// whose lease ran out (and was claimed again elsewhere) settles nothing.
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered (2xx, or the SMTP server accepted the mail).
    Sent,
    /// Nothing to deliver any more (read in time, recipient online, no
    /// address, e-mails turned off, message deleted).
    Cancelled { reason: &'static str },
    /// Try again at `at`.
    Retry { at: DateTime<Utc>, error: String },
    /// Given up: a permanent refusal, or the last attempt failed.
    Dead { error: String },
}

impl Settlement {
    /// The stored state.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Cancelled { .. } => "cancelled",
            Self::Retry { .. } => "sending",
            Self::Dead { .. } => "dead",
        }
    }

    /// When the next attempt is due (a retry only).
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Retry { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// What is recorded as `last_error`: the failure, or why it was cancelled.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Sent => None,
            Self::Cancelled { reason } => Some(reason),
            Self::Retry { error, .. } | Self::Dead { error } => Some(error),
        }
    }
}

/// Most characters of a message shown in a notification.
const EXCERPT_CHARS: usize = 140;

/// The start of `content`, on a character boundary, with an ellipsis when cut.
pub fn excerpt(content: &str) -> String {
    let mut chars = content.char_indices();
    match chars.nth(EXCERPT_CHARS) {
        None => content.to_owned(),
        Some((cut, _)) => format!("{}…", content[..cut].trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(200);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "a".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact), exact);
    }

    #[test]
    fn channels_round_trip_their_labels() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("sms"), None);
    }
}
