//! How this node configures fred, once, for both of its Redis clients: the
//! shared-state pool (`RedisEphemeral`) and the Socket.IO adapter's
//! subscriber (`app`). Both speak RESP3 (sharded pub/sub needs it, and fred
//! does not read `?protocol=` from URLs), bound every command and connection
//! attempt, and reconnect forever with backoff: a node outlives a Redis
//! restart.

use std::time::Duration;

use fred::prelude::{Builder, Config, ReconnectPolicy};
use fred::types::RespVersion;
use secrecy::{ExposeSecret, SecretString};

/// Reconnect backoff: 100 ms, doubling, capped at 5 s, retried forever.
const RECONNECT_MIN_DELAY_MS: u32 = 100;
const RECONNECT_MAX_DELAY_MS: u32 = 5_000;

/// Parses a `REDIS_URL` (host, port, database, credentials, TLS for
/// `rediss://`, a Redis Cluster for `redis-cluster://`) and selects RESP3.
pub fn config(url: &SecretString) -> Result<Config, fred::error::Error> {
    let mut config = Config::from_url(url.expose_secret())?;
    config.version = RespVersion::RESP3;
    Ok(config)
}

/// A client builder with this node's deadlines and reconnection policy.
pub fn builder(config: Config, command_timeout: Duration, connect_timeout: Duration) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|perf| perf.default_command_timeout = command_timeout)
        .with_connection_config(|conn| {
            conn.connection_timeout = connect_timeout;
            conn.internal_command_timeout = connect_timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0, // no limit: keep trying until Redis is back
            RECONNECT_MIN_DELAY_MS,
            RECONNECT_MAX_DELAY_MS,
            2,
        ));
    builder
}
