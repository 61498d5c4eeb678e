//! Turning [`RawConfig`] into a [`Config`]: one function per concern, each
//! naming the variable it refuses.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{
    Budgets, Config, ConfigError, CorsOrigins, JwtConfig, JwtKey, RateLimits, RawConfig,
    RedisConfig, SharedState, StoreConfig, invalid,
};
use crate::domain::Limits;
use crate::telemetry::Otlp;

const MIN_HS256_SECRET_BYTES: usize = 32;

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let bind: SocketAddr = self
            .bind
            .parse()
            .map_err(|_| invalid("PARLOIR_BIND", "must be an address like 127.0.0.1:3000"))?;
        let store = store(self.database_url.clone(), &self.data_dir)?;
        let shared = self.shared_state(&store)?;
        let key = self.jwt_key()?;
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
        let issuer = self.jwt_issuer.clone().filter(|s| !s.is_empty());
        let audience = self.jwt_audience.clone().filter(|s| !s.is_empty());
        // A public key is usually an identity provider's, which signs tokens
        // for many services: without `iss` and `aud` checks, a token minted
        // for any of them would open this one.
        if matches!(key, JwtKey::PublicKey { .. })
            && (issuer.is_none() || audience.is_none())
            && !self.jwt_accept_any_audience
        {
            return Err(invalid(
                if issuer.is_none() {
                    "JWT_ISSUER"
                } else {
                    "JWT_AUDIENCE"
                },
                "required with JWT_PUBLIC_KEY_FILE (with both unset, tokens the key's issuer minted \
                 for any other service are accepted); set JWT_ISSUER and JWT_AUDIENCE, or \
                 PARLOIR_JWT_ACCEPT_ANY_AUDIENCE=true to accept them anyway",
            ));
        }
        Ok(Config {
            bind,
            store,
            shared,
            node_id: self.node_id()?,
            jwt: JwtConfig {
                key,
                issuer,
                audience,
                leeway_secs: self.jwt_leeway_secs,
            },
            dev_mode,
            cors: self.cors(dev_mode)?,
            limits: self.limits(dev_mode)?,
            max_frame_bytes: in_range(
                "PARLOIR_MAX_FRAME_BYTES",
                self.max_frame_bytes,
                1024..=16 * 1024 * 1024,
            )?,
            compress_above: if self.compression {
                Some(in_range(
                    "PARLOIR_COMPRESSION_MIN_BYTES",
                    self.compression_min_bytes,
                    0..=16 * 1024 * 1024,
                )?)
            } else {
                None
            },
            rate_limits: self.rate_limits()?,
            budgets: self.budgets()?,
            typing_ttl: millis("PARLOIR_TYPING_TTL_MS", self.typing_ttl_ms, 100..=600_000)?,
            migrate_on_start: self.migrate_on_start,
            db_max_connections: in_range(
                "PARLOIR_DB_MAX_CONNECTIONS",
                self.db_max_connections,
                1..=1000,
            )?,
            db_acquire_timeout: millis(
                "PARLOIR_DB_ACQUIRE_TIMEOUT_MS",
                self.db_acquire_timeout_ms,
                10..=600_000,
            )?,
            db_statement_timeout: millis(
                "PARLOIR_DB_STATEMENT_TIMEOUT_MS",
                self.db_statement_timeout_ms,
                100..=600_000,
            )?,
            drain_grace: Duration::from_secs(in_range(
                "PARLOIR_DRAIN_GRACE_SECS",
                self.drain_grace_secs,
                0..=3600,
            )?),
            participant_cache_size: in_range(
                "PARLOIR_PARTICIPANT_CACHE_SIZE",
                self.participant_cache_size,
                0..=10_000_000,
            )?,
            store_batch_max: in_range("PARLOIR_STORE_BATCH_MAX", self.store_batch_max, 1..=4096)?,
            store_concurrent_commits: in_range(
                "PARLOIR_STORE_CONCURRENT_COMMITS",
                self.store_concurrent_commits,
                1..=256,
            )?,
            max_sends_in_flight: in_range(
                "PARLOIR_MAX_SENDS_IN_FLIGHT",
                self.max_sends_in_flight,
                1..=1_000_000,
            )?,
            otlp: self.otlp()?,
            notify: self.notify()?,
            retention: self.retention()?,
            data_dir: self.data_dir,
        })
    }

    fn shared_state(&self, store: &StoreConfig) -> Result<SharedState, ConfigError> {
        let Some(url) = &self.redis_url else {
            return Ok(SharedState::InProcess);
        };
        if matches!(store, StoreConfig::Sqlite { .. }) {
            return Err(ConfigError::RedisNeedsPostgres);
        }
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
        // Hash tags are the node's to place (cluster mode tags the keys
        // itself); one in the prefix would put every adapter channel in one
        // Redis Cluster slot.
        if self.redis_prefix.contains(['{', '}']) {
            return Err(invalid(
                "PARLOIR_REDIS_PREFIX",
                "must not contain '{' or '}'",
            ));
        }
        let heartbeat = millis("PARLOIR_HEARTBEAT_MS", self.heartbeat_ms, 100..=60_000)?;
        if self.node_ttl_ms < 2 * self.heartbeat_ms || self.node_ttl_ms > 600_000 {
            return Err(invalid(
                "PARLOIR_NODE_TTL_MS",
                "must be at least twice PARLOIR_HEARTBEAT_MS and at most 600000",
            ));
        }
        Ok(SharedState::Redis(RedisConfig {
            url: url.clone(),
            pool_size: in_range("PARLOIR_REDIS_POOL_SIZE", self.redis_pool_size, 1..=256)?,
            command_timeout: millis(
                "PARLOIR_REDIS_TIMEOUT_MS",
                self.redis_timeout_ms,
                10..=60_000,
            )?,
            prefix: self.redis_prefix.clone(),
            heartbeat,
            node_ttl: Duration::from_millis(self.node_ttl_ms),
        }))
    }

    fn node_id(&self) -> Result<String, ConfigError> {
        match &self.node_id {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                Ok(id.clone())
            }
            Some(_) => Err(invalid(
                "PARLOIR_NODE_ID",
                "must be 1 to 64 characters of [A-Za-z0-9._-]",
            )),
            None => Ok(uuid::Uuid::new_v4().simple().to_string()),
        }
    }

    fn jwt_key(&self) -> Result<JwtKey, ConfigError> {
        match (&self.jwt_secret, &self.jwt_public_key_file) {
            (Some(_), Some(_)) => Err(invalid(
                "JWT_SECRET",
                "set either JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both",
            )),
            (Some(secret), None) => {
                if secret.expose_secret().len() < MIN_HS256_SECRET_BYTES {
                    return Err(invalid("JWT_SECRET", "must be at least 32 bytes"));
                }
                match self.jwt_algorithm.as_deref() {
                    None | Some("HS256") => Ok(JwtKey::Hs256 {
                        secret: secret.clone(),
                        generated: false,
                    }),
                    Some(_) => Err(invalid("JWT_ALGORITHM", "must be HS256 with JWT_SECRET")),
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
                let pem = std::fs::read(path).map_err(|e| {
                    invalid(
                        "JWT_PUBLIC_KEY_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Ok(JwtKey::PublicKey { algorithm, pem })
            }
            (None, None) => Ok(JwtKey::DevGenerated {
                path: self.data_dir.join("dev-jwt-secret"),
            }),
        }
    }

    fn cors(&self, dev_mode: bool) -> Result<CorsOrigins, ConfigError> {
        match self.cors_origins.as_slice() {
            [] if dev_mode => Ok(CorsOrigins::Any),
            [one] if one == "*" => Ok(CorsOrigins::Any),
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
                Ok(CorsOrigins::List(origins.to_vec()))
            }
        }
    }

    fn limits(&self, dev_mode: bool) -> Result<Limits, ConfigError> {
        Ok(Limits {
            max_content_chars: in_range(
                "PARLOIR_MAX_CONTENT_CHARS",
                self.max_content_chars,
                1..=100_000,
            )?,
            max_attachments: in_range("PARLOIR_MAX_ATTACHMENTS", self.max_attachments, 0..=100)?,
            max_participants: in_range(
                "PARLOIR_MAX_PARTICIPANTS",
                self.max_participants,
                2..=10_000,
            )?,
            allow_http_attachments: dev_mode,
            ..Limits::default()
        })
    }

    fn rate_limits(&self) -> Result<RateLimits, ConfigError> {
        Ok(RateLimits {
            send_per_sec: rate("PARLOIR_SEND_RATE_PER_SEC", self.send_rate_per_sec)?,
            send_burst: rate("PARLOIR_SEND_BURST", self.send_burst)?,
            create_per_min: rate("PARLOIR_CREATE_RATE_PER_MIN", self.create_rate_per_min)?,
            create_burst: rate("PARLOIR_CREATE_BURST", self.create_burst)?,
            typing_relay_interval: Duration::from_secs(1),
        })
    }

    fn budgets(&self) -> Result<Budgets, ConfigError> {
        Ok(Budgets {
            socket_events_per_sec: rate(
                "PARLOIR_SOCKET_EVENTS_PER_SEC",
                self.socket_events_per_sec,
            )?,
            socket_event_burst: rate("PARLOIR_SOCKET_EVENT_BURST", self.socket_event_burst)?,
            socket_events_in_flight: in_range(
                "PARLOIR_SOCKET_EVENTS_IN_FLIGHT",
                self.socket_events_in_flight,
                1..=100_000,
            )?,
            http_requests_per_sec: rate(
                "PARLOIR_HTTP_REQUESTS_PER_SEC",
                self.http_requests_per_sec,
            )?,
            http_request_burst: rate("PARLOIR_HTTP_REQUEST_BURST", self.http_request_burst)?,
            max_sockets_per_user: in_range(
                "PARLOIR_MAX_SOCKETS_PER_USER",
                self.max_sockets_per_user,
                1..=100_000,
            )?,
            handshakes_per_sec: rate("PARLOIR_HANDSHAKES_PER_SEC", self.handshakes_per_sec)?,
            handshake_burst: rate("PARLOIR_HANDSHAKE_BURST", self.handshake_burst)?,
            trusted_proxies: trusted_proxies(&self.trusted_proxies)?,
        })
    }

    fn otlp(&self) -> Result<Otlp, ConfigError> {
        match self.otel_endpoint.as_deref().filter(|e| !e.is_empty()) {
            None => Ok(Otlp::Disabled),
            Some(endpoint)
                if endpoint.starts_with("http://") || endpoint.starts_with("https://") =>
            {
                Ok(Otlp::Enabled {
                    endpoint: endpoint.to_owned(),
                    service_name: self.otel_service_name.clone(),
                })
            }
            Some(_) => Err(invalid(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must be an http(s):// URL",
            )),
        }
    }
}

/// Postgres when a URL is given, else SQLite in the data directory.
fn store(url: Option<SecretString>, data_dir: &Path) -> Result<StoreConfig, ConfigError> {
    match url {
        Some(url)
            if url.expose_secret().starts_with("postgres://")
                || url.expose_secret().starts_with("postgresql://") =>
        {
            Ok(StoreConfig::Postgres { url })
        }
        Some(_) => Err(invalid(
            "DATABASE_URL",
            "must be a postgres:// URL (unset it for embedded SQLite)",
        )),
        None => Ok(StoreConfig::Sqlite {
            path: data_dir.join("parloir.db"),
        }),
    }
}

fn trusted_proxies(raw: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "PARLOIR_TRUSTED_PROXIES",
                        format!("{p:?} is not an IP address or a CIDR block"),
                    )
                })
        })
        .collect()
}

/// `value`, when `range` holds it. (Checked here rather than by clap's range
/// parsers so that the error names the environment variable operators set,
/// not the flag.)
pub(super) fn in_range<T: PartialOrd + Display + Copy>(
    var: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            var,
            format!("must be {} to {}", range.start(), range.end()),
        ))
    }
}

/// A rate or a burst: 1 to a million.
fn rate(var: &'static str, value: u32) -> Result<u32, ConfigError> {
    in_range(var, value, 1..=1_000_000)
}

pub(super) fn millis(
    var: &'static str,
    value: u64,
    range: RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    in_range(var, value, range).map(Duration::from_millis)
}
