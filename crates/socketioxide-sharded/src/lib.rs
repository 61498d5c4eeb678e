//! # socketioxide-sharded
//!
//! A [socketioxide] adapter for servers that share a Redis — standalone or a
//! Redis Cluster — through **sharded pub/sub**, routing every broadcast **by
//! room**: a server receives a broadcast only when it holds at least one
//! socket in one of the broadcast's rooms. Adding servers then adds message
//! capacity, not only connection capacity, and with Redis Cluster the room
//! channels spread over the shards.
//!
//! It is the "dynamic" mode of Socket.IO's sharded Redis adapter, for
//! socketioxide: a channel per room, subscribed while the server has sockets
//! in the room. (socketioxide-redis publishes every broadcast of a namespace
//! on one channel that every server subscribes to and decodes.)
//!
//! ```no_run
//! # use socketioxide::{SocketIo, extract::SocketRef, adapter::Adapter};
//! # use socketioxide_sharded::{ShardedAdapter, ShardedAdapterCtr, ShardedConfig};
//! # async fn doc() -> Result<(), Box<dyn std::error::Error>> {
//! use fred::prelude::*;
//! let mut config = Config::from_url("redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001")?;
//! config.version = fred::types::RespVersion::RESP3; // sharded pub/sub needs RESP3 in fred
//! let client = Builder::from_config(config).build_subscriber_client()?;
//! client.init().await?;
//! let ctr = ShardedAdapterCtr::new(client, ShardedConfig::default())?;
//! let (layer, io) = SocketIo::builder().with_adapter::<ShardedAdapter<_>>(ctr).build_layer();
//! io.ns("/", async |s: SocketRef<ShardedAdapter<_>>| {
//!     // Join through the adapter so that it subscribes the room (and waits
//!     // for the subscription): `s.join(..)` alone bypasses adapters.
//!     let _ = s.local().join("room").await;
//! }).await?;
//! # Ok(()) }
//! ```
//!
//! ## Rules of use
//! - **Join through the adapter**: `socket.local().join(rooms).await` (or
//!   `io.to(..).join(..)`). socketioxide's `socket.join(..)` changes the local
//!   rooms without telling any adapter; a room joined that way is never
//!   subscribed, so broadcasts to it from other servers do not arrive. That
//!   is also how to keep a room local on purpose (a socket's private room
//!   used only in `except`, say).
//! - Leaving needs nothing: `socket.local().leave(..)` unsubscribes at once; a
//!   room emptied by `socket.leave(..)` or by disconnections is unsubscribed
//!   at the next sweep (`ShardedConfig::sweep_interval`).
//! - A broadcast to more than `max_rooms_per_split` rooms goes to every server.
//! - Operations other than broadcasts (acks, `fetch_sockets`, `rooms`,
//!   `disconnect`, remote joins) go to every server, as in socketioxide-redis;
//!   joins requested for sockets of other servers subscribe there eventually,
//!   not before the call returns.
//! - The prefix must not contain a hash tag (`{`, `}`): it would put every
//!   channel in one Redis Cluster slot.
//!
//! ## Failures
//! A broadcast reaches the local sockets first; publishing to Redis fails at
//! once while the connection is down (the error is returned). After a
//! reconnection — a restarted Redis, a shard that failed over — every
//! channel of every namespace is subscribed again. A resharding that moves
//! a slot while connections stay up is not detected (Redis drops those
//! subscriptions with a push message that fred does not surface).
//!
//! [socketioxide]: https://docs.rs/socketioxide

mod adapter;
mod channels;
mod dispatch;
mod interest;
mod spawn;
mod stats;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use socketioxide_core::adapter::errors::AdapterError;

pub use adapter::{InitRes, ShardedAdapter};
pub use spawn::{Spawner, TaskStart, TokioSpawner};
pub use stats::{Stats, StatsSnapshot};

