//! Wiring: the one place that knows the mode (store, shared state, Socket.IO
//! adapter) and assembles a node. Tests start real nodes through
//! `AppBuilder` on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, Method, header};
use secrecy::{ExposeSecret, SecretString};
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::handler::ConnectHandler;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{Instrument, info, info_span, warn};

use crate::auth::{self, Authenticator};
use crate::config::{Config, CorsOrigins, JwtKey, StoreConfig};
use crate::ephemeral::{Ephemeral, MemoryEphemeral};
use crate::fanout::{Audience, Fanout, SioFanout};
use crate::gateway;
use crate::http::{self, HttpState, Readiness};
use crate::protocol::NAMESPACE;
use crate::service::{Messaging, ServiceSettings};
use crate::store::{PostgresStore, SqliteStore, Store};

/// How often expired typing states are looked for.
const TYPING_SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Opens the configured store and, unless disabled, migrates it.
pub async fn open_store(config: &Config, migrate: bool) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.store {
        StoreConfig::Sqlite { path } => {
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("opening SQLite at {}", path.display()))?;
            if migrate {
                store.migrate().await.context("migrating SQLite")?;
            }
            Arc::new(store)
        }
        StoreConfig::Postgres { url } => {
            let store = PostgresStore::connect(
                url.expose_secret(),
                config.db_max_connections,
                config.db_acquire_timeout,
            )
            .await
            .context("connecting to Postgres")?;
            if migrate {
                store.migrate().await.context("migrating Postgres")?;
            }
            Arc::new(store)
        }
    })
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

pub struct AppBuilder {
    config: Config,
}

impl AppBuilder {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// Opens storage (migrating it unless disabled), binds the listener and
    /// assembles the node. Nothing is served until `run_until_stopped`.
    pub async fn build(self) -> anyhow::Result<App> {
        let mut config = self.config;
        if let JwtKey::DevGenerated { path } = &config.jwt.key {
            let secret = auth::load_or_create_dev_secret(path).await?;
            warn!(
                path = %path.display(),
                "DEV MODE: no JWT_SECRET or JWT_PUBLIC_KEY_FILE configured; tokens are checked against a generated secret \
                 (mint one with `parloir token --user alice`). Never run like this in production."
            );
            config.jwt.key = JwtKey::Hs256 {
                secret,
                generated: true,
            };
        }
        let authenticator = Authenticator::new(&config.jwt)?;
        let store = open_store(&config, config.migrate_on_start).await?;
        let ephemeral: Arc<dyn Ephemeral> = Arc::new(MemoryEphemeral::new(&config.rate_limits));
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let local_addr = listener.local_addr()?;

        let fanout = Arc::new(LateFanout::<LocalAdapter>::default());
        let service = Messaging::new(
            store,
            ephemeral,
            fanout.clone(),
            ServiceSettings {
                limits: config.limits.clone(),
                rate_limits: config.rate_limits,
                typing_ttl: config.typing_ttl,
            },
        );
        let (sio_layer, io) = SocketIo::builder()
            .max_payload(config.max_frame_bytes as u64)
            .ws_max_message_size(config.max_frame_bytes)
            .ws_max_frame_size(config.max_frame_bytes)
            .with_state(service.clone())
            .with_state(authenticator.clone())
            .build_layer();
        io.ns(
            NAMESPACE,
            gateway::on_connect::<LocalAdapter>.with(gateway::authenticate::<LocalAdapter>),
        );
        fanout.bind(io.clone());

        let readiness = Readiness::default();
        let state = HttpState {
            service: service.clone(),
            authenticator,
            readiness: readiness.clone(),
            cluster: false,
            metrics: crate::instruments::install(),
        };
        let router = http::router(state, config.max_frame_bytes)
            .layer(sio_layer)
            .layer(axum::middleware::from_fn_with_state(
                readiness.clone(),
                http::refuse_new_sessions_while_draining,
            ))
            .layer(cors_layer(&config.cors));
        info!(addr = %local_addr, store = store_kind(&config.store), dev_mode = config.dev_mode, "node built");
        Ok(App {
            listener,
            local_addr,
            router,
            io,
            service,
            readiness,
            drain_grace: config.drain_grace,
        })
    }
}

fn store_kind(store: &StoreConfig) -> &'static str {
    match store {
        StoreConfig::Sqlite { .. } => "sqlite",
        StoreConfig::Postgres { .. } => "postgres",
    }
}

fn cors_layer(origins: &CorsOrigins) -> CorsLayer {
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
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// A built node, bound but not yet serving.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    io: SocketIo<LocalAdapter>,
    service: Messaging,
    readiness: Readiness,
    drain_grace: Duration,
}

impl App {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then drains: readiness goes false,
    /// sockets are closed (so clients reconnect elsewhere and presence is
    /// cleaned up), in-flight requests finish within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            local_addr,
            router,
            io,
            service,
            readiness,
            drain_grace,
        } = self;
        let tasks = TaskTracker::new();
        let stop_tasks = CancellationToken::new();
        tasks.spawn(
            sweep_typing(service.clone(), stop_tasks.clone())
                .instrument(info_span!("typing_sweeper")),
        );

        let drain = CancellationToken::new();
        let server =
            axum::serve(listener, router).with_graceful_shutdown(drain.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });
        readiness.set_ready();
        info!(addr = %local_addr, "serving");

        shutdown.await;
        info!("draining");
        readiness.set_draining();
        crate::instruments::draining(true);
        io.close().await;
        drain.cancel();
        match tokio::time::timeout(drain_grace, server).await {
            Ok(joined) => joined.context("server task")?.context("server")?,
            Err(_) => warn!("drain grace period elapsed; exiting with requests in flight"),
        }
        stop_tasks.cancel();
        tasks.close();
        tasks.wait().await;
        info!("stopped");
        Ok(())
    }
}

async fn sweep_typing(service: Messaging, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TYPING_SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = service.sweep_expired_typing_once(crate::service::now_unix_millis()).await {
                    warn!(error = %e, "typing sweep failed");
                }
            }
        }
    }
}

/// The service is built before the Socket.IO instance whose state holds it,
/// so its fanout is bound to that instance right after.
struct LateFanout<A: Adapter> {
    inner: OnceLock<SioFanout<A>>,
}

impl<A: Adapter> Default for LateFanout<A> {
    fn default() -> Self {
        Self {
            inner: OnceLock::new(),
        }
    }
}

impl<A: Adapter> LateFanout<A> {
    fn bind(&self, io: SocketIo<A>) {
        if self.inner.set(SioFanout::new(io)).is_err() {
            warn!("fanout bound twice; keeping the first Socket.IO instance");
        }
    }
}

#[async_trait::async_trait]
impl<A: Adapter> Fanout for LateFanout<A> {
    async fn emit(&self, audience: Audience, event: &'static str, payload: serde_json::Value) {
        if let Some(f) = self.inner.get() {
            f.emit(audience, event, payload).await;
        }
    }

    fn emit_to_socket(&self, socket_id: &str, event: &'static str, payload: &serde_json::Value) {
        if let Some(f) = self.inner.get() {
            f.emit_to_socket(socket_id, event, payload);
        }
    }

    fn join(&self, socket_id: &str, room: String) {
        if let Some(f) = self.inner.get() {
            f.join(socket_id, room);
        }
    }

    fn leave(&self, socket_id: &str, room: String) {
        if let Some(f) = self.inner.get() {
            f.leave(socket_id, room);
        }
    }
}
