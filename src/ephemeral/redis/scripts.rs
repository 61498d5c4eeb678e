//! The Lua scripts (`lua/`) and the decoding of what they and Redis answer.

use super::*;

pub(super) struct Lua {
    pub(super) script: Script,
    pub(super) source: &'static str,
}

impl Lua {
    pub(super) fn new(source: &'static str) -> Self {
        Self {
            script: Script::from_lua(source),
            source,
        }
    }
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        /// One field per `lua/{name}.lua`.
        pub(super) struct Scripts {
            $(pub(super) $name: Lua,)*
        }

        impl Scripts {
            pub(super) fn new() -> Self {
                Self {
                    $($name: Lua::new(include_str!(concat!("lua/", stringify!($name), ".lua"))),)*
                }
            }

            pub(super) fn all(&self) -> Vec<&Lua> {
                vec![$(&self.$name),*]
            }
        }
    };
}

scripts!(
    admit_socket,
    socket_disconnected,
    presence,
    heartbeat,
    dead_nodes,
    claim_node,
    start_typing,
    stop_typing,
    typing_in,
    take_expired_typing,
    message_committed,
    replace_unread,
    set_conversation_unread,
    try_acquire_send,
);

/// A reply whose shape does not match the script that produced it.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis")]
pub(super) struct UnexpectedReply;

pub(super) fn unavailable(
    op: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> EphemeralError {
    EphemeralError::Unavailable {
        op,
        source: Box::new(source),
    }
}

pub(super) fn unexpected(op: &'static str) -> EphemeralError {
    unavailable(op, UnexpectedReply)
}

/// Ids read back from Redis were written from valid values; anything else
/// is skipped rather than failing every later sweep on one bad entry.
pub(super) fn stored_user(raw: &str) -> Option<UserId> {
    UserId::parse("userId", raw).ok()
}

pub(super) fn stored_conversation(raw: &str) -> Option<ConversationId> {
    ConversationId::parse("conversationId", raw).ok()
}

pub(super) fn typing_member(c: ConversationId, user: &UserId) -> String {
    format!("{c}|{user}")
}

pub(super) fn nonzero_or(d: Duration, default: Duration) -> Duration {
    if d.is_zero() { default } else { d }
}

pub(super) fn millis(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}

/// Last-seen as Unix milliseconds, with the sub-millisecond nanoseconds as a
/// 6-digit fraction when there are any, so a time reads back exactly as it
/// was given (the dead-node sweep writes plain milliseconds).
pub(super) fn encode_last_seen(t: DateTime<Utc>) -> String {
    let sub_ms_nanos = t.timestamp_subsec_nanos() % 1_000_000;
    if sub_ms_nanos == 0 {
        t.timestamp_millis().to_string()
    } else {
        format!("{}.{sub_ms_nanos:06}", t.timestamp_millis())
    }
}

pub(super) fn decode_last_seen(raw: &str) -> Option<DateTime<Utc>> {
    let (ms, nanos) = match raw.split_once('.') {
        Some((ms, frac)) if frac.len() == 6 => (ms, frac.parse::<i64>().ok()?),
        Some(_) => return None,
        None => (raw, 0),
    };
    DateTime::from_timestamp_millis(ms.parse().ok()?)?
        .checked_add_signed(TimeDelta::nanoseconds(nanos))
}
