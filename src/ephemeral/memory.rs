//! In-process ephemeral state for a single node. Short `std::sync::Mutex`
//! sections without `.await` inside (mini-redis `db.rs` explains why a sync
//! mutex is right here); rate limits use `governor`'s keyed GCRA buckets.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{
    EphemeralError, Health, MessageCommitted, Presence, PresenceState, Quotas, SocketAdmission,
    Swept, TypingState, Typist, Unannounced, UnixMillis, UnreadChanges, UnreadCounters,
    UnreadCounts,
};
use crate::config::RateLimits;
use crate::domain::{ConversationId, MessageId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

struct TypingEntry {
    user_name: String,
    expires_at: UnixMillis,
    last_relayed: UnixMillis,
}

/// Users whose last-seen time and unread counters are remembered at once;
/// beyond, the least recently used are forgotten (counters are rebuilt from
/// the store when missing; a forgotten last-seen reads as unknown). Sockets
/// and typing states have owners that remove them.
const MAX_REMEMBERED_USERS: usize = 200_000;

/// Messages of unknown outcome remembered at once; beyond, the least
/// recently remembered are forgotten (their retry then announces nothing;
/// clients still find them in the history).
const MAX_UNANNOUNCED: usize = 10_000;

struct State {
    sockets: HashMap<UserId, HashSet<String>>,
    last_seen: quick_cache::unsync::Cache<UserId, DateTime<Utc>>,
    typing: HashMap<ConversationId, HashMap<UserId, TypingEntry>>,
    unread: quick_cache::unsync::Cache<UserId, UnreadCounts>,
    /// Message → when it stops being remembered.
    unannounced: quick_cache::unsync::Cache<MessageId, tokio::time::Instant>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            sockets: HashMap::new(),
            last_seen: quick_cache::unsync::Cache::new(MAX_REMEMBERED_USERS),
            typing: HashMap::new(),
            unread: quick_cache::unsync::Cache::new(MAX_REMEMBERED_USERS),
            unannounced: quick_cache::unsync::Cache::new(MAX_UNANNOUNCED),
        }
    }
}

pub struct MemoryEphemeral {
    state: Mutex<State>,
    send_limiter: DefaultKeyedRateLimiter<UserId>,
    create_limiter: DefaultKeyedRateLimiter<UserId>,
}

