//! Configuration: flags and environment variables (`raw.rs`), validated once
//! (`validate.rs`; the notification and retention settings with their types
//! in `notifications.rs` and `retention.rs`) into the typed `Config` defined
//! here. No other module
//! reads the environment. Secrets are `SecretString` from parsing on, so
//! `Debug` output and logs never show them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::Limits;

mod notifications;
mod raw;
mod retention;
mod validate;

pub use notifications::NotifyConfig;
pub use raw::RawConfig;
pub use retention::RetentionConfig;

/// Where presence, typing, unread counters and rate limits live, and how
/// room broadcasts reach other nodes.
#[derive(Debug, Clone)]
pub enum SharedState {
    /// One node: in-process state and the in-process Socket.IO adapter.
    InProcess,
    /// A cluster: Redis state and the Redis Socket.IO adapter.
    Redis(RedisConfig),
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretString,
    pub pool_size: usize,
    pub command_timeout: Duration,
    pub prefix: String,
    pub heartbeat: Duration,
    pub node_ttl: Duration,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite { path: PathBuf },
    Postgres { url: SecretString },
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// HS256. `generated` is true in dev mode, where the secret lives in the data dir.
    Hs256 {
        secret: SecretString,
        generated: bool,
    },
    /// RS256 or ES256 with a PEM public key.
    PublicKey {
        algorithm: jsonwebtoken::Algorithm,
        pem: Vec<u8>,
    },
    /// Dev mode before the secret file is read: `app` loads or creates it.
    DevGenerated { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub send_per_sec: u32,
    pub send_burst: u32,
    /// Conversation creations per minute per user, and the burst.
    pub create_per_min: u32,
    pub create_burst: u32,
    /// `user-typing` is relayed at most once per this interval per user and conversation.
    pub typing_relay_interval: Duration,
}

/// What one client may ask of a node besides sends and creations (which are
/// `RateLimits`, kept in shared state): past any of these the answer is
/// `RATE_LIMITED` / 429, or a refused handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    pub socket_events_per_sec: u32,
    pub socket_event_burst: u32,
    pub socket_events_in_flight: usize,
    pub http_requests_per_sec: u32,
    pub http_request_burst: u32,
    pub max_sockets_per_user: usize,
    pub handshakes_per_sec: u32,
    pub handshake_burst: u32,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Budgets {
    /// Limits no test client meets (tests that check a budget lower it).
    pub fn generous() -> Self {
        Self {
            socket_events_per_sec: 10_000,
            socket_event_burst: 10_000,
            socket_events_in_flight: 1024,
            http_requests_per_sec: 10_000,
            http_request_burst: 10_000,
            max_sockets_per_user: 1024,
            handshakes_per_sec: 10_000,
            handshake_burst: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Validated configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub store: StoreConfig,
    pub shared: SharedState,
    /// Unique per process; names this node in presence and logs.
    pub node_id: String,
    pub data_dir: PathBuf,
    pub jwt: JwtConfig,
    /// No JWT secret or key configured: dev conveniences are on (generated
    /// secret, `http://` attachments, any CORS origin).
    pub dev_mode: bool,
    pub cors: CorsOrigins,
    pub limits: Limits,
    pub max_frame_bytes: usize,
    /// HTTP responses larger than this many bytes are compressed for
    /// clients that accept it; `None`: never.
    pub compress_above: Option<u64>,
    pub rate_limits: RateLimits,
    pub typing_ttl: Duration,
    pub migrate_on_start: bool,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    pub db_statement_timeout: Duration,
    pub drain_grace: Duration,
    pub otlp: crate::telemetry::Otlp,
    /// 0: no participant cache.
    pub participant_cache_size: usize,
    /// Most messages in one group commit (1: no batching).
    pub store_batch_max: usize,
    /// Group commits in flight at once on Postgres.
    pub store_concurrent_commits: usize,
    /// Sends in progress beyond which a node refuses new ones.
    pub max_sends_in_flight: usize,
    pub budgets: Budgets,
    pub notify: NotifyConfig,
    pub retention: RetentionConfig,
}

/// A setting that cannot be used. The message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error(
        "REDIS_URL: cluster mode needs a Postgres DATABASE_URL (several nodes cannot share a SQLite file)"
    )]
    RedisNeedsPostgres,
}

pub(crate) fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        reason: reason.into(),
    }
}

impl Config {
    /// What an operator should know about settings that are valid but
    /// risky, each said once at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.bind.ip().is_loopback() && self.budgets.trusted_proxies.is_empty() {
            warnings.push(format!(
                "PARLOIR_BIND={} takes connections from other hosts, and PARLOIR_TRUSTED_PROXIES is \
                 empty: behind a load balancer or ingress, every client then shares the proxy's \
                 address and its handshake budget (PARLOIR_HANDSHAKES_PER_SEC), so one client can \
                 stop everybody's handshakes. Set PARLOIR_TRUSTED_PROXIES to the proxies' addresses \
                 (their X-Forwarded-For then names the client), or ignore this if clients connect \
                 directly.",
                self.bind
            ));
        }
        warnings
    }

    /// A node for tests: port 0 on loopback, the given store and HS256
    /// secret, production defaults otherwise except a 1.5 s typing TTL so
    /// expiry tests finish quickly.
    pub fn for_tests(store: StoreConfig, jwt_secret: &str) -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: std::env::temp_dir(),
            store,
            shared: SharedState::InProcess,
            node_id: uuid::Uuid::new_v4().simple().to_string(),
            jwt: JwtConfig {
                key: JwtKey::Hs256 {
                    secret: SecretString::from(jwt_secret.to_owned()),
                    generated: false,
                },
                issuer: None,
                audience: None,
                leeway_secs: 0,
            },
            dev_mode: false,
            cors: CorsOrigins::Any,
            limits: Limits::default(),
            max_frame_bytes: 64 * 1024,
            compress_above: Some(1024),
            rate_limits: RateLimits {
                send_per_sec: 10,
                send_burst: 20,
                create_per_min: 10_000,
                create_burst: 10_000,
                typing_relay_interval: Duration::from_secs(1),
            },
            typing_ttl: Duration::from_millis(1500),
            migrate_on_start: true,
            db_max_connections: 10,
            db_acquire_timeout: Duration::from_secs(3),
            db_statement_timeout: Duration::from_secs(5),
            drain_grace: Duration::from_secs(5),
            otlp: crate::telemetry::Otlp::Disabled,
            participant_cache_size: 10_000,
            store_batch_max: 256,
            store_concurrent_commits: 1,
            max_sends_in_flight: 1024,
            budgets: Budgets::generous(),
            notify: NotifyConfig::disabled(),
            retention: RetentionConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests;
