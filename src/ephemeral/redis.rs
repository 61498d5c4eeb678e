//! Redis-backed ephemeral state for cluster mode: presence, typing, unread
//! counters and send rate limits, shared by every node through one Redis.
//! Owns the key layout (DESIGN.md "Data") and the Lua scripts in `lua/`:
//! every multi-key update is one script (loaded at connect, run by EVALSHA),
//! never a read-modify-write from the node. No business rules: what to
//! announce, and to whom, is the service's job.
//!
//! Keys are `{prefix}{name}`. On a Redis Cluster the prefix becomes a hash
//! tag (`parloir:` → `{parloir:}`): every key then lives in one slot, so each
//! script's keys — some derived from stored ids inside the script (dead-node
//! sweep, typing expiry) — are in the slot the script runs on. The state
//! therefore sits on one shard; the adapter's pub/sub channels, the bulk of
//! the traffic, spread over all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use fred::prelude::{
    ClientLike, FromValue, HashesInterface, Key, LuaInterface, Pool, SetsInterface, Value,
};
use fred::types::config::Options;
use fred::types::scripts::Script;
use secrecy::SecretString;

use super::coalesce::Coalescer;
use super::fred_client;
use super::{
    Ephemeral, EphemeralError, MessageCommitted, Presence, Typist, UnixMillis, UnreadChanges,
    UnreadCounts,
};
use crate::config::RateLimits;
use crate::domain::{ConversationId, UserId};

/// Used when a timeout setting is zero, which fred would read as "wait forever".
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Expired typing states removed per script call, to keep each call short.
const TYPING_SWEEP_BATCH: usize = 500;
/// How long a user's counters live after their last rebuild from the store
/// (then they are rebuilt on next use). Last-seen times live 90 days (the
/// scripts that write them say so).
const UNREAD_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Field that keeps an `unread:{userId}` hash existing when every count is zero.
const UNREAD_SENTINEL: &str = "_";

/// How to reach Redis. The URL may carry credentials
/// (`redis://user:password@host:6379/0`); `rediss://` means TLS with the
/// system's root certificates.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Connections in the pool (at least 1); commands are spread round-robin.
    pub pool_size: usize,
    /// Deadline of every command, retries included (zero: 1 s).
    pub command_timeout: Duration,
    /// Deadline of the TCP/TLS connection and handshake, at start and on
    /// reconnect (zero: 5 s). `connect` gives up after twice this.
    pub connect_timeout: Duration,
}

pub struct RedisEphemeral {
    redis: Arc<Redis>,
    node_id: String,
    /// `try_acquire_send` of concurrent sends, one script run per batch.
    sends: Coalescer<UserId, bool>,
    /// `message_committed` of concurrent sends, one script run per batch.
    commits: Coalescer<Committed, MessageCommitted>,
}

/// What every call needs: the connections, the key names, the scripts.
struct Redis {
    pool: Pool,
    keys: Keys,
    scripts: Scripts,
    send_per_sec: u32,
    send_burst: u32,
    create_per_min: u32,
    create_burst: u32,
}

/// One `message_committed` call.
struct Committed {
    conversation: ConversationId,
    sender: UserId,
    recipients: Vec<UserId>,
}

