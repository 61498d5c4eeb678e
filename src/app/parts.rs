//! What a node is assembled from, built from its configuration: the store
//! (decorated as the node uses it), the dev signing secret, the notification
//! couriers, the Socket.IO adapter's Redis connection and the CORS layer.

use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

use super::*;

/// Opens the configured store, decorated as the node uses it (its group
/// commit running under `supervisor`), and unless disabled migrates it.
pub async fn open_store(
    config: &Config,
    migrate: bool,
    supervisor: &Supervisor,
) -> anyhow::Result<Store> {
    let with = store_decorations(config, supervisor);
    Ok(match &config.store {
        StoreConfig::Sqlite { path } => {
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("opening SQLite at {}", path.display()))?;
            if migrate {
                store.migrate().await.context("migrating SQLite")?;
            }
            let store = store.with_notification_outbox(config.notify.enabled());
            Store::decorated(Arc::new(store), with)
        }
        StoreConfig::Postgres { url } => {
            let store = PostgresStore::connect(
                url.expose_secret(),
                config.db_max_connections,
                config.db_acquire_timeout,
                config.db_statement_timeout,
            )
            .await
            .context("connecting to Postgres")?;
            if migrate {
                store.migrate().await.context("migrating Postgres")?;
            }
            postgres_store(store, config, supervisor)
        }
    })
}

/// A Postgres store as the node uses it: the outbox on when a notification
/// channel is configured, decorated.
pub(super) fn postgres_store(
    store: PostgresStore,
    config: &Config,
    supervisor: &Supervisor,
) -> Store {
    let store = store.with_notification_outbox(config.notify.enabled());
    Store::decorated(Arc::new(store), store_decorations(config, supervisor))
}

/// The HS256 secret that dev tokens are signed with, when there is one:
/// the configured `JWT_SECRET`, or the dev secret kept in the data directory.
pub async fn signing_secret(config: &Config) -> anyhow::Result<Option<SecretString>> {
    Ok(match &config.jwt.key {
        JwtKey::Hs256 { secret, .. } => Some(secret.clone()),
        JwtKey::DevGenerated { path } => Some(auth::load_or_create_dev_secret(path).await?),
        JwtKey::PublicKey { .. } => None,
    })
}

/// The adapter's connection: pub/sub (sharded, hence RESP3, which fred does
/// not read from `?protocol=` in URLs), one connection per Redis Cluster
/// shard. The adapter re-subscribes its channels after every reconnect.
pub(super) async fn redis_subscriber(
    redis: &RedisConfig,
) -> anyhow::Result<fred::clients::SubscriberClient> {
    use fred::prelude::ClientLike;
    let config = fred_client::config(&redis.url)?;
    let client = fred_client::builder(config, redis.command_timeout, redis.command_timeout)
        .with_performance_config(|p| p.broadcast_channel_capacity = ADAPTER_CHANNEL_CAPACITY)
        .build_subscriber_client()?;
    let deadline = redis.command_timeout.saturating_mul(2);
    tokio::time::timeout(deadline, client.init())
        .await
        .context("Redis did not answer in time")??;
    Ok(client)
}

/// The couriers of the configured notification channels.
pub(super) fn couriers(config: &Config) -> anyhow::Result<Vec<Arc<dyn Courier>>> {
    let mut couriers: Vec<Arc<dyn Courier>> = Vec::new();
    if let Some(webhook) = &config.notify.webhook {
        couriers.push(Arc::new(
            WebhookCourier::new(webhook.clone()).context("building the webhook client")?,
        ));
    }
    if let Some(smtp) = &config.notify.smtp {
        couriers.push(Arc::new(
            EmailCourier::new(smtp.clone()).context("PARLOIR_SMTP_URL")?,
        ));
    }
    Ok(couriers)
}

fn store_decorations(config: &Config, supervisor: &Supervisor) -> Decorations {
    Decorations {
        system: store_kind(&config.store),
        call_deadline: Some(store_call_deadline(config)),
        group_commit: group_commit_limits(config),
        participant_cache: config.participant_cache_size,
        supervisor: supervisor.clone(),
    }
}

