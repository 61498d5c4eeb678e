//! Configuration: flags and environment variables, validated once into a
//! typed `Config`. No other module reads the environment. Secrets are
//! `SecretString`, so `Debug` output and logs never show them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::Limits;

/// Raw settings as given on the command line or in the environment.
/// Every flag has an environment variable; the README lists them all.
#[derive(Debug, Clone, clap::Args)]
pub struct RawConfig {
    /// Address the HTTP and Socket.IO listener binds to.
    #[arg(long, env = "PARLOIR_BIND", default_value = "127.0.0.1:3000")]
    pub bind: String,
    /// Postgres URL. Unset: embedded SQLite under the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: Option<SecretString>,
    /// Directory for the SQLite file and the generated dev JWT secret.
    #[arg(long, env = "PARLOIR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Redis URL (cluster mode, with a Postgres DATABASE_URL): one Redis
    /// (`redis://`, `rediss://`) or a Redis Cluster
    /// (`redis-cluster://host:port?node=host:port&node=...`, `rediss-cluster://`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: Option<SecretString>,
    /// Redis connections in the pool used for presence, typing, counters and limits.
    #[arg(long, env = "PARLOIR_REDIS_POOL_SIZE", default_value_t = 4)]
    pub redis_pool_size: usize,
    /// Deadline of every Redis command, in milliseconds.
    #[arg(long, env = "PARLOIR_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// Prefix of every Redis key and pub/sub channel (several deployments may share a Redis).
    #[arg(long, env = "PARLOIR_REDIS_PREFIX", default_value = "parloir:")]
    pub redis_prefix: String,
    /// This node's id in the cluster (default: a random id per process).
    #[arg(long, env = "PARLOIR_NODE_ID")]
    pub node_id: Option<String>,
    /// Interval of this node's liveness heartbeat, in milliseconds.
    #[arg(long, env = "PARLOIR_HEARTBEAT_MS", default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// A node whose heartbeat is older than this is dead: its sockets are
    /// swept and its users go offline (milliseconds).
    #[arg(long, env = "PARLOIR_NODE_TTL_MS", default_value_t = 20_000)]
    pub node_ttl_ms: u64,
    /// Dev mode (no JWT_SECRET or key file) on an address other than
    /// loopback. Without it such a node refuses to start: dev tokens can be
    /// minted by anyone who reaches the node's demo page.
    #[arg(long = "dev-mode", env = "PARLOIR_DEV_MODE", default_value_t = false, action = clap::ArgAction::Set)]
    pub dev_mode_anywhere: bool,
    /// HS256 secret (at least 32 bytes). Unset, and no public key: dev mode.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<SecretString>,
    /// PEM public key file for RS256 or ES256 tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// RS256 or ES256 (with JWT_PUBLIC_KEY_FILE); HS256 (with JWT_SECRET).
    #[arg(long, env = "JWT_ALGORITHM")]
    pub jwt_algorithm: Option<String>,
    /// Required `iss` claim, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp`.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 0)]
    pub jwt_leeway_secs: u64,
    /// Comma-separated browser origins allowed by CORS (`*` for any).
    /// Unset: any origin in dev mode, none otherwise.
    #[arg(long, env = "PARLOIR_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    #[arg(long, env = "PARLOIR_MAX_CONTENT_CHARS", default_value_t = 4000)]
    pub max_content_chars: usize,
    #[arg(long, env = "PARLOIR_MAX_ATTACHMENTS", default_value_t = 10)]
    pub max_attachments: usize,
    #[arg(long, env = "PARLOIR_MAX_PARTICIPANTS", default_value_t = 100)]
    pub max_participants: usize,
    /// Largest Socket.IO packet (websocket message or polling payload) and HTTP body, in bytes.
    #[arg(long, env = "PARLOIR_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Sustained `send-message` rate per user (messages per second).
    #[arg(long, env = "PARLOIR_SEND_RATE_PER_SEC", default_value_t = 10)]
    pub send_rate_per_sec: u32,
    /// Burst of `send-message` allowed per user above the sustained rate.
    #[arg(long, env = "PARLOIR_SEND_BURST", default_value_t = 20)]
    pub send_burst: u32,
    /// Conversations one user may create per minute, cluster-wide (sustained).
    #[arg(long, env = "PARLOIR_CREATE_RATE_PER_MIN", default_value_t = 30)]
    pub create_rate_per_min: u32,
    /// Burst of conversation creations above the sustained rate.
    #[arg(long, env = "PARLOIR_CREATE_BURST", default_value_t = 10)]
    pub create_burst: u32,
    /// Events per second one socket may send (any event), sustained.
    #[arg(long, env = "PARLOIR_SOCKET_EVENTS_PER_SEC", default_value_t = 50)]
    pub socket_events_per_sec: u32,
    /// Burst of events one socket may send above the sustained rate.
    #[arg(long, env = "PARLOIR_SOCKET_EVENT_BURST", default_value_t = 100)]
    pub socket_event_burst: u32,
    /// Events of one socket handled at once; more are refused at once.
    #[arg(long, env = "PARLOIR_SOCKET_EVENTS_IN_FLIGHT", default_value_t = 16)]
    pub socket_events_in_flight: usize,
    /// HTTP API requests per second one user may make on one node, sustained.
    #[arg(long, env = "PARLOIR_HTTP_REQUESTS_PER_SEC", default_value_t = 20)]
    pub http_requests_per_sec: u32,
    /// Burst of HTTP API requests above the sustained rate.
    #[arg(long, env = "PARLOIR_HTTP_REQUEST_BURST", default_value_t = 60)]
    pub http_request_burst: u32,
    /// Sockets one user may hold at once, cluster-wide.
    #[arg(long, env = "PARLOIR_MAX_SOCKETS_PER_USER", default_value_t = 20)]
    pub max_sockets_per_user: usize,
    /// New Socket.IO connections per second from one client address, on one node.
    #[arg(long, env = "PARLOIR_HANDSHAKES_PER_SEC", default_value_t = 20)]
    pub handshakes_per_sec: u32,
    /// Burst of connections from one client address above the sustained rate.
    #[arg(long, env = "PARLOIR_HANDSHAKE_BURST", default_value_t = 100)]
    pub handshake_burst: u32,
    /// Proxies (IP addresses or CIDR blocks, comma-separated) whose
    /// `X-Forwarded-For` names the client; from anyone else it is ignored.
    #[arg(long, env = "PARLOIR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Typing state lifetime without a repeat, in milliseconds.
    #[arg(long, env = "PARLOIR_TYPING_TTL_MS", default_value_t = 5000)]
    pub typing_ttl_ms: u64,
    /// Apply migrations when `serve` starts.
    #[arg(long, env = "PARLOIR_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    #[arg(long, env = "PARLOIR_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    #[arg(long, env = "PARLOIR_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
    /// Longest a Postgres statement may run before the server cancels it.
    #[arg(long, env = "PARLOIR_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_statement_timeout_ms: u64,
    /// OTLP/gRPC collector for spans (e.g. http://otel-collector:4317). Unset: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_endpoint: Option<String>,
    /// Service name on exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "parloir")]
    pub otel_service_name: String,
    /// Conversations whose participants are kept in memory (0 turns the cache off).
    #[arg(
        long,
        env = "PARLOIR_PARTICIPANT_CACHE_SIZE",
        default_value_t = 100_000
    )]
    pub participant_cache_size: usize,
    /// Sends a node works on at once; beyond this, sends are refused with
    /// UNAVAILABLE at once instead of queueing (load shedding).
    #[arg(long, env = "PARLOIR_MAX_SENDS_IN_FLIGHT", default_value_t = 1024)]
    pub max_sends_in_flight: usize,
    /// Most messages committed together (group commit); 1 commits every send alone.
    #[arg(long, env = "PARLOIR_STORE_BATCH_MAX", default_value_t = 256)]
    pub store_batch_max: usize,
    /// Group commits in flight at once on Postgres (SQLite has one writer: always 1).
    #[arg(long, env = "PARLOIR_STORE_CONCURRENT_COMMITS", default_value_t = 1)]
    pub store_concurrent_commits: usize,
    /// Seconds a draining node waits for in-flight work after SIGTERM.
    #[arg(long, env = "PARLOIR_DRAIN_GRACE_SECS", default_value_t = 10)]
    pub drain_grace_secs: u64,
}

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

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        reason: reason.into(),
    }
}

