//! The key layout (DESIGN.md "Data"), in one place.

use super::*;

/// Key names, `{prefix}{name}`. The Lua scripts that derive keys from stored
/// ids (`dead_nodes`, `claim_node`, `take_expired_typing`) spell the same
/// names: change both together.
pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: String, clustered: bool) -> Self {
        if !clustered {
            return Self { prefix };
        }
        // `{}` is no hash tag at all (Redis hashes the whole key then).
        let tag = if prefix.is_empty() {
            "parloir"
        } else {
            &prefix
        };
        Self {
            prefix: format!("{{{tag}}}"),
        }
    }

    pub(super) fn key(&self, name: std::fmt::Arguments<'_>) -> Key {
        Key::from(format!("{}{}", self.prefix, name))
    }
    /// Hash socketId → nodeId: a user's live sockets cluster-wide.
    pub(super) fn user_sockets(&self, user: &UserId) -> Key {
        self.key(format_args!("presence:user:{user}"))
    }
    /// Hash socketId → userId: the sockets a node holds.
    pub(super) fn node_sockets(&self, node: &str) -> Key {
        self.key(format_args!("presence:sockets:{node}"))
    }
    /// Set of node ids that have heartbeated and not been swept.
    pub(super) fn nodes(&self) -> Key {
        self.key(format_args!("presence:nodes"))
    }
    /// String with a TTL: the node is alive while it exists.
    pub(super) fn node(&self, node: &str) -> Key {
        self.key(format_args!("presence:node:{node}"))
    }
    pub(super) fn last_seen(&self, user: &UserId) -> Key {
        self.key(format_args!("presence:lastseen:{user}"))
    }
    /// Sorted set userId → expiry ms.
    pub(super) fn typing(&self, c: ConversationId) -> Key {
        self.key(format_args!("typing:{c}"))
    }
    pub(super) fn typing_names(&self, c: ConversationId) -> Key {
        self.key(format_args!("typing:names:{c}"))
    }
    pub(super) fn typing_relayed(&self, c: ConversationId) -> Key {
        self.key(format_args!("typing:relayed:{c}"))
    }
    /// Sorted set `{conversationId}|{userId}` → expiry ms, across conversations.
    pub(super) fn typing_expiries(&self) -> Key {
        self.key(format_args!("typing:expiries"))
    }
    /// Set of conversation ids in which the user has a typing state.
    pub(super) fn typing_user(&self, user: &UserId) -> Key {
        self.key(format_args!("typing:user:{user}"))
    }
    /// The five keys of one typing state, in the order of `start_typing.lua`.
    pub(super) fn typing_state(&self, c: ConversationId, user: &UserId) -> Vec<Key> {
        vec![
            self.typing(c),
            self.typing_names(c),
            self.typing_relayed(c),
            self.typing_expiries(),
            self.typing_user(user),
        ]
    }
    /// A message whose sender was told `UNKNOWN_OUTCOME` (with a TTL).
    pub(super) fn unannounced(&self, message: MessageId) -> Key {
        self.key(format_args!("unannounced:{message}"))
    }
    pub(super) fn unread(&self, user: &UserId) -> Key {
        self.key(format_args!("unread:{user}"))
    }
    pub(super) fn rate_send(&self, user: &UserId) -> Key {
        self.key(format_args!("ratelimit:send:{user}"))
    }
    pub(super) fn rate_create(&self, user: &UserId) -> Key {
        self.key(format_args!("ratelimit:create:{user}"))
    }
}
