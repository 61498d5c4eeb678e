//! Messages and conversations: what is stored, what is sent, and the
//! validated commands that create them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    Attachment, ClientMessageId, Content, ConversationId, Limits, MessageId, UserId,
    ValidationError,
};

/// A stored message, as sent on the wire (PROTOCOL.md §4 `Message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[schema(value_type = String, format = Uuid)]
    pub id: MessageId,
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[schema(value_type = String)]
    pub sender_id: UserId,
    pub content: String,
    pub attachments: Vec<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    #[ts(optional)]
    pub client_message_id: Option<ClientMessageId>,
    #[serde(serialize_with = "rfc3339_millis")]
    #[ts(type = "string")]
    pub created_at: DateTime<Utc>,
    /// The message's number in its conversation's log (PROTOCOL.md §8).
    #[ts(type = "number")]
    pub seq: u64,
    /// Only in a replay (`sync`, `join-conversation` with `afterSeq`): the
    /// message was deleted since, and its content and attachments are gone;
    /// the deletion follows later in the same replay.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_rfc3339_millis"
    )]
    #[ts(optional, type = "string")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A conversation, as sent on the wire (PROTOCOL.md §4 `Conversation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    #[schema(value_type = String, format = Uuid)]
    pub id: ConversationId,
    /// Sorted, without duplicates.
    #[schema(value_type = Vec<String>)]
    pub participant_ids: Vec<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub title: Option<String>,
    #[serde(serialize_with = "rfc3339_millis")]
    #[ts(type = "string")]
    pub created_at: DateTime<Utc>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_rfc3339_millis"
    )]
    #[ts(optional)]
    pub last_message_at: Option<DateTime<Utc>>,
}

/// One entry of a user's conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub unread_count: u64,
    pub last_message: Option<Message>,
}

/// Where a participant has read up to in one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCursor {
    pub message_id: Option<MessageId>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A validated `send-message` command (PROTOCOL.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub content: Content,
    pub attachments: Vec<Attachment>,
    pub client_message_id: Option<ClientMessageId>,
}

impl NewMessage {
    /// A `send-message` payload, whose conversation id is still text.
    pub fn parse(
        conversation_id: &str,
        content: &str,
        attachments: Vec<Attachment>,
        client_message_id: Option<&str>,
        limits: &Limits,
    ) -> Result<Self, ValidationError> {
        let conversation_id = ConversationId::parse("conversationId", conversation_id)?;
        Self::new(
            conversation_id,
            content,
            attachments,
            client_message_id,
            limits,
        )
    }

    /// A message to a conversation already named by a parsed id (the HTTP
    /// route's path).
    pub fn new(
        conversation_id: ConversationId,
        content: &str,
        attachments: Vec<Attachment>,
        client_message_id: Option<&str>,
        limits: &Limits,
    ) -> Result<Self, ValidationError> {
        let content = Content::parse(content, limits)?;
        if attachments.len() > limits.max_attachments {
            return Err(ValidationError::new(
                "attachments",
                format!("at most {} attachments", limits.max_attachments),
            ));
        }
        let attachments = attachments
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.validate(i, limits))
            .collect::<Result<Vec<_>, _>>()?;
        if content.is_empty() && attachments.is_empty() {
            return Err(ValidationError::new(
                "content",
                "must not be empty unless the message has attachments",
            ));
        }
        let client_message_id = client_message_id.map(ClientMessageId::parse).transpose()?;
        Ok(Self {
            conversation_id,
            content,
            attachments,
            client_message_id,
        })
    }
}

/// A validated create-conversation command. `participant_ids` is sorted,
/// deduplicated and includes the creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    pub participant_ids: Vec<UserId>,
    pub title: Option<String>,
}

impl NewConversation {
    pub fn parse(
        creator: &UserId,
        participant_ids: &[String],
        title: Option<&str>,
        limits: &Limits,
    ) -> Result<Self, ValidationError> {
        let mut ids = participant_ids
            .iter()
            .map(|raw| UserId::parse("participantIds", raw))
            .collect::<Result<Vec<_>, _>>()?;
        ids.push(creator.clone());
        ids.sort();
        ids.dedup();
        if ids.len() < 2 {
            return Err(ValidationError::new(
                "participantIds",
                "must name at least one user besides the caller",
            ));
        }
        if ids.len() > limits.max_participants {
            return Err(ValidationError::new(
                "participantIds",
                format!(
                    "at most {} participants, the caller included",
                    limits.max_participants
                ),
            ));
        }
        let title = match title.map(str::trim) {
            None | Some("") => None,
            Some(t)
                if t.chars().count() > limits.max_title_chars
                    || t.chars().any(char::is_control) =>
            {
                return Err(ValidationError::new(
                    "title",
                    format!(
                        "must be at most {} printable characters",
                        limits.max_title_chars
                    ),
                ));
            }
            Some(t) => Some(t.to_owned()),
        };
        Ok(Self {
            participant_ids: ids,
            title,
        })
    }

    /// The key that makes a two-person conversation unique (DESIGN.md "Data");
    /// groups have none, so the same people can hold several group conversations.
    pub fn participant_key(&self) -> Option<String> {
        match self.participant_ids.as_slice() {
            // U+001F cannot occur in a user id (control characters are refused).
            [a, b] => Some(format!("{}\u{1f}{}", a.as_str(), b.as_str())),
            _ => None,
        }
    }
}

/// RFC 3339, UTC, always three fractional digits (`2026-11-23T10:15:30.120Z`).
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn rfc3339_millis<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

fn opt_rfc3339_millis<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339_millis(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("u", "alice").unwrap()
    }

    #[test]
    fn empty_content_needs_an_attachment() {
        let id = ConversationId::new_random().to_string();
        let l = Limits::default();
        assert!(NewMessage::parse(&id, "   ", vec![], None, &l).is_err());
        let a = Attachment {
            url: "https://x.example/a.png".into(),
            mime_type: "image/png".into(),
            name: None,
            size: None,
        };
        assert!(NewMessage::parse(&id, "  ", vec![a], None, &l).is_ok());
    }

    #[test]
    fn too_many_attachments_are_refused() {
        let id = ConversationId::new_random().to_string();
        let a = Attachment {
            url: "https://x.example/a.png".into(),
            mime_type: "image/png".into(),
            name: None,
            size: None,
        };
        let err = NewMessage::parse(&id, "hi", vec![a; 11], None, &Limits::default()).unwrap_err();
        assert_eq!(err.field, "attachments");
    }

    #[test]
    fn creator_is_added_and_duplicates_removed() {
        let c = NewConversation::parse(
            &alice(),
            &["bob".into(), "bob".into()],
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            c.participant_ids
                .iter()
                .map(UserId::as_str)
                .collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(c.participant_key().as_deref(), Some("alice\u{1f}bob"));
    }

    #[test]
    fn a_conversation_with_oneself_is_refused() {
        assert!(
            NewConversation::parse(&alice(), &["alice".into()], None, &Limits::default()).is_err()
        );
    }

    #[test]
    fn participant_limit_counts_the_caller() {
        let limits = Limits {
            max_participants: 3,
            ..Limits::default()
        };
        let others: Vec<String> = (0..3).map(|i| format!("u{i}")).collect();
        assert!(NewConversation::parse(&alice(), &others, None, &limits).is_err());
        assert!(NewConversation::parse(&alice(), &others[..2], None, &limits).is_ok());
    }

    #[test]
    fn times_always_have_milliseconds() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:15:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(&t), "2026-11-23T10:15:30.000Z");
    }
}