const MIN_HS256_SECRET_BYTES: usize = 32;

/// Secrets are `SecretString` from the moment they are parsed, so that no
/// `Debug` of the raw settings (or of a clap error) can print them.
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let bind: SocketAddr = self
            .bind
            .parse()
            .map_err(|_| invalid("PARLOIR_BIND", "must be an address like 127.0.0.1:3000"))?;
        let store = match self.database_url {
            Some(url)
                if url.expose_secret().starts_with("postgres://")
                    || url.expose_secret().starts_with("postgresql://") =>
            {
                StoreConfig::Postgres { url }
            }
            Some(_) => {
                return Err(invalid(
                    "DATABASE_URL",
                    "must be a postgres:// URL (unset it for embedded SQLite)",
                ));
            }
            None => StoreConfig::Sqlite {
                path: self.data_dir.join("parloir.db"),
            },
        };
        let shared = match (self.redis_url, &store) {
            (None, _) => SharedState::InProcess,
            (Some(_), StoreConfig::Sqlite { .. }) => return Err(ConfigError::RedisNeedsPostgres),
            (Some(url), StoreConfig::Postgres { .. }) => {
                const SCHEMES: [&str; 4] = [
                    "redis://",
                    "rediss://",
                    "redis-cluster://",
                    "rediss-cluster://",
                ];
                if !SCHEMES
                    .iter()
                    .any(|scheme| url.expose_secret().starts_with(scheme))
                {
                    return Err(invalid(
                        "REDIS_URL",
                        "must be a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL",
                    ));
                }
                // Hash tags are the node's to place (cluster mode tags the
                // keys itself); one in the prefix would put every adapter
                // channel in one Redis Cluster slot.
                if self.redis_prefix.contains(['{', '}']) {
                    return Err(invalid(
                        "PARLOIR_REDIS_PREFIX",
                        "must not contain '{' or '}'",
                    ));
                }
                if !(1..=256).contains(&self.redis_pool_size) {
                    return Err(invalid("PARLOIR_REDIS_POOL_SIZE", "must be 1 to 256"));
                }
                if !(10..=60_000).contains(&self.redis_timeout_ms) {
                    return Err(invalid("PARLOIR_REDIS_TIMEOUT_MS", "must be 10 to 60000"));
                }
                if !(100..=60_000).contains(&self.heartbeat_ms) {
                    return Err(invalid("PARLOIR_HEARTBEAT_MS", "must be 100 to 60000"));
                }
                if self.node_ttl_ms < 2 * self.heartbeat_ms || self.node_ttl_ms > 600_000 {
                    return Err(invalid(
                        "PARLOIR_NODE_TTL_MS",
                        "must be at least twice PARLOIR_HEARTBEAT_MS and at most 600000",
                    ));
                }
                SharedState::Redis(RedisConfig {
                    url,
                    pool_size: self.redis_pool_size,
                    command_timeout: Duration::from_millis(self.redis_timeout_ms),
                    prefix: self.redis_prefix,
                    heartbeat: Duration::from_millis(self.heartbeat_ms),
                    node_ttl: Duration::from_millis(self.node_ttl_ms),
                })
            }
        };
        let node_id = match self.node_id {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                id
            }
            Some(_) => {
                return Err(invalid(
                    "PARLOIR_NODE_ID",
                    "must be 1 to 64 characters of [A-Za-z0-9._-]",
                ));
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let key = match (self.jwt_secret, self.jwt_public_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "JWT_SECRET",
                    "set either JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both",
                ));
            }
            (Some(secret), None) => {
                if secret.expose_secret().len() < MIN_HS256_SECRET_BYTES {
                    return Err(invalid("JWT_SECRET", "must be at least 32 bytes"));
                }
                match self.jwt_algorithm.as_deref() {
                    None | Some("HS256") => {}
                    Some(_) => {
                        return Err(invalid("JWT_ALGORITHM", "must be HS256 with JWT_SECRET"));
                    }
                }
                JwtKey::Hs256 {
                    secret,
                    generated: false,
                }
            }
            (None, Some(path)) => {
                let algorithm = match self.jwt_algorithm.as_deref() {
                    None | Some("RS256") => jsonwebtoken::Algorithm::RS256,
                    Some("ES256") => jsonwebtoken::Algorithm::ES256,
                    Some(_) => {
                        return Err(invalid(
                            "JWT_ALGORITHM",
                            "must be RS256 or ES256 with JWT_PUBLIC_KEY_FILE",
                        ));
                    }
                };
                // Read once at start-up, before the runtime serves anything.
                let pem = std::fs::read(&path).map_err(|e| {
                    invalid(
                        "JWT_PUBLIC_KEY_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                JwtKey::PublicKey { algorithm, pem }
            }
            (None, None) => JwtKey::DevGenerated {
                path: self.data_dir.join("dev-jwt-secret"),
            },
        };
        let dev_mode = matches!(key, JwtKey::DevGenerated { .. });
        if dev_mode && !bind.ip().is_loopback() && !self.dev_mode_anywhere {
            return Err(invalid(
                "JWT_SECRET",
                format!(
                    "unset (and no JWT_PUBLIC_KEY_FILE): that is dev mode, where anyone who reaches \
                     the node can mint tokens, and PARLOIR_BIND={bind} is not a loopback address; \
                     set JWT_SECRET, or PARLOIR_DEV_MODE=true to serve dev mode there anyway"
                ),
            ));
        }
        let cors = match self.cors_origins.as_slice() {
            [] if dev_mode => CorsOrigins::Any,
            [one] if one == "*" => CorsOrigins::Any,
            origins => {
                for o in origins {
                    if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/')
                    {
                        return Err(invalid(
                            "PARLOIR_CORS_ORIGINS",
                            format!("{o:?} is not an origin like https://app.example.com"),
                        ));
                    }
                }
                CorsOrigins::List(origins.to_vec())
            }
        };
        let in_range = |var, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(invalid(var, format!("must be {lo} to {hi}")))
            }
        };
        let limits = Limits {
            max_content_chars: in_range(
                "PARLOIR_MAX_CONTENT_CHARS",
                self.max_content_chars,
                1,
                100_000,
            )?,
            max_attachments: in_range("PARLOIR_MAX_ATTACHMENTS", self.max_attachments, 0, 100)?,
            max_participants: in_range(
                "PARLOIR_MAX_PARTICIPANTS",
                self.max_participants,
                2,
                10_000,
            )?,
            allow_http_attachments: dev_mode,
            ..Limits::default()
        };
        let max_frame_bytes = in_range(
            "PARLOIR_MAX_FRAME_BYTES",
            self.max_frame_bytes,
            1024,
            16 * 1024 * 1024,
        )?;
        let send_per_sec = in_range(
            "PARLOIR_SEND_RATE_PER_SEC",
            self.send_rate_per_sec as usize,
            1,
            1_000_000,
        )? as u32;
        let send_burst =
            in_range("PARLOIR_SEND_BURST", self.send_burst as usize, 1, 1_000_000)? as u32;
        let per_sec = |var, v: u32| in_range(var, v as usize, 1, 1_000_000).map(|v| v as u32);
        let create_per_min = per_sec("PARLOIR_CREATE_RATE_PER_MIN", self.create_rate_per_min)?;
        let create_burst = per_sec("PARLOIR_CREATE_BURST", self.create_burst)?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "PARLOIR_TRUSTED_PROXIES",
                            format!("{p:?} is not an IP address or a CIDR block"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let budgets = Budgets {
            socket_events_per_sec: per_sec(
                "PARLOIR_SOCKET_EVENTS_PER_SEC",
                self.socket_events_per_sec,
            )?,
            socket_event_burst: per_sec("PARLOIR_SOCKET_EVENT_BURST", self.socket_event_burst)?,
            socket_events_in_flight: in_range(
                "PARLOIR_SOCKET_EVENTS_IN_FLIGHT",
                self.socket_events_in_flight,
                1,
                100_000,
            )?,
            http_requests_per_sec: per_sec(
                "PARLOIR_HTTP_REQUESTS_PER_SEC",
                self.http_requests_per_sec,
            )?,
            http_request_burst: per_sec("PARLOIR_HTTP_REQUEST_BURST", self.http_request_burst)?,
            max_sockets_per_user: in_range(
                "PARLOIR_MAX_SOCKETS_PER_USER",
                self.max_sockets_per_user,
                1,
                100_000,
            )?,
            handshakes_per_sec: per_sec("PARLOIR_HANDSHAKES_PER_SEC", self.handshakes_per_sec)?,
            handshake_burst: per_sec("PARLOIR_HANDSHAKE_BURST", self.handshake_burst)?,
            trusted_proxies,
        };
        let typing_ttl_ms = in_range(
            "PARLOIR_TYPING_TTL_MS",
            self.typing_ttl_ms as usize,
            100,
            600_000,
        )?;
        let db_max_connections = in_range(
            "PARLOIR_DB_MAX_CONNECTIONS",
            self.db_max_connections as usize,
            1,
            1000,
        )? as u32;
        let acquire_ms = in_range(
            "PARLOIR_DB_ACQUIRE_TIMEOUT_MS",
            self.db_acquire_timeout_ms as usize,
            10,
            600_000,
        )?;
        let statement_ms = in_range(
            "PARLOIR_DB_STATEMENT_TIMEOUT_MS",
            self.db_statement_timeout_ms as usize,
            100,
            600_000,
        )?;
        let drain_secs = in_range(
            "PARLOIR_DRAIN_GRACE_SECS",
            self.drain_grace_secs as usize,
            0,
            3600,
        )?;
        Ok(Config {
            bind,
            store,
            shared,
            node_id,
            data_dir: self.data_dir,
            jwt: JwtConfig {
                key,
                issuer: self.jwt_issuer.filter(|s| !s.is_empty()),
                audience: self.jwt_audience.filter(|s| !s.is_empty()),
                leeway_secs: self.jwt_leeway_secs,
            },
            dev_mode,
            cors,
            limits,
            max_frame_bytes,
            rate_limits: RateLimits {
                send_per_sec,
                send_burst,
                create_per_min,
                create_burst,
                typing_relay_interval: Duration::from_secs(1),
            },
            budgets,
            typing_ttl: Duration::from_millis(typing_ttl_ms as u64),
            migrate_on_start: self.migrate_on_start,
            db_max_connections,
            db_acquire_timeout: Duration::from_millis(acquire_ms as u64),
            db_statement_timeout: Duration::from_millis(statement_ms as u64),
            drain_grace: Duration::from_secs(drain_secs as u64),
            participant_cache_size: in_range(
                "PARLOIR_PARTICIPANT_CACHE_SIZE",
                self.participant_cache_size,
                0,
                10_000_000,
            )?,
            store_batch_max: in_range("PARLOIR_STORE_BATCH_MAX", self.store_batch_max, 1, 4096)?,
            store_concurrent_commits: in_range(
                "PARLOIR_STORE_CONCURRENT_COMMITS",
                self.store_concurrent_commits,
                1,
                256,
            )?,
            max_sends_in_flight: in_range(
                "PARLOIR_MAX_SENDS_IN_FLIGHT",
                self.max_sends_in_flight,
                1,
                1_000_000,
            )?,
            otlp: match self.otel_endpoint.filter(|e| !e.is_empty()) {
                None => crate::telemetry::Otlp::Disabled,
                Some(endpoint)
                    if endpoint.starts_with("http://") || endpoint.starts_with("https://") =>
                {
                    crate::telemetry::Otlp::Enabled {
                        endpoint,
                        service_name: self.otel_service_name,
                    }
                }
                Some(_) => {
                    return Err(invalid(
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                        "must be an http(s):// URL",
                    ));
                }
            },
        })
    }
}

