//! History paging (`limit`, `before`, `after`) and conversation-list cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::{ConversationId, Message, MessageId, ValidationError};

pub const DEFAULT_PAGE_LIMIT: u32 = 50;
pub const MAX_PAGE_LIMIT: u32 = 100;
pub const DEFAULT_LIST_LIMIT: u32 = 20;

/// A page size from a client: `default` when absent, else 1 to `MAX_PAGE_LIMIT`.
pub fn parse_limit(raw: Option<i64>, default: u32) -> Result<u32, ValidationError> {
    match raw {
        None => Ok(default),
        Some(l) if (1..=i64::from(MAX_PAGE_LIMIT)).contains(&l) => Ok(l as u32),
        Some(_) => Err(ValidationError::new("limit", "must be 1 to 100")),
    }
}

/// A validated request for a page of the caller's conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRequest {
    pub limit: u32,
    pub cursor: Option<ListCursor>,
    /// True: archived conversations only; false (the default): the others.
    pub archived: bool,
}

impl ListRequest {
    pub fn parse(
        limit: Option<i64>,
        cursor: Option<&str>,
        archived: Option<bool>,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            limit: parse_limit(limit, DEFAULT_LIST_LIMIT)?,
            cursor: cursor.map(ListCursor::decode).transpose()?,
            archived: archived.unwrap_or(false),
        })
    }
}

/// A validated history request (PROTOCOL.md §3 `join-conversation`, §6).
///
/// - neither bound: the newest `limit` messages;
/// - `before`: the `limit` messages just older than it; `has_more` = older exist;
/// - `after`: the `limit` messages just newer than it; `has_more` = newer exist;
/// - both: the oldest `limit` messages strictly between them; `has_more` = more in range.
///
/// Messages always come back oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub before: Option<MessageId>,
    pub after: Option<MessageId>,
}

impl PageRequest {
    pub fn parse(
        limit: Option<i64>,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<Self, ValidationError> {
        let limit = parse_limit(limit, DEFAULT_PAGE_LIMIT)?;
        let before = before.map(|b| MessageId::parse("before", b)).transpose()?;
        let after = after.map(|a| MessageId::parse("after", a)).transpose()?;
        Ok(Self {
            limit,
            before,
            after,
        })
    }

    /// The newest page.
    pub fn latest(limit: u32) -> Self {
        Self {
            limit,
            before: None,
            after: None,
        }
    }

    /// True when rows must be read newest first (and then reversed).
    pub fn reads_backwards(&self) -> bool {
        self.after.is_none()
    }
}

/// One page of history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

impl Page {
    /// Builds a page from up to `limit + 1` rows fetched in query order
    /// (newest first when [`PageRequest::reads_backwards`], else oldest first).
    pub fn from_rows(request: &PageRequest, mut rows: Vec<Message>) -> Self {
        let has_more = rows.len() > request.limit as usize;
        rows.truncate(request.limit as usize);
        if request.reads_backwards() {
            rows.reverse();
        }
        Self {
            messages: rows,
            has_more,
        }
    }
}

/// 9999-12-31T23:59:59.999Z, the last time a cursor may carry.
const LATEST_CURSOR_MILLIS: i64 = 253_402_300_799_999;

/// Opaque position in a conversation list ordered by activity, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub activity_at: DateTime<Utc>,
    pub id: ConversationId,
}

impl ListCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.activity_at.timestamp_millis(),
            self.id
        ))
    }

    /// Accepts only what `encode` can have produced: a time in the range
    /// conversations have (1970 to 9999; a crafted time outside what the
    /// database stores would otherwise fail in the query, as a 500).
    pub fn decode(raw: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::new("cursor", "is not a cursor this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let (millis, id) = text.split_once('|').ok_or_else(bad)?;
        let millis: i64 = millis.parse().map_err(|_| bad())?;
        if !(0..=LATEST_CURSOR_MILLIS).contains(&millis) {
            return Err(bad());
        }
        let activity_at = DateTime::from_timestamp_millis(millis).ok_or_else(bad)?;
        let id = ConversationId::parse("cursor", id).map_err(|_| bad())?;
        Ok(Self { activity_at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_time_outside_1970_to_9999_is_refused() {
        let id = ConversationId::new_random();
        let crafted = |millis: i64| URL_SAFE_NO_PAD.encode(format!("{millis}|{id}"));
        for millis in [
            -1_000_000_000_000_000,
            -1,
            LATEST_CURSOR_MILLIS + 1,
            i64::MAX,
        ] {
            assert!(ListCursor::decode(&crafted(millis)).is_err(), "{millis}");
        }
        for millis in [0, 1_764_583_200_000, LATEST_CURSOR_MILLIS] {
            let cursor = ListCursor::decode(&crafted(millis)).expect("in range");
            assert_eq!(cursor.activity_at.timestamp_millis(), millis);
            assert_eq!(ListCursor::decode(&cursor.encode()), Ok(cursor));
        }
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(PageRequest::parse(None, None, None).unwrap().limit, 50);
        assert!(PageRequest::parse(Some(0), None, None).is_err());
        assert!(PageRequest::parse(Some(101), None, None).is_err());
        assert_eq!(
            PageRequest::parse(Some(100), None, None).unwrap().limit,
            100
        );
        assert!(PageRequest::parse(None, Some("nope"), None).is_err());
    }

    #[test]
    fn list_cursor_round_trips_and_rejects_garbage() {
        let c = ListCursor {
            activity_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            id: ConversationId::new_random(),
        };
        assert_eq!(ListCursor::decode(&c.encode()).unwrap(), c);
        assert!(ListCursor::decode("garbage!").is_err());
        assert!(ListCursor::decode(&URL_SAFE_NO_PAD.encode("12|x")).is_err());
    }
}
