//! The conversation log (PROTOCOL.md §8): every change a participant must
//! see, numbered per conversation (`seq`: 1, 2, 3, … without holes) when it
//! is committed. Typing and presence are state, not history: not logged.

use chrono::{DateTime, Utc};

use super::{Conversation, Message, MessageId, UserId};

/// One numbered change of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub change: Change,
}

/// What a log entry changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The conversation was created (always number 1).
    Created(Conversation),
    /// A message was sent. As stored now: a message deleted since has its
    /// `deleted_at` set and no content or attachments left.
    Message(Message),
    /// `user`'s read cursor moved to `message`.
    Read {
        user: UserId,
        message: MessageId,
        at: DateTime<Utc>,
    },
    /// `message` was deleted.
    Deleted { message: MessageId },
    /// The number was taken, and the change it was for did not happen (a
    /// send that lost a race for its clientMessageId): nothing to apply.
    Skipped,
}

/// A stretch of a conversation's log (`ConversationLog::log_after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// Oldest first, numbers without holes from the requested one on.
    pub entries: Vec<LogEntry>,
    /// More entries follow the last one.
    pub has_more: bool,
    /// The conversation's latest number (at least the last entry's).
    pub latest_seq: u64,
    /// Numbers at or below this are no longer held (retention deleted them).
    pub floor: u64,
}

/// Most conversations one `sync` names.
pub const MAX_SYNC_CONVERSATIONS: usize = 100;

/// A log number from a client: 0 (nothing seen) or more.
pub fn parse_seq(field: &'static str, raw: i64) -> Result<u64, super::ValidationError> {
    u64::try_from(raw).map_err(|_| super::ValidationError::new(field, "must be 0 or more"))
}

/// How a socket joins a conversation: with a page of history (v1), or
/// resuming after the last log number it saw (v1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRequest {
    History(super::PageRequest),
    After(u64),
}

impl JoinRequest {
    pub fn parse(
        limit: Option<i64>,
        before: Option<&str>,
        after: Option<&str>,
        after_seq: Option<i64>,
    ) -> Result<Self, super::ValidationError> {
        match after_seq {
            None => Ok(Self::History(super::PageRequest::parse(
                limit, before, after,
            )?)),
            Some(_) if before.is_some() || after.is_some() || limit.is_some() => {
                Err(super::ValidationError::new(
                    "afterSeq",
                    "replays the log: it does not take limit, before or after",
                ))
            }
            Some(seq) => Ok(Self::After(parse_seq("afterSeq", seq)?)),
        }
    }
}

/// A validated `sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCommand {
    /// Each named conversation, once, with the last number the client saw.
    pub conversations: Vec<(super::ConversationId, u64)>,
    pub since: Option<DateTime<Utc>>,
}

impl SyncCommand {
    pub fn parse(
        conversations: &std::collections::HashMap<String, i64>,
        since: Option<&str>,
    ) -> Result<Self, super::ValidationError> {
        if conversations.len() > MAX_SYNC_CONVERSATIONS {
            return Err(super::ValidationError::new(
                "conversations",
                format!("at most {MAX_SYNC_CONVERSATIONS} per sync; sync the rest in another call"),
            ));
        }
        let mut parsed = conversations
            .iter()
            .map(|(id, seq)| {
                Ok((
                    super::ConversationId::parse("conversations", id)?,
                    parse_seq("conversations", *seq)?,
                ))
            })
            .collect::<Result<Vec<_>, super::ValidationError>>()?;
        parsed.sort_unstable_by_key(|(id, _)| *id);
        parsed.dedup_by_key(|(id, _)| *id);
        let since = since
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| super::ValidationError::new("since", "must be an RFC 3339 time"))
            })
            .transpose()?;
        Ok(Self {
            conversations: parsed,
            since,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_replays_or_pages_never_both() {
        assert_eq!(
            JoinRequest::parse(None, None, None, Some(7)),
            Ok(JoinRequest::After(7))
        );
        assert!(matches!(
            JoinRequest::parse(Some(20), None, None, None),
            Ok(JoinRequest::History(_))
        ));
        assert!(JoinRequest::parse(Some(20), None, None, Some(7)).is_err());
        assert!(JoinRequest::parse(None, None, None, Some(-1)).is_err());
    }

    #[test]
    fn a_sync_names_at_most_a_hundred_valid_conversations() {
        let id = crate::domain::ConversationId::new_random().to_string();
        let one = std::collections::HashMap::from([(id.clone(), 3)]);
        let parsed = SyncCommand::parse(&one, Some("2026-12-01T10:00:00.000Z")).expect("valid");
        assert_eq!(parsed.conversations.len(), 1);
        assert!(parsed.since.is_some());
        assert!(SyncCommand::parse(&one, Some("yesterday")).is_err());
        let bad = std::collections::HashMap::from([(id, -3)]);
        assert!(SyncCommand::parse(&bad, None).is_err());
        let many: std::collections::HashMap<String, i64> = (0..101)
            .map(|_| (crate::domain::ConversationId::new_random().to_string(), 0))
            .collect();
        assert!(SyncCommand::parse(&many, None).is_err());
    }
}
