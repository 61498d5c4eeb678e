//! The settings as given: flags and their environment variables, unchecked.

use std::path::PathBuf;

use secrecy::SecretString;

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
    /// With a public key (JWT_PUBLIC_KEY_FILE), accept tokens without
    /// checking `iss` and `aud`: any token the identity provider signs, for
    /// any of its services. Refused unless set; set JWT_ISSUER and
    /// JWT_AUDIENCE instead.
    #[arg(
        long,
        env = "PARLOIR_JWT_ACCEPT_ANY_AUDIENCE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub jwt_accept_any_audience: bool,
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
    /// Compress HTTP responses (the API and Socket.IO long-polling) for
    /// clients that accept it: gzip, brotli or zstd, by `Accept-Encoding`.
    #[arg(long, env = "PARLOIR_COMPRESSION", default_value_t = true, action = clap::ArgAction::Set)]
    pub compression: bool,
    /// Bodies at or below this size are sent as they are, in bytes.
    #[arg(long, env = "PARLOIR_COMPRESSION_MIN_BYTES", default_value_t = 1024)]
    pub compression_min_bytes: u64,
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
    /// Seconds a message waits for an absent recipient to come back or read
    /// it before they are notified by webhook or e-mail.
    #[arg(long, env = "PARLOIR_NOTIFY_DELAY_SECS", default_value_t = 60)]
    pub notify_delay_secs: u64,
    /// Attempts per notification before it is marked dead.
    #[arg(long, env = "PARLOIR_NOTIFY_MAX_ATTEMPTS", default_value_t = 8)]
    pub notify_max_attempts: u32,
    /// Seconds before the first retry of a failed notification; doubles per
    /// attempt (with jitter), at most an hour.
    #[arg(long, env = "PARLOIR_NOTIFY_RETRY_BASE_SECS", default_value_t = 10)]
    pub notify_retry_base_secs: u64,
    /// Seconds a node holds a notification it is delivering: one that dies
    /// mid-delivery leaves it to another node after this.
    #[arg(long, env = "PARLOIR_NOTIFY_LEASE_SECS", default_value_t = 60)]
    pub notify_lease_secs: u64,
    /// How often each node looks for notifications to gather and deliver (ms).
    #[arg(long, env = "PARLOIR_NOTIFY_POLL_MS", default_value_t = 1000)]
    pub notify_poll_ms: u64,
    /// Where offline notifications are POSTed (Standard Webhooks). Unset: no webhooks.
    #[arg(long, env = "PARLOIR_WEBHOOK_URL", hide_env_values = true, value_parser = secret)]
    pub webhook_url: Option<SecretString>,
    /// The webhook signing secret (`whsec_` + base64, or any string of at least 16 bytes).
    #[arg(long, env = "PARLOIR_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    pub webhook_secret: Option<SecretString>,
    /// Longest one webhook attempt may take (ms).
    #[arg(long, env = "PARLOIR_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// SMTP server for notification e-mails: `smtp://user:pass@host:587?tls=required`
    /// or `smtps://user:pass@host:465`. Unset: no e-mails.
    #[arg(long, env = "PARLOIR_SMTP_URL", hide_env_values = true, value_parser = secret)]
    pub smtp_url: Option<SecretString>,
    /// The From of notification e-mails, e.g. `parloir <noreply@example.com>`.
    #[arg(long, env = "PARLOIR_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Longest one SMTP delivery may take (ms).
    #[arg(long, env = "PARLOIR_SMTP_TIMEOUT_MS", default_value_t = 10_000)]
    pub smtp_timeout_ms: u64,
    /// Seconds a draining node waits for in-flight work after SIGTERM.
    #[arg(long, env = "PARLOIR_DRAIN_GRACE_SECS", default_value_t = 10)]
    pub drain_grace_secs: u64,
    /// Days without activity after which a conversation is archived.
    #[arg(long, env = "PARLOIR_ARCHIVE_AFTER_DAYS", default_value_t = 90)]
    pub archive_after_days: u32,
    /// Days after its deletion that a soft-deleted message loses its content
    /// and attachments for good.
    #[arg(long, env = "PARLOIR_PURGE_DELETED_AFTER_DAYS", default_value_t = 30)]
    pub purge_deleted_after_days: u32,
    /// Days after which messages are deleted for good. Unset (or empty): kept forever.
    #[arg(long, env = "PARLOIR_MESSAGE_RETENTION_DAYS")]
    pub message_retention_days: Option<String>,
    /// Seconds between two retention runs on each node (one node at a time does the work).
    #[arg(long, env = "PARLOIR_RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    pub retention_interval_secs: u64,
    /// Rows one retention statement changes at most.
    #[arg(long, env = "PARLOIR_RETENTION_BATCH", default_value_t = 500)]
    pub retention_batch: u32,
    /// Days a settled offline notification (sent, cancelled, dead) is kept
    /// before the retention job forgets it.
    #[arg(long, env = "PARLOIR_NOTIFICATIONS_KEPT_DAYS", default_value_t = 30)]
    pub notifications_kept_days: u32,
}

/// Secrets are `SecretString` from the moment they are parsed, so that no
/// `Debug` of the raw settings (or of a clap error) can print them.
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}
