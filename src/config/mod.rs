//! Configuration: flags and environment variables (`raw.rs`), validated once
//! (`validate.rs`) into the typed `Config` defined here. No other module
//! reads the environment. Secrets are `SecretString` from parsing on, so
//! `Debug` output and logs never show them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::{Limits, RetentionPolicy};

mod raw;
mod validate;

pub use raw::RawConfig;

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

/// Offline notifications: their timings and the configured channels.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub settings: crate::service::NotifySettings,
    /// How often each node gathers and delivers.
    pub poll: Duration,
    pub webhook: Option<crate::notify::WebhookSettings>,
    pub smtp: Option<crate::notify::SmtpSettings>,
}

impl NotifyConfig {
    /// No channel: messages leave no outbox entry and no worker runs.
    pub fn disabled() -> Self {
        Self {
            settings: crate::service::NotifySettings::default(),
            poll: Duration::from_secs(1),
            webhook: None,
            smtp: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.webhook.is_some() || self.smtp.is_some()
    }
}

/// The retention job (issue #14): what it keeps, and how often each node
/// tries to run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub policy: RetentionPolicy,
    pub every: Duration,
}

impl Default for RetentionConfig {
    /// The documented defaults: the default policy, every hour.
    fn default() -> Self {
        Self {
            policy: RetentionPolicy::default(),
            every: Duration::from_secs(3600),
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
            notify: NotifyConfig::disabled(),
            retention: RetentionConfig::default(),
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
    fn notification_channels_need_their_companions_and_valid_values() {
        let c = parse(&[]).unwrap();
        assert!(!c.notify.enabled(), "no channel unless configured");

        let hook = ["--webhook-url", "https://hooks.example/parloir?token=t0p"];
        let err = parse(&hook).unwrap_err();
        assert!(
            err.to_string().starts_with("PARLOIR_WEBHOOK_SECRET:"),
            "{err}"
        );
        let err = parse(&[&hook[..], &["--webhook-secret", "short"]].concat()).unwrap_err();
        assert!(err.to_string().contains("at least 16 bytes"), "{err}");
        let err = parse(&[&hook[..], &["--webhook-secret", "whsec_!!"]].concat()).unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let secret = ["--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];
        let c = parse(&[&hook[..], &secret[..]].concat()).unwrap();
        assert!(c.notify.enabled());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("t0p") && !debug.contains("MfKQ9r8"),
            "{debug}"
        );
        let err = parse(&[&["--webhook-url", "ftp://x"][..], &secret[..]].concat()).unwrap_err();
        assert!(err.to_string().starts_with("PARLOIR_WEBHOOK_URL:"), "{err}");
        let err =
            parse(&[&hook[..], &secret[..], &["--notify-lease-secs", "5"]].concat()).unwrap_err();
        assert!(
            err.to_string().starts_with("PARLOIR_NOTIFY_LEASE_SECS:"),
            "{err}"
        );

        let smtp = [
            "--smtp-url",
            "smtp://user:hunter2@mail.example:587?tls=required",
        ];
        let err = parse(&smtp).unwrap_err();
        assert!(err.to_string().starts_with("PARLOIR_SMTP_FROM:"), "{err}");
        let err = parse(&[&smtp[..], &["--smtp-from", "not an address"]].concat()).unwrap_err();
        assert!(err.to_string().starts_with("PARLOIR_SMTP_FROM:"), "{err}");
        let c = parse(&[&smtp[..], &["--smtp-from", "parloir <noreply@example.com>"]].concat())
            .unwrap();
        assert!(c.notify.smtp.is_some());
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = parse(&[
            "--smtp-url",
            "http://mail.example",
            "--smtp-from",
            "noreply@example.com",
        ])
        .unwrap_err();
        assert!(err.to_string().starts_with("PARLOIR_SMTP_URL:"), "{err}");
    }

    #[test]
    fn retention_settings_default_and_are_range_checked() {
        use chrono::TimeDelta;
        let c = parse(&[]).unwrap();
        assert_eq!(c.retention, RetentionConfig::default());
        assert_eq!(c.retention.policy.archive_after, TimeDelta::days(90));
        assert_eq!(c.retention.policy.purge_deleted_after, TimeDelta::days(30));
        assert_eq!(c.retention.policy.delete_after, None);
        assert_eq!(c.retention.policy.batch, 500);
        assert_eq!(c.retention.every, Duration::from_secs(3600));

        let c = parse(&[
            "--archive-after-days",
            "7",
            "--purge-deleted-after-days",
            "0",
            "--message-retention-days",
            "365",
            "--retention-interval-secs",
            "60",
            "--retention-batch",
            "10",
        ])
        .unwrap();
        assert_eq!(c.retention.policy.archive_after, TimeDelta::days(7));
        assert_eq!(c.retention.policy.purge_deleted_after, TimeDelta::zero());
        assert_eq!(c.retention.policy.delete_after, Some(TimeDelta::days(365)));
        assert_eq!(c.retention.policy.batch, 10);
        assert_eq!(c.retention.every, Duration::from_secs(60));
        // Empty is unset: messages are kept.
        let c = parse(&["--message-retention-days", ""]).unwrap();
        assert_eq!(c.retention.policy.delete_after, None);

        for (flag, value, var) in [
            ("--archive-after-days", "0", "PARLOIR_ARCHIVE_AFTER_DAYS"),
            (
                "--archive-after-days",
                "36501",
                "PARLOIR_ARCHIVE_AFTER_DAYS",
            ),
            (
                "--purge-deleted-after-days",
                "36501",
                "PARLOIR_PURGE_DELETED_AFTER_DAYS",
            ),
            (
                "--message-retention-days",
                "0",
                "PARLOIR_MESSAGE_RETENTION_DAYS",
            ),
            (
                "--retention-interval-secs",
                "59",
                "PARLOIR_RETENTION_INTERVAL_SECS",
            ),
            (
                "--message-retention-days",
                "a year",
                "PARLOIR_MESSAGE_RETENTION_DAYS",
            ),
            ("--retention-batch", "0", "PARLOIR_RETENTION_BATCH"),
            ("--retention-batch", "10001", "PARLOIR_RETENTION_BATCH"),
        ] {
            let err = parse(&[flag, value]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{var}:")), "{err}");
        }
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