impl RedisEphemeral {
    /// Connects the pool (failing fast if Redis cannot be reached within the
    /// connect timeout) and loads the scripts. After that, lost connections
    /// are re-established forever with exponential backoff; commands issued
    /// meanwhile fail with `Unavailable` at their deadline.
    pub async fn connect(
        settings: RedisSettings,
        prefix: String,
        node_id: String,
        rate_limits: &RateLimits,
    ) -> Result<Self, EphemeralError> {
        const OP: &str = "connect";
        let config = fred_client::config(&settings.url).map_err(|e| unavailable(OP, e))?;
        let keys = Keys::new(prefix, config.server.is_clustered());
        let command_timeout = nonzero_or(settings.command_timeout, DEFAULT_COMMAND_TIMEOUT);
        let connect_timeout = nonzero_or(settings.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let pool = fred_client::builder(config, command_timeout, connect_timeout)
            .build_pool(settings.pool_size.max(1))
            .map_err(|e| unavailable(OP, e))?;

        // `fail_fast` (fred's default) makes `init` return the first
        // connection error; the outer deadline covers a handshake that hangs.
        let deadline = connect_timeout.saturating_mul(2);
        match tokio::time::timeout(deadline, pool.init()).await {
            Ok(Ok(_connection_task)) => {}
            Ok(Err(e)) => return Err(unavailable(OP, e)),
            Err(elapsed) => {
                let _ = tokio::time::timeout(deadline, pool.quit()).await;
                return Err(unavailable(OP, elapsed));
            }
        }

        let scripts = Scripts::new();
        for lua in scripts.all() {
            let loaded: Result<String, _> = pool.script_load(lua.source).await;
            if let Err(e) = loaded {
                let _ = pool.quit().await;
                return Err(unavailable(OP, e));
            }
        }

        let redis = Arc::new(Redis {
            pool,
            keys,
            scripts,
            send_per_sec: rate_limits.send_per_sec.max(1),
            send_burst: rate_limits.send_burst.max(1),
            create_per_min: rate_limits.create_per_min.max(1),
            create_burst: rate_limits.create_burst.max(1),
        });
        let sends = {
            let redis = redis.clone();
            Coalescer::new("try_acquire_send", move |users| {
                let redis = redis.clone();
                async move { redis.try_acquire_sends(users).await }
            })
        };
        let commits = {
            let redis = redis.clone();
            Coalescer::new("message_committed", move |calls| {
                let redis = redis.clone();
                async move { redis.messages_committed(calls).await }
            })
        };
        Ok(Self {
            redis,
            node_id,
            sends,
            commits,
        })
    }

    /// What every key of this node starts with: the configured prefix, as a
    /// hash tag on a Redis Cluster.
    pub fn key_prefix(&self) -> &str {
        &self.redis.keys.prefix
    }

    /// Runs `claim_node.lua` for `node`: removes its sockets from their
    /// users and returns the users left with none (last seen at `now`).
    async fn claim_node(
        &self,
        op: &'static str,
        node: &str,
        now: UnixMillis,
        claim: Claim,
    ) -> Result<Vec<UserId>, EphemeralError> {
        let mut args: Vec<Value> = vec![
            node.into(),
            self.redis.keys.prefix.as_str().into(),
            now.into(),
        ];
        if claim == Claim::Own {
            args.push("own".into());
        }
        let users: Vec<String> = self
            .redis
            .eval(
                op,
                &self.redis.scripts.claim_node,
                vec![
                    self.redis.keys.nodes(),
                    self.redis.keys.node(node),
                    self.redis.keys.node_sockets(node),
                ],
                args,
            )
            .await?;
        Ok(users.iter().filter_map(|u| stored_user(u)).collect())
    }
}

/// Whose sockets `claim_node.lua` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// A node found dead: only if it stayed silent and nobody claimed it first.
    Dead,
    /// This node's own id, left by an earlier process: unconditionally.
    Own,
}

impl Redis {
    /// Runs a script by its SHA. If Redis lost its script cache (restart,
    /// failover, `SCRIPT FLUSH`), runs it once by source, which caches it again.
    async fn eval<R: FromValue>(
        &self,
        op: &'static str,
        lua: &Lua,
        keys: Vec<Key>,
        args: Vec<Value>,
    ) -> Result<R, EphemeralError> {
        // Fail at once while the connection is down rather than queue until
        // the command deadline: callers fall back (rate limits fail open,
        // counters are rebuilt), so a Redis outage must not slow every send.
        let client = self.pool.next_connected().with_options(&Options {
            fail_fast: true,
            ..Options::default()
        });
        let by_sha = client
            .evalsha(
                lua.script.sha1().clone(),
                keys.clone(),
                Value::Array(args.clone()),
            )
            .await;
        let result = match by_sha {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                client.eval(lua.source, keys, Value::Array(args)).await
            }
            other => other,
        };
        result.map_err(|e| unavailable(op, e))
    }
}