/// Settings of the adapter.
#[derive(Clone)]
pub struct ShardedConfig {
    /// Starts every channel name. No `{` or `}`. Default `"socket.io#"`.
    pub prefix: String,
    /// How long requests that expect answers (acks, `fetch_sockets`,
    /// `rooms`) wait for them, and the deadline of a (un)subscription.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// Deadline of one publish; zero leaves fred's default command timeout.
    /// Default 500 ms.
    pub publish_timeout: Duration,
    /// A broadcast to more rooms than this is sent once to every server
    /// instead of once per room. Default 16.
    pub max_rooms_per_split: usize,
    /// How often subscribed rooms are checked for local sockets (rooms
    /// emptied without the adapter knowing are unsubscribed then), and
    /// failed subscriptions retried. Default 10 s.
    pub sweep_interval: Duration,
    /// Room for early acks of a broadcast with acks. Default 255.
    pub ack_response_buffer: usize,
    /// Runs the adapter's long-lived tasks (the message reader, the
    /// reconnection watcher, each namespace's subscription task). Default:
    /// each spawned once on the current Tokio runtime. A server that
    /// supervises its tasks gives its own, which may start a task again
    /// after it panicked: every task resumes from the adapter's shared state.
    pub spawner: Arc<dyn Spawner>,
}

impl std::fmt::Debug for ShardedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedConfig")
            .field("prefix", &self.prefix)
            .field("request_timeout", &self.request_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .field("max_rooms_per_split", &self.max_rooms_per_split)
            .field("sweep_interval", &self.sweep_interval)
            .field("ack_response_buffer", &self.ack_response_buffer)
            .finish_non_exhaustive()
    }
}

impl Default for ShardedConfig {
    fn default() -> Self {
        Self {
            prefix: "socket.io#".to_owned(),
            request_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_millis(500),
            max_rooms_per_split: 16,
            sweep_interval: Duration::from_secs(10),
            ack_response_buffer: 255,
            spawner: Arc::new(TokioSpawner),
        }
    }
}

/// Builds the adapter of every namespace of one `SocketIo`; they share its
/// Redis connection, its message reader and its [`Stats`].
#[derive(Clone)]
pub struct ShardedAdapterCtr {
    shared: Arc<dispatch::Shared>,
}

impl ShardedAdapterCtr {
    /// Takes a connected fred subscriber client (RESP3: fred speaks sharded
    /// pub/sub over RESP3 only). Every message this server receives passes
    /// through the client's broadcast channel: size it for bursts
    /// (`PerformanceConfig::broadcast_channel_capacity`), or messages are
    /// lost and counted in [`StatsSnapshot::dropped`].
    ///
    /// Must be called within a Tokio runtime (it starts the message reader).
    pub fn new(
        client: fred::clients::SubscriberClient,
        config: ShardedConfig,
    ) -> Result<Self, ConfigError> {
        if config.prefix.contains(['{', '}']) {
            return Err(ConfigError::HashTagInPrefix);
        }
        if config.sweep_interval.is_zero() {
            return Err(ConfigError::ZeroSweepInterval);
        }
        Ok(Self {
            shared: dispatch::Shared::start(client, config),
        })
    }

    /// This server's adapter counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }
}

/// An invalid [`ShardedConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the channel prefix must not contain a hash tag ('{{' or '}}'): it would put every channel in one Redis Cluster slot"
    )]
    HashTagInPrefix,
    #[error("the sweep interval must not be zero")]
    ZeroSweepInterval,
}

/// An adapter operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("encoding an adapter message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

impl From<Error> for AdapterError {
    fn from(e: Error) -> Self {
        AdapterError::from(Box::new(e) as Box<dyn std::error::Error + Send>)
    }
}

/// A namespace whose adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("malformed namespace path: empty, or contains '#'")]
    MalformedNamespace,
    #[error("subscribing the namespace's channels: {0}")]
    Redis(fred::error::Error),
}
