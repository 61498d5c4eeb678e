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
//!
//! Files: this one connects and runs scripts; `keys.rs` is the key layout,
//! `scripts.rs` the Lua scripts and reply decoding, and one file per seam
//! implements it (`presence.rs`, `typing.rs`, `unread.rs`; health and
//! quotas, a few lines each, are here).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use fred::prelude::{
    ClientLike, FromValue, HashesInterface, Key, KeysInterface, LuaInterface, Pool, SetsInterface,
    Value,
};
use fred::types::config::Options;
use fred::types::scripts::Script;
use secrecy::SecretString;

use super::coalesce::Coalescer;
use super::fred_client;
use super::{
    EphemeralError, Health, MessageCommitted, Presence, PresenceState, Quotas, SocketAdmission,
    Swept, TypingState, Typist, Unannounced, UnixMillis, UnreadChanges, UnreadCounters,
    UnreadCounts,
};
use crate::config::RateLimits;
use crate::domain::{ConversationId, MessageId, UserId};
use crate::supervisor::Supervisor;

mod keys;
mod presence;
mod scripts;
mod typing;
mod unread;

use keys::Keys;
use scripts::*;
use unread::unread_changes;

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
        supervisor: &Supervisor,
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
            Coalescer::new(
                "send_quota_batching",
                "try_acquire_send",
                move |users| {
                    let redis = redis.clone();
                    async move { redis.try_acquire_sends(users).await }
                },
                supervisor,
            )
        };
        let commits = {
            let redis = redis.clone();
            Coalescer::new(
                "commit_effects_batching",
                "message_committed",
                move |calls| {
                    let redis = redis.clone();
                    async move { redis.messages_committed(calls).await }
                },
                supervisor,
            )
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
impl Unannounced for RedisEphemeral {
    async fn remember_unannounced(
        &self,
        message: MessageId,
        ttl: Duration,
    ) -> Result<(), EphemeralError> {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        self.redis
            .pool
            .set::<(), _, _>(
                self.redis.keys.unannounced(message),
                1,
                Some(fred::types::Expiration::EX(seconds)),
                None,
                false,
            )
            .await
            .map_err(|e| unavailable("remember_unannounced", e))
    }

    async fn take_unannounced(&self, message: MessageId) -> Result<bool, EphemeralError> {
        let taken: Option<i64> = self
            .redis
            .pool
            .getdel(self.redis.keys.unannounced(message))
            .await
            .map_err(|e| unavailable("take_unannounced", e))?;
        Ok(taken.is_some())
    }
}

#[async_trait]
impl Health for RedisEphemeral {
    async fn ping(&self) -> Result<(), EphemeralError> {
        self.redis
            .pool
            .ping::<()>(None)
            .await
            .map_err(|e| unavailable("ping", e))
    }
}

#[async_trait]
impl Quotas for RedisEphemeral {
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