impl Config {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        raw: RawConfig,
    }

    /// Parses flags only: the environment is ignored (tests run with
    /// `DATABASE_URL` and friends exported by scripts/test).
    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        use clap::{CommandFactory, FromArgMatches};
        let mut argv = vec!["parloir"];
        argv.extend_from_slice(args);
        let matches = Cli::command()
            .mut_args(|a| a.env(None::<&'static str>))
            .try_get_matches_from(argv)
            .expect("flags parse");
        Cli::from_arg_matches(&matches)
            .expect("flags map")
            .raw
            .validate()
    }

    #[test]
    fn raw_settings_never_print_their_secrets() {
        use clap::{CommandFactory, FromArgMatches};
        let argv = [
            "parloir",
            "--database-url",
            "postgres://parloir:db-password-1@db/parloir",
            "--redis-url",
            "redis://:redis-password-2@redis:6379",
            "--jwt-secret",
            "jwt-secret-3-jwt-secret-3-jwt-secret-3",
        ];
        let matches = Cli::command()
            .mut_args(|a| a.env(None::<&'static str>))
            .try_get_matches_from(argv)
            .expect("flags parse");
        let raw = Cli::from_arg_matches(&matches).expect("flags map").raw;
        let printed = format!("{raw:?}");
        for secret in ["db-password-1", "redis-password-2", "jwt-secret-3"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
    }

    #[test]
    fn defaults_are_the_embedded_dev_node() {
        let c = parse(&[]).unwrap();
        assert!(c.dev_mode);
        assert!(matches!(c.store, StoreConfig::Sqlite { .. }));
        assert_eq!(c.cors, CorsOrigins::Any);
        assert!(c.limits.allow_http_attachments);
        assert_eq!(c.bind.port(), 3000);
    }

    #[test]
    fn dev_mode_listens_on_loopback_unless_asked_for() {
        let err = parse(&["--bind", "0.0.0.0:3000"]).unwrap_err();
        assert!(err.to_string().starts_with("JWT_SECRET:"), "{err}");
        assert!(err.to_string().contains("PARLOIR_DEV_MODE=true"), "{err}");
        assert!(parse(&["--bind", "[::1]:3000"]).is_ok());
        assert!(parse(&["--bind", "0.0.0.0:3000", "--dev-mode", "true"]).is_ok());
        let secret = "s".repeat(32);
        assert!(parse(&["--bind", "0.0.0.0:3000", "--jwt-secret", &secret]).is_ok());
    }

    #[test]
    fn short_secret_names_the_variable() {
        let err = parse(&["--jwt-secret", "short"]).unwrap_err();
        assert!(err.to_string().starts_with("JWT_SECRET:"), "{err}");
    }

    #[test]
    fn redis_urls_name_one_redis_or_a_cluster() {
        let pg = ["--database-url", "postgres://localhost/parloir"];
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://user:pw@redis.example:6380",
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002",
            "rediss-cluster://redis.example:7000",
        ] {
            let c = parse(&[&pg[..], &["--redis-url", url]].concat())
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(matches!(c.shared, SharedState::Redis(_)), "{url}");
        }
        let err = parse(&[&pg[..], &["--redis-url", "http://127.0.0.1"]].concat()).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
        let err = parse(
            &[
                &pg[..],
                &[
                    "--redis-url",
                    "redis://127.0.0.1",
                    "--redis-prefix",
                    "{app}:",
                ],
            ]
            .concat(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("PARLOIR_REDIS_PREFIX"), "{err}");
    }

    #[test]
    fn redis_with_sqlite_is_refused() {
        let err = parse(&["--redis-url", "redis://127.0.0.1"]).unwrap_err();
        assert!(matches!(err, ConfigError::RedisNeedsPostgres));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = parse(&[
            "--jwt-secret",
            &"s3cr3t".repeat(8),
            "--database-url",
            "postgres://u:hunter2@db/x",
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert!(!c.dev_mode);
        assert_eq!(c.cors, CorsOrigins::List(vec![]));
    }

    #[test]
    fn out_of_range_limit_is_refused() {
        let err = parse(&["--max-participants", "1"]).unwrap_err();
        assert!(
            err.to_string().starts_with("PARLOIR_MAX_PARTICIPANTS:"),
            "{err}"
        );
    }
}