/// SQLite has one writer, so a second batch in flight would only wait for
/// the first. On Postgres one commit in flight also measured best here (at
/// 6,000 msg/s, p99 51 ms with one, 99 ms with four: bigger batches, less
/// contention); more may pay off where round trips to the database dominate.
fn group_commit_limits(config: &Config) -> GroupCommitLimits {
    GroupCommitLimits {
        statement_deadline: Some(store_call_deadline(config)),
        max_batch: config.store_batch_max,
        concurrent_batches: match config.store {
            StoreConfig::Sqlite { .. } => 1,
            StoreConfig::Postgres { .. } => config.store_concurrent_commits,
        },
    }
}

/// How long one store call may take before its caller is answered
/// `UNAVAILABLE`: a pooled connection's wait, a statement's timeout, and a
/// second of slack. The server enforces the statement part itself; this
/// bounds what it cannot: a connection whose peer went silent (no TCP
/// keepalive in sqlx), where a call would otherwise wait for the kernel's
/// retransmission timeout, minutes.
fn store_call_deadline(config: &Config) -> Duration {
    config.db_acquire_timeout + config.db_statement_timeout + Duration::from_secs(1)
}

pub(super) fn store_kind(store: &StoreConfig) -> &'static str {
    match store {
        StoreConfig::Sqlite { .. } => "sqlite",
        StoreConfig::Postgres { .. } => "postgresql",
    }
}

/// Compression of HTTP responses (the API, `/metrics`, Socket.IO
/// long-polling) by the client's `Accept-Encoding`, above `above` bytes.
/// Websocket frames are not HTTP bodies: the 101 answer has none.
pub(super) fn compression_layer(above: Option<u64>) -> CompressionLayer<impl Predicate> {
    // Off: no encoding is ever chosen, every body passes as it is.
    let on = above.is_some();
    CompressionLayer::new()
        .gzip(on)
        .br(on)
        .zstd(on)
        .quality(CompressionLevel::Default)
        .compress_when(
            SizeAbove::new(above.unwrap_or(u64::MAX))
                .and(NotForContentType::GRPC)
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::SSE),
        )
}

pub(super) fn cors_layer(origins: &CorsOrigins) -> CorsLayer {
    let allow = match origins {
        // Mirroring (rather than `*`) keeps credentialed polling requests working.
        CorsOrigins::Any => AllowOrigin::mirror_request(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_credentials(true)
        // Every method a route of the API answers (http/mod.rs): a browser
        // app on an allowed origin may call each.
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// The Socket.IO adapter's tasks, run under the node's supervisor: each is
/// restarted should it fail, and all of them stop with the node.
pub(super) struct SupervisedSpawner(pub(super) Supervisor);

impl socketioxide_sharded::Spawner for SupervisedSpawner {
    fn spawn(&self, name: &'static str, mut start: socketioxide_sharded::TaskStart) {
        self.0.spawn(name, Lifetime::UntilDone, move |stop| {
            let run = start();
            async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = run => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::compression_layer;

    /// The `Content-Encoding` of a 2 KB answer to a client accepting gzip.
    async fn encoding_with(above: Option<u64>) -> Option<String> {
        let service = ServiceBuilder::new()
            .layer(compression_layer(above))
            .service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(
                    axum::http::Response::builder()
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(vec![b'a'; 2048]))
                        .expect("a static response is valid"),
                )
            });
        let request = Request::builder()
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .expect("a static request is valid");
        let response = service.oneshot(request).await.expect("infallible");
        response
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    #[tokio::test]
    async fn compression_follows_the_threshold_and_can_be_turned_off() {
        assert_eq!(encoding_with(Some(1024)).await.as_deref(), Some("gzip"));
        assert_eq!(encoding_with(Some(4096)).await, None, "under the threshold");
        assert_eq!(encoding_with(None).await, None, "PARLOIR_COMPRESSION=false");
    }
}