impl MemoryEphemeral {
    pub fn new(limits: &RateLimits) -> Self {
        // `validate()` keeps both at least 1; `MIN` only guards direct construction.
        let per_sec = NonZeroU32::new(limits.send_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.send_burst).unwrap_or(NonZeroU32::MIN);
        let creates = NonZeroU32::new(limits.create_per_min).unwrap_or(NonZeroU32::MIN);
        let create_burst = NonZeroU32::new(limits.create_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            state: Mutex::new(State::default()),
            send_limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            create_limiter: RateLimiter::keyed(
                Quota::per_minute(creates).allow_burst(create_burst),
            ),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave these maps half-updated
        // in a way that matters more than losing the node's ephemeral state;
        // keep serving rather than propagate the poison.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes a token from `user`'s bucket; forgets idle users' buckets now and
/// then so the map stays bounded.
fn take_token(limiter: &DefaultKeyedRateLimiter<UserId>, user: &UserId) -> bool {
    let allowed = limiter.check_key(user).is_ok();
    if limiter.len() > 100_000 {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
    allowed
}

#[async_trait]
impl Unannounced for MemoryEphemeral {
    async fn remember_unannounced(
        &self,
        message: MessageId,
        ttl: Duration,
    ) -> Result<(), EphemeralError> {
        let until = tokio::time::Instant::now() + ttl;
        self.state().unannounced.insert(message, until);
        Ok(())
    }

    async fn take_unannounced(&self, message: MessageId) -> Result<bool, EphemeralError> {
        let removed = self.state().unannounced.remove(&message);
        Ok(removed.is_some_and(|(_, until)| until > tokio::time::Instant::now()))
    }
}

#[async_trait]
impl Health for MemoryEphemeral {
    async fn ping(&self) -> Result<(), EphemeralError> {
        Ok(())
    }
}

#[async_trait]
impl Quotas for MemoryEphemeral {
    async fn try_acquire_send(&self, user: &UserId) -> Result<bool, EphemeralError> {
        Ok(take_token(&self.send_limiter, user))
    }

    async fn try_acquire_create(&self, user: &UserId) -> Result<bool, EphemeralError> {
        Ok(take_token(&self.create_limiter, user))
    }
}

#[async_trait]
impl PresenceState for MemoryEphemeral {
    async fn socket_connected(
        &self,
        user: &UserId,
        socket_id: &str,
    ) -> Result<bool, EphemeralError> {
        let admitted = self.admit_socket(user, socket_id, usize::MAX).await?;
        Ok(admitted == SocketAdmission::First)
    }

    async fn admit_socket(
        &self,
        user: &UserId,
        socket_id: &str,
        cap: usize,
    ) -> Result<SocketAdmission, EphemeralError> {
        let mut state = self.state();
        let sockets = state.sockets.entry(user.clone()).or_default();
        if sockets.len() >= cap && !sockets.contains(socket_id) {
            if sockets.is_empty() {
                state.sockets.remove(user);
            }
            return Ok(SocketAdmission::OverCap);
        }
        let first = sockets.is_empty();
        sockets.insert(socket_id.to_owned());
        Ok(if first {
            SocketAdmission::First
        } else {
            SocketAdmission::Another
        })
    }

    async fn socket_disconnected(
        &self,
        user: &UserId,
        socket_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, EphemeralError> {
        let mut state = self.state();
        let Some(sockets) = state.sockets.get_mut(user) else {
            return Ok(None);
        };
        if !sockets.remove(socket_id) || !sockets.is_empty() {
            return Ok(None);
        }
        state.sockets.remove(user);
        state.last_seen.insert(user.clone(), now);
        Ok(Some(now))
    }

    async fn socket_count(&self, user: &UserId) -> Result<usize, EphemeralError> {
        Ok(self.state().sockets.get(user).map_or(0, HashSet::len))
    }

    async fn presence(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Presence>, EphemeralError> {
        let state = self.state();
        Ok(users
            .iter()
            .map(|u| {
                let online = state.sockets.get(u).is_some_and(|s| !s.is_empty());
                let last_seen = if online {
                    None
                } else {
                    state.last_seen.get(u).copied()
                };
                (u.clone(), Presence { online, last_seen })
            })
            .collect())
    }

    /// A single node's state lives and dies with its process.
    async fn heartbeat(&self, _now: UnixMillis, _ttl: Duration) -> Result<bool, EphemeralError> {
        Ok(false)
    }

    async fn forget_own_sockets(
        &self,
        _now: UnixMillis,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> {
        Ok(Vec::new())
    }

    /// A single node has no peers whose sockets could be orphaned.
    /// One node: no other node to die.
    async fn sweep_dead_nodes(&self, _now: UnixMillis) -> Result<Swept, EphemeralError> {
        Ok(Swept::default())
    }
}

#[async_trait]
impl TypingState for MemoryEphemeral {
    async fn start_typing(
        &self,
        typist: &Typist,
        now: UnixMillis,
        ttl: Duration,
        relay_interval: Duration,
    ) -> Result<bool, EphemeralError> {
        let expires_at = now.saturating_add(millis(ttl));
        let mut state = self.state();
        let room = state.typing.entry(typist.conversation_id).or_default();
        match room.get_mut(&typist.user_id) {
            Some(entry) => {
                entry.expires_at = expires_at;
                entry.user_name.clone_from(&typist.user_name);
                let relay = now - entry.last_relayed >= millis(relay_interval);
                if relay {
                    entry.last_relayed = now;
                }
                Ok(relay)
            }
            None => {
                room.insert(
                    typist.user_id.clone(),
                    TypingEntry {
                        user_name: typist.user_name.clone(),
                        expires_at,
                        last_relayed: now,
                    },
                );
                Ok(true)
            }
        }
    }

    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, EphemeralError> {
        Ok(remove_typing(&mut self.state(), conversation, user))
    }

    async fn typing_conversations_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<ConversationId>, EphemeralError> {
        let state = self.state();
        Ok(state
            .typing
            .iter()
            .filter(|(_, room)| room.contains_key(user))
            .map(|(c, _)| *c)
            .collect())
    }

    async fn typing_in(
        &self,
        conversation: ConversationId,
        now: UnixMillis,
    ) -> Result<Vec<Typist>, EphemeralError> {
        let state = self.state();
        Ok(state
            .typing
            .get(&conversation)
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.expires_at > now)
            .map(|(user, e)| Typist {
                conversation_id: conversation,
                user_id: user.clone(),
                user_name: e.user_name.clone(),
            })
            .collect())
    }

    async fn take_expired_typing(&self, now: UnixMillis) -> Result<Vec<Typist>, EphemeralError> {
        let mut state = self.state();
        let mut expired = Vec::new();
        state.typing.retain(|conversation, room| {
            room.retain(|user, e| {
                let keep = e.expires_at > now;
                if !keep {
                    expired.push(Typist {
                        conversation_id: *conversation,
                        user_id: user.clone(),
                        user_name: std::mem::take(&mut e.user_name),
                    });
                }
                keep
            });
            !room.is_empty()
        });
        Ok(expired)
    }
}

#[async_trait]
impl UnreadCounters for MemoryEphemeral {
    async fn message_committed(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        recipients: &[UserId],
    ) -> Result<MessageCommitted, EphemeralError> {
        let mut state = self.state();
        let sender_was_typing = remove_typing(&mut state, conversation, sender);
        let unread = recipients
            .iter()
            .map(|user| {
                let counts = state.unread.get_mut(user).map(|mut counts| {
                    let c = counts.entry(conversation).or_insert(0);
                    *c += 1;
                    let c = *c;
                    (c, counts.values().sum())
                });
                (user.clone(), counts)
            })
            .collect();
        Ok(MessageCommitted {
            sender_was_typing,
            unread,
        })
    }

    async fn replace_unread(
        &self,
        user: &UserId,
        counts: &UnreadCounts,
    ) -> Result<(), EphemeralError> {
        let mut state = self.state();
        let kept = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (*c, *n))
            .collect();
        state.unread.insert(user.clone(), kept);
        Ok(())
    }

    async fn set_conversation_unread(
        &self,
        conversation: ConversationId,
        counts: &[(UserId, u64)],
    ) -> Result<UnreadChanges, EphemeralError> {
        let mut state = self.state();
        Ok(counts
            .iter()
            .map(|(user, n)| {
                let changed = state.unread.get_mut(user).map(|mut counts| {
                    if *n > 0 {
                        counts.insert(conversation, *n);
                    } else {
                        counts.remove(&conversation);
                    }
                    (*n, counts.values().sum())
                });
                (user.clone(), changed)
            })
            .collect())
    }

    async fn unread(&self, user: &UserId) -> Result<Option<UnreadCounts>, EphemeralError> {
        Ok(self.state().unread.get(user).cloned())
    }

    async fn unread_of(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, UnreadCounts>, EphemeralError> {
        let state = self.state();
        Ok(users
            .iter()
            .filter_map(|u| Some((u.clone(), state.unread.get(u)?.clone())))
            .collect())
    }
}

/// Ends a typing state; true when there was one.
fn remove_typing(state: &mut State, conversation: ConversationId, user: &UserId) -> bool {
    let Some(room) = state.typing.get_mut(&conversation) else {
        return false;
    };
    let was = room.remove(user).is_some();
    if room.is_empty() {
        state.typing.remove(&conversation);
    }
    was
}

fn millis(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}