impl Redis {
    /// Takes one send token per user, in order (a user may repeat).
    async fn try_acquire_sends(&self, users: Vec<UserId>) -> Result<Vec<bool>, EphemeralError> {
        const OP: &str = "try_acquire_send";
        let keys = users.iter().map(|u| self.keys.rate_send(u)).collect();
        let allowed: Vec<i64> = self
            .eval(
                OP,
                &self.scripts.try_acquire_send,
                keys,
                vec![self.send_per_sec.into(), self.send_burst.into()],
            )
            .await?;
        if allowed.len() != users.len() {
            return Err(unexpected(OP));
        }
        Ok(allowed.into_iter().map(|a| a == 1).collect())
    }

    /// The effects of committed messages, in order.
    async fn messages_committed(
        &self,
        calls: Vec<Committed>,
    ) -> Result<Vec<MessageCommitted>, EphemeralError> {
        const OP: &str = "message_committed";
        let mut keys = Vec::new();
        let mut args: Vec<Value> = vec![calls.len().to_string().into()];
        for c in &calls {
            keys.extend(self.keys.typing_state(c.conversation, &c.sender));
            keys.extend(c.recipients.iter().map(|u| self.keys.unread(u)));
            args.extend([
                c.sender.as_str().into(),
                typing_member(c.conversation, &c.sender).into(),
                c.conversation.to_string().into(),
                c.recipients.len().to_string().into(),
            ]);
        }
        let reply: Vec<Value> = self
            .eval(OP, &self.scripts.message_committed, keys, args)
            .await?;
        let mut rest = reply.as_slice();
        let mut out = Vec::with_capacity(calls.len());
        for c in calls {
            let Some((was_typing, tail)) = rest.split_first() else {
                return Err(unexpected(OP));
            };
            let n = c.recipients.len() * 2;
            if tail.len() < n {
                return Err(unexpected(OP));
            }
            let (counts, tail) = tail.split_at(n);
            rest = tail;
            out.push(MessageCommitted {
                sender_was_typing: was_typing.as_i64() == Some(1),
                unread: unread_changes(c.recipients, counts),
            });
        }
        if !rest.is_empty() {
            return Err(unexpected(OP));
        }
        Ok(out)
    }
}

#[async_trait]
impl Ephemeral for RedisEphemeral {
    async fn ping(&self) -> Result<(), EphemeralError> {
        self.redis
            .pool
            .ping::<()>(None)
            .await
            .map_err(|e| unavailable("ping", e))
    }

    async fn try_acquire_send(&self, user: &UserId) -> Result<bool, EphemeralError> {
        self.sends.call(user.clone()).await
    }

    /// Rare enough to go alone: the send bucket's script with the creation
    /// bucket's key and rate.
    async fn try_acquire_create(&self, user: &UserId) -> Result<bool, EphemeralError> {
        const OP: &str = "try_acquire_create";
        let r = &self.redis;
        let per_sec = f64::from(r.create_per_min) / 60.0;
        let allowed: Vec<i64> = r
            .eval(
                OP,
                &r.scripts.try_acquire_send,
                vec![r.keys.rate_create(user)],
                vec![format!("{per_sec:.6}").into(), r.create_burst.into()],
            )
            .await?;
        Ok(allowed.first() == Some(&1))
    }

