//! Channel names. Every channel of a namespace starts with
//! `{prefix}{namespace}#`, so one subscriber connection can serve several
//! namespaces and route each message by that part alone:
//!
//! - `{prefix}{ns}#all`: requests for every server, and broadcasts that name
//!   no room (or too many rooms to split);
//! - `{prefix}{ns}#node#{server id}`: requests and responses for one server;
//! - `{prefix}{ns}#room#{room}`: broadcasts to one room, subscribed only by
//!   the servers that hold a socket in it.
//!
//! With Redis Cluster a channel lives in the slot of its name, so rooms spread
//! over the shards. That is why the prefix may not carry a hash tag (`{…}`):
//! it would pin every channel to one slot.

use socketioxide_core::Uid;

#[derive(Debug, Clone)]
pub(crate) struct Channels {
    /// `{prefix}{ns}#`
    base: String,
}

impl Channels {
    pub fn new(prefix: &str, namespace: &str) -> Self {
        Self {
            base: format!("{prefix}{namespace}#"),
        }
    }

    pub fn all(&self) -> String {
        format!("{}all", self.base)
    }

    pub fn node(&self, uid: Uid) -> String {
        format!("{}node#{uid}", self.base)
    }

    pub fn room(&self, room: &str) -> String {
        format!("{}room#{room}", self.base)
    }
}

/// The namespace a channel belongs to, given the prefix every channel starts with.
pub(crate) fn namespace_of<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    let rest = channel.strip_prefix(prefix)?;
    rest.split_once('#').map(|(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_route_back_to_their_namespace() {
        let c = Channels::new("app:", "/chat");
        assert_eq!(c.all(), "app:/chat#all");
        let room = c.room("conversation-1#2");
        assert_eq!(room, "app:/chat#room#conversation-1#2");
        assert_eq!(namespace_of("app:", &room), Some("/chat"));
        assert_eq!(namespace_of("app:", &c.node(Uid::new())), Some("/chat"));
        assert_eq!(namespace_of("other:", &room), None);
        assert_eq!(namespace_of("app:", "app:/no-separator"), None);
    }
}
