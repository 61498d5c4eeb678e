//! Identifier newtypes, so that a conversation id can never be passed where a
//! message id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ValidationError;

/// PROTOCOL.md §3 `get-presence`: at most 100 ids per call.
pub const MAX_PRESENCE_IDS: usize = 100;

/// Longest user id accepted from a token or a request.
const MAX_USER_ID_CHARS: usize = 128;
/// PROTOCOL.md §3: `clientMessageId` (≤ 64 chars).
const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 64;

/// A user as named by the identity provider (the token's `userId`/`sub`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// The ids of a `get-presence` request: at most [`MAX_PRESENCE_IDS`].
    pub fn parse_presence_query(raw: &[String]) -> Result<Vec<Self>, ValidationError> {
        if raw.len() > MAX_PRESENCE_IDS {
            return Err(ValidationError::new("userIds", "at most 100 ids"));
        }
        raw.iter().map(|id| Self::parse("userIds", id)).collect()
    }

    /// 1 to 128 characters, no control characters, no surrounding whitespace.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars == 0 || chars > MAX_USER_ID_CHARS {
            return Err(ValidationError::new(field, "must be 1 to 128 characters"));
        }
        if raw.trim() != raw || raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                "must not contain control characters or surrounding spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ts_rs::TS)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses a client-supplied id; `field` names it in the error.
            pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
                Uuid::try_parse(raw)
                    .map(Self)
                    .map_err(|_| ValidationError::new(field, "must be a UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// A conversation (random UUIDv4: its id reveals nothing about when it was made).
    ConversationId
);
uuid_id!(
    /// A message. UUIDv7, so ids sort by creation time and paging can use them as cursors.
    MessageId
);

uuid_id!(
    /// An offline notification: the `webhook-id` a receiver de-duplicates
    /// by, the same on every attempt (random UUIDv4).
    NotificationId
);

impl NotificationId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl ConversationId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl MessageId {
    /// A fresh, time-ordered id (monotonic within this process).
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// The smallest id of a message sent at `at` (its millisecond in the
    /// UUIDv7 timestamp, every other bit zero but version and variant): the
    /// ids of messages sent before `at` are exactly those below it. Times
    /// before 1970 give the smallest v7 id.
    pub fn first_sent_at(at: chrono::DateTime<chrono::Utc>) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid())
    }
}

/// The sender's idempotency key for `send-message`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(transparent)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars == 0 || chars > MAX_CLIENT_MESSAGE_ID_CHARS {
            return Err(ValidationError::new(
                "clientMessageId",
                "must be 1 to 64 characters",
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "clientMessageId",
                "must not contain control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rejects_empty_long_and_padded() {
        assert!(UserId::parse("u", "").is_err());
        assert!(UserId::parse("u", &"a".repeat(129)).is_err());
        assert!(UserId::parse("u", " alice").is_err());
        assert!(UserId::parse("u", "al\nice").is_err());
        assert_eq!(UserId::parse("u", "alice").unwrap().as_str(), "alice");
    }

    #[test]
    fn message_ids_sort_by_creation() {
        let a = MessageId::new_v7();
        let b = MessageId::new_v7();
        assert!(a < b);
        assert!(
            a.to_string() < b.to_string(),
            "text form sorts like the bytes"
        );
    }

    #[test]
    fn first_sent_at_bounds_the_ids_of_that_millisecond() {
        let id = MessageId::new_v7();
        let millis = id.as_uuid().get_timestamp().unwrap().to_unix();
        let at = chrono::DateTime::from_timestamp(millis.0 as i64, millis.1).unwrap();
        assert!(MessageId::first_sent_at(at) <= id);
        assert!(MessageId::first_sent_at(at + chrono::TimeDelta::milliseconds(1)) > id);
        assert_eq!(MessageId::first_sent_at(at).as_uuid().get_version_num(), 7);
    }

    #[test]
    fn client_message_id_is_bounded() {
        assert!(ClientMessageId::parse(&"x".repeat(64)).is_ok());
        assert!(ClientMessageId::parse(&"x".repeat(65)).is_err());
        assert!(ClientMessageId::parse("").is_err());
    }
}