    async fn socket_count(&self, user: &UserId) -> Result<usize, EphemeralError> {
        let n: u64 = self
            .redis
            .pool
            .hlen(self.redis.keys.user_sockets(user))
            .await
            .map_err(|e| unavailable("socket_count", e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn socket_connected(
        &self,
        user: &UserId,
        socket_id: &str,
    ) -> Result<bool, EphemeralError> {
        let first: i64 = self
            .redis
            .eval(
                "socket_connected",
                &self.redis.scripts.socket_connected,
                vec![
                    self.redis.keys.user_sockets(user),
                    self.redis.keys.node_sockets(&self.node_id),
                ],
                vec![
                    socket_id.into(),
                    self.node_id.as_str().into(),
                    user.as_str().into(),
                ],
            )
            .await?;
        Ok(first == 1)
    }

    async fn socket_disconnected(
        &self,
        user: &UserId,
        socket_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, EphemeralError> {
        let last: i64 = self
            .redis
            .eval(
                "socket_disconnected",
                &self.redis.scripts.socket_disconnected,
                vec![
                    self.redis.keys.user_sockets(user),
                    self.redis.keys.node_sockets(&self.node_id),
                    self.redis.keys.last_seen(user),
                ],
                vec![socket_id.into(), encode_last_seen(now).into()],
            )
            .await?;
        Ok((last == 1).then_some(now))
    }

    async fn presence(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Presence>, EphemeralError> {
        const OP: &str = "presence";
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = users
            .iter()
            .flat_map(|u| {
                [
                    self.redis.keys.user_sockets(u),
                    self.redis.keys.last_seen(u),
                ]
            })
            .collect();
        let reply: Vec<Value> = self
            .redis
            .eval(OP, &self.redis.scripts.presence, keys, Vec::new())
            .await?;
        if reply.len() != users.len() * 2 {
            return Err(unexpected(OP));
        }
        Ok(users
            .iter()
            .zip(reply.chunks_exact(2))
            .map(|(user, pair)| {
                let online = pair.first().and_then(Value::as_i64) == Some(1);
                let last_seen = if online {
                    None
                } else {
                    pair.get(1)
                        .and_then(Value::as_str)
                        .and_then(|s| decode_last_seen(&s))
                };
                (user.clone(), Presence { online, last_seen })
            })
            .collect())
    }

    async fn heartbeat(&self, now: UnixMillis, ttl: Duration) -> Result<bool, EphemeralError> {
        let added: i64 = self
            .redis
            .eval(
                "heartbeat",
                &self.redis.scripts.heartbeat,
                vec![self.redis.keys.nodes(), self.redis.keys.node(&self.node_id)],
                vec![
                    self.node_id.as_str().into(),
                    millis(ttl).max(1).into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(added == 1)
    }

    /// `claim_node.lua` without its "is it dead, and is it mine to claim"
    /// guards: the node forgets its own sockets.
    async fn forget_own_sockets(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> {
        const OP: &str = "forget_own_sockets";
        let last_seen = DateTime::from_timestamp_millis(now).ok_or_else(|| unexpected(OP))?;
        let users = self.claim_node(OP, &self.node_id, now, Claim::Own).await?;
        Ok(users.into_iter().map(|u| (u, last_seen)).collect())
    }

    /// Liveness is the node key's TTL, counted by the Redis clock; `now` is
    /// only the last-seen time given to the users who go offline.
    async fn sweep_dead_nodes(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> {
        const OP: &str = "sweep_dead_nodes";
        let last_seen = DateTime::from_timestamp_millis(now).ok_or_else(|| unexpected(OP))?;
        let dead: Vec<String> = self
            .redis
            .eval(
                OP,
                &self.redis.scripts.dead_nodes,
                vec![self.redis.keys.nodes()],
                vec![self.redis.keys.prefix.as_str().into()],
            )
            .await?;
        let mut gone = Vec::new();
        for node in dead {
            match self.claim_node(OP, &node, now, Claim::Dead).await {
                Ok(users) => gone.extend(users.into_iter().map(|u| (u, last_seen))),
                Err(e) if gone.is_empty() => return Err(e),
                // Users already claimed must still be announced; the node
                // that failed stays registered and is retried next sweep.
                Err(e) => {
                    tracing::warn!(error = %e, "dead-node sweep interrupted");
                    break;
                }
            }
        }
        Ok(gone)
    }

    async fn start_typing(
        &self,
        typist: &Typist,
        now: UnixMillis,
        ttl: Duration,
        relay_interval: Duration,
    ) -> Result<bool, EphemeralError> {
        let (c, u) = (typist.conversation_id, &typist.user_id);
        let relay: i64 = self
            .redis
            .eval(
                "start_typing",
                &self.redis.scripts.start_typing,
                self.redis.keys.typing_state(c, u),
                vec![
                    u.as_str().into(),
                    typist.user_name.as_str().into(),
                    now.into(),
                    now.saturating_add(millis(ttl)).into(),
                    millis(relay_interval).into(),
                    typing_member(c, u).into(),
                    c.to_string().into(),
                ],
            )
            .await?;
        Ok(relay == 1)
    }

    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, EphemeralError> {
        let removed: i64 = self
            .redis
            .eval(
                "stop_typing",
                &self.redis.scripts.stop_typing,
                self.redis.keys.typing_state(conversation, user),
                vec![
                    user.as_str().into(),
                    typing_member(conversation, user).into(),
                    conversation.to_string().into(),
                ],
            )
            .await?;
        Ok(removed == 1)
    }

    async fn typing_conversations_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<ConversationId>, EphemeralError> {
        let ids: Vec<String> = self
            .redis
            .pool
            .smembers(self.redis.keys.typing_user(user))
            .await
            .map_err(|e| unavailable("typing_conversations_of", e))?;
        Ok(ids.iter().filter_map(|c| stored_conversation(c)).collect())
    }

    async fn typing_in(
        &self,
        conversation: ConversationId,
        now: UnixMillis,
    ) -> Result<Vec<Typist>, EphemeralError> {
        let reply: Vec<Value> = self
            .redis
            .eval(
                "typing_in",
                &self.redis.scripts.typing_in,
                vec![
                    self.redis.keys.typing(conversation),
                    self.redis.keys.typing_names(conversation),
                ],
                vec![now.into()],
            )
            .await?;
        Ok(reply
            .chunks_exact(2)
            .filter_map(|pair| {
                let [user, name] = pair else { return None };
                Some(Typist {
                    conversation_id: conversation,
                    user_id: stored_user(&user.as_str()?)?,
                    user_name: name.as_string().unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn take_expired_typing(&self, now: UnixMillis) -> Result<Vec<Typist>, EphemeralError> {
        let mut expired = Vec::new();
        loop {
            let batch: Result<Vec<Value>, _> = self
                .redis
                .eval(
                    "take_expired_typing",
                    &self.redis.scripts.take_expired_typing,
                    vec![self.redis.keys.typing_expiries()],
                    vec![
                        now.into(),
                        TYPING_SWEEP_BATCH.to_string().into(),
                        self.redis.keys.prefix.as_str().into(),
                    ],
                )
                .await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) if expired.is_empty() => return Err(e),
                // What was already removed must still be announced; the rest
                // is taken by the next sweep.
                Err(e) => {
                    tracing::warn!(error = %e, "typing sweep interrupted");
                    break;
                }
            };
            let taken = batch.len() / 3;
            expired.extend(batch.chunks_exact(3).filter_map(|triple| {
                let [c, u, name] = triple else { return None };
                Some(Typist {
                    conversation_id: stored_conversation(&c.as_str()?)?,
                    user_id: stored_user(&u.as_str()?)?,
                    user_name: name.as_string().unwrap_or_default(),
                })
            }));
            if taken < TYPING_SWEEP_BATCH {
                break;
            }
        }
        Ok(expired)
    }

    async fn message_committed(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        recipients: &[UserId],
    ) -> Result<MessageCommitted, EphemeralError> {
        self.commits
            .call(Committed {
                conversation,
                sender: sender.clone(),
                recipients: recipients.to_vec(),
            })
            .await
    }

    async fn replace_unread(
        &self,
        user: &UserId,
        counts: &UnreadCounts,
    ) -> Result<(), EphemeralError> {
        let mut args = Vec::with_capacity(counts.len() * 2 + 1);
        args.push(millis(UNREAD_LIFETIME).into());
        for (conversation, n) in counts.iter().filter(|(_, n)| **n > 0) {
            args.push(conversation.to_string().into());
            args.push(n.to_string().into());
        }
        self.redis
            .eval::<()>(
                "replace_unread",
                &self.redis.scripts.replace_unread,
                vec![self.redis.keys.unread(user)],
                args,
            )
            .await
    }

    async fn set_conversation_unread(
        &self,
        conversation: ConversationId,
        counts: &[(UserId, u64)],
    ) -> Result<UnreadChanges, EphemeralError> {
        const OP: &str = "set_conversation_unread";
        if counts.is_empty() {
            return Ok(Vec::new());
        }
        let keys = counts
            .iter()
            .map(|(u, _)| self.redis.keys.unread(u))
            .collect();
        let mut args: Vec<Value> = Vec::with_capacity(counts.len() + 1);
        args.push(conversation.to_string().into());
        args.extend(counts.iter().map(|(_, n)| n.to_string().into()));
        let reply: Vec<Value> = self
            .redis
            .eval(OP, &self.redis.scripts.set_conversation_unread, keys, args)
            .await?;
        if reply.len() != counts.len() * 2 {
            return Err(unexpected(OP));
        }
        Ok(unread_changes(
            counts.iter().map(|(u, _)| u.clone()),
            &reply,
        ))
    }

    async fn unread(&self, user: &UserId) -> Result<Option<UnreadCounts>, EphemeralError> {
        let fields: HashMap<String, String> = self
            .redis
            .pool
            .hgetall(self.redis.keys.unread(user))
            .await
            .map_err(|e| unavailable("unread", e))?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            fields
                .iter()
                .filter(|(field, _)| field.as_str() != UNREAD_SENTINEL)
                .filter_map(|(field, n)| {
                    let n: u64 = n.parse().ok()?;
                    Some((stored_conversation(field)?, n)).filter(|_| n > 0)
                })
                .collect(),
        ))
    }
}

/// Pairs each user with its `count, total` from a script's reply (`-1, -1`
/// for missing counters: `None`).
fn unread_changes(users: impl IntoIterator<Item = UserId>, reply: &[Value]) -> UnreadChanges {
    users
        .into_iter()
        .zip(reply.chunks_exact(2))
        .map(|(user, pair)| {
            let count = pair.first().and_then(Value::as_i64);
            let total = pair.get(1).and_then(Value::as_i64);
            let counts = match (count, total) {
                (Some(c), Some(t)) => u64::try_from(c).ok().zip(u64::try_from(t).ok()),
                _ => None,
            };
            (user, counts)
        })
        .collect()
}

/// Key names, `{prefix}{name}`. The Lua scripts that derive keys from stored
/// ids (`dead_nodes`, `claim_node`, `take_expired_typing`) spell the same
/// names: change both together.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: String, clustered: bool) -> Self {
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

    fn key(&self, name: std::fmt::Arguments<'_>) -> Key {
        Key::from(format!("{}{}", self.prefix, name))
    }
    /// Hash socketId → nodeId: a user's live sockets cluster-wide.
    fn user_sockets(&self, user: &UserId) -> Key {
        self.key(format_args!("presence:user:{user}"))
    }
    /// Hash socketId → userId: the sockets a node holds.
    fn node_sockets(&self, node: &str) -> Key {
        self.key(format_args!("presence:sockets:{node}"))
    }
    /// Set of node ids that have heartbeated and not been swept.
    fn nodes(&self) -> Key {
        self.key(format_args!("presence:nodes"))
    }
    /// String with a TTL: the node is alive while it exists.
    fn node(&self, node: &str) -> Key {
        self.key(format_args!("presence:node:{node}"))
    }
    fn last_seen(&self, user: &UserId) -> Key {
        self.key(format_args!("presence:lastseen:{user}"))
    }
    /// Sorted set userId → expiry ms.
    fn typing(&self, c: ConversationId) -> Key {
        self.key(format_args!("typing:{c}"))
    }
    fn typing_names(&self, c: ConversationId) -> Key {
        self.key(format_args!("typing:names:{c}"))
    }
    fn typing_relayed(&self, c: ConversationId) -> Key {
        self.key(format_args!("typing:relayed:{c}"))
    }
    /// Sorted set `{conversationId}|{userId}` → expiry ms, across conversations.
    fn typing_expiries(&self) -> Key {
        self.key(format_args!("typing:expiries"))
    }
    /// Set of conversation ids in which the user has a typing state.
    fn typing_user(&self, user: &UserId) -> Key {
        self.key(format_args!("typing:user:{user}"))
    }
    /// The five keys of one typing state, in the order of `start_typing.lua`.
    fn typing_state(&self, c: ConversationId, user: &UserId) -> Vec<Key> {
        vec![
            self.typing(c),
            self.typing_names(c),
            self.typing_relayed(c),
            self.typing_expiries(),
            self.typing_user(user),
        ]
    }
    fn unread(&self, user: &UserId) -> Key {
        self.key(format_args!("unread:{user}"))
    }
    fn rate_send(&self, user: &UserId) -> Key {
        self.key(format_args!("ratelimit:send:{user}"))
    }
    fn rate_create(&self, user: &UserId) -> Key {
        self.key(format_args!("ratelimit:create:{user}"))
    }
}

struct Lua {
    script: Script,
    source: &'static str,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Self {
            script: Script::from_lua(source),
            source,
        }
    }
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        /// One field per `lua/{name}.lua`.
        struct Scripts {
            $($name: Lua,)*
        }

        impl Scripts {
            fn new() -> Self {
                Self {
                    $($name: Lua::new(include_str!(concat!("lua/", stringify!($name), ".lua"))),)*
                }
            }

            fn all(&self) -> Vec<&Lua> {
                vec![$(&self.$name),*]
            }
        }
    };
}

scripts!(
    socket_connected,
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
struct UnexpectedReply;

fn unavailable(
    op: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> EphemeralError {
    EphemeralError::Unavailable {
        op,
        source: Box::new(source),
    }
}

fn unexpected(op: &'static str) -> EphemeralError {
    unavailable(op, UnexpectedReply)
}

/// Ids read back from Redis were written from valid values; anything else
/// is skipped rather than failing every later sweep on one bad entry.
fn stored_user(raw: &str) -> Option<UserId> {
    UserId::parse("userId", raw).ok()
}

fn stored_conversation(raw: &str) -> Option<ConversationId> {
    ConversationId::parse("conversationId", raw).ok()
}

fn typing_member(c: ConversationId, user: &UserId) -> String {
    format!("{c}|{user}")
}

fn nonzero_or(d: Duration, default: Duration) -> Duration {
    if d.is_zero() { default } else { d }
}

fn millis(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}

/// Last-seen as Unix milliseconds, with the sub-millisecond nanoseconds as a
/// 6-digit fraction when there are any, so a time reads back exactly as it
/// was given (the dead-node sweep writes plain milliseconds).
fn encode_last_seen(t: DateTime<Utc>) -> String {
    let sub_ms_nanos = t.timestamp_subsec_nanos() % 1_000_000;
    if sub_ms_nanos == 0 {
        t.timestamp_millis().to_string()
    } else {
        format!("{}.{sub_ms_nanos:06}", t.timestamp_millis())
    }
}

fn decode_last_seen(raw: &str) -> Option<DateTime<Utc>> {
    let (ms, nanos) = match raw.split_once('.') {
        Some((ms, frac)) if frac.len() == 6 => (ms, frac.parse::<i64>().ok()?),
        Some(_) => return None,
        None => (raw, 0),
    };
    DateTime::from_timestamp_millis(ms.parse().ok()?)?
        .checked_add_signed(TimeDelta::nanoseconds(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_keys_share_one_hash_tag() {
        assert_eq!(Keys::new("parloir:".into(), false).prefix, "parloir:");
        assert_eq!(Keys::new("parloir:".into(), true).prefix, "{parloir:}");
        assert_eq!(Keys::new(String::new(), true).prefix, "{parloir}");
    }

    #[test]
    fn last_seen_reads_back_exactly() {
        for t in [
            Utc::now(),
            DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            DateTime::from_timestamp(-1, 999_999_999).unwrap(),
            DateTime::from_timestamp(0, 1).unwrap(),
        ] {
            assert_eq!(decode_last_seen(&encode_last_seen(t)), Some(t), "{t:?}");
        }
        assert_eq!(
            decode_last_seen("1700000000123"),
            DateTime::from_timestamp_millis(1_700_000_000_123)
        );
        assert_eq!(decode_last_seen(""), None);
        assert_eq!(decode_last_seen("12.3"), None);
    }
}
