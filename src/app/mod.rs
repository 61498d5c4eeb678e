//! Wiring: the one place that knows the mode (store, shared state, Socket.IO
//! adapter) and assembles a node. Tests start real nodes through
//! `AppBuilder` on port 0. The parts it assembles are built in `parts.rs`,
//! the loops it starts live in `background.rs`; what stays here (about 460
//! lines) is the build, the wiring of both modes and the drain, which read
//! best in one place.

mod background;
mod late_fanout;
mod parts;

use parts::{compression_layer, cors_layer, couriers, redis_subscriber, store_kind};
pub use parts::{open_store, signing_secret};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, Method, header};
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_sharded::{ShardedAdapter, ShardedAdapterCtr, ShardedConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

use crate::auth::{self, Authenticator};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, CorsOrigins, JwtKey, RedisConfig, SharedState, StoreConfig};
use crate::ephemeral::{Ephemeral, MemoryEphemeral, RedisEphemeral, RedisSettings, fred_client};
use crate::gateway;
use crate::http::{self, HttpState, Readiness};
use crate::notify::{Courier, EmailCourier, WebhookCourier};
use crate::protocol::NAMESPACE;
use crate::service::{Messaging, Notifier, RetentionJob, ServiceSettings};
use background::{
    Cluster, Notifying, RetentionSchedule, apply_retention, keep_membership, notify,
    refresh_blocks, relay_owed, sweep_typing,
};
use late_fanout::LateFanout;

use crate::store::{Decorations, GroupCommitLimits, PostgresStore, SqliteStore, Store};
use crate::supervisor::{Lifetime, RestartPolicy, Supervisor};

/// Capacity of the channel that carries other nodes' broadcasts into this
/// one; a burst beyond it is lost (counted in
/// `parloir_adapter_messages_dropped_total`). fred's default of 32 dropped
/// deliveries at 800 msg/s between two nodes.
const ADAPTER_CHANNEL_CAPACITY: usize = 1 << 16;

/// Deadline of one adapter publish. Local sockets have the event already; a
/// publish this late is reported as a broadcast failure.
const ADAPTER_PUBLISH_DEADLINE: Duration = Duration::from_millis(500);

/// Each websocket keeps a read buffer of this size for its whole life. Client
/// frames are small (an event is a few hundred bytes); a larger one grows
/// the buffer as needed. engineioxide's default is 4 KiB.
const WS_READ_BUFFER_BYTES: usize = 1024;

pub struct AppBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    pool: Option<sqlx::PgPool>,
    restart_policy: RestartPolicy,
}

impl AppBuilder {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            clock: Arc::new(SystemClock),
            pool: None,
            restart_policy: RestartPolicy::default(),
        }
    }

    /// How the node restarts its failed tasks and when it gives up (tests:
    /// a long first delay, to see the node unready while a task is down).
    pub fn with_restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.restart_policy = policy;
        self
    }

    /// Stores in the database of an existing, migrated pool instead of
    /// connecting to `config.store` (tests: the fresh database of a
    /// `#[sqlx::test]`). The node decorates it as it would its own.
    pub fn with_postgres_pool(mut self, pool: sqlx::PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The clock notifications fall due by (tests move a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Opens storage (migrating it unless disabled), connects shared state,
    /// binds the listener and assembles the node. Nothing is served until
    /// `run_until_stopped`.
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
        for warning in config.warnings() {
            warn!("{warning}");
        }
        let authenticator = Authenticator::new(&config.jwt)?;
        let supervisor = Supervisor::new(self.restart_policy);
        let store = match self.pool {
            Some(pool) => {
                parts::postgres_store(PostgresStore::from_pool(pool), &config, &supervisor)
            }
            None => open_store(&config, config.migrate_on_start, &supervisor).await?,
        };
        let couriers = couriers(&config)?;
        let retention = RetentionSchedule {
            job: RetentionJob::new(store.clone(), config.retention.policy),
            every: config.retention.every,
            clock: self.clock.clone(),
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let local_addr = listener.local_addr()?;
        let readiness = Readiness::default();

        // Everything but the shared state is the same in both modes.
        let deps = |ephemeral, adapter_stats| Deps {
            config: &config,
            store,
            couriers,
            ephemeral,
            adapter_stats,
            authenticator,
            readiness: readiness.clone(),
            supervisor: supervisor.clone(),
        };
        // The mode is decided here, once; everything above the seams is the same.
        let (wired, cluster) = match &config.shared {
            SharedState::InProcess => {
                let ephemeral = Ephemeral::observed(
                    Arc::new(MemoryEphemeral::new(&config.rate_limits)),
                    "memory",
                );
                let (wired, io) = wire(SocketIo::builder(), deps(ephemeral, None));
                io.ns(
                    NAMESPACE,
                    gateway::on_connect::<LocalAdapter>.with(gateway::authenticate::<LocalAdapter>),
                );
                (wired, None)
            }
            SharedState::Redis(redis) => {
                let settings = RedisSettings {
                    url: redis.url.clone(),
                    pool_size: redis.pool_size,
                    command_timeout: redis.command_timeout,
                    connect_timeout: redis.command_timeout,
                };
                let ephemeral = RedisEphemeral::connect(
                    settings,
                    redis.prefix.clone(),
                    config.node_id.clone(),
                    &config.rate_limits,
                    &supervisor,
                )
                .await
                .context("connecting to Redis (shared state)")?;
                let ephemeral = Ephemeral::observed(Arc::new(ephemeral), "redis");
                let subscriber = redis_subscriber(redis)
                    .await
                    .context("connecting the Socket.IO adapter to Redis")?;
                let ctr = ShardedAdapterCtr::new(
                    subscriber,
                    ShardedConfig {
                        prefix: format!("{}sio:", redis.prefix),
                        request_timeout: redis.command_timeout,
                        publish_timeout: redis.command_timeout.min(ADAPTER_PUBLISH_DEADLINE),
                        spawner: Arc::new(parts::SupervisedSpawner(supervisor.clone())),
                        ..ShardedConfig::default()
                    },
                )
                .context("configuring the Socket.IO adapter")?;
                let adapter_stats = ctr.stats();
                let (wired, io) = wire(
                    SocketIo::builder().with_adapter::<ClusterAdapter>(ctr),
                    deps(ephemeral, Some(adapter_stats)),
                );
                io.ns(
                    NAMESPACE,
                    gateway::on_connect::<ClusterAdapter>
                        .with(gateway::authenticate::<ClusterAdapter>),
                )
                .await
                .context("registering the namespace on the Redis adapter")?;
                (
                    wired,
                    Some(Cluster {
                        heartbeat: redis.heartbeat,
                        node_ttl: redis.node_ttl,
                    }),
                )
            }
        };
        info!(
            addr = %local_addr,
            node.id = %config.node_id,
            store = store_kind(&config.store),
            cluster = cluster.is_some(),
            dev_mode = config.dev_mode,
            "node built"
        );
        Ok(App {
            listener,
            local_addr,
            router: wired.router,
            close_sockets: wired.close_sockets,
            start_timers: wired.start_timers,
            supervisor,
            in_flight: wired.in_flight,
            service: wired.service,
            notifier: wired.notifier.map(|notifier| Notifying {
                notifier,
                clock: self.clock,
                poll: config.notify.poll,
            }),
            readiness,
            cluster,
            retention,
            drain_grace: config.drain_grace,
        })
    }
}

/// The Socket.IO adapter of cluster mode.
type ClusterAdapter = ShardedAdapter<socketioxide::adapter::Emitter>;

/// What `wire` needs besides the Socket.IO builder.
struct Deps<'a> {
    config: &'a Config,
    store: Store,
    /// The configured notification channels (none: notifications are off).
    couriers: Vec<Arc<dyn Courier>>,
    ephemeral: Ephemeral,
    /// The Redis adapter's traffic counters (cluster mode only).
    adapter_stats: Option<Arc<socketioxide_sharded::Stats>>,
    authenticator: Authenticator,
    readiness: Readiness,
    supervisor: Supervisor,
}

/// Starts a task under the node's supervisor.
type TaskStart = Box<dyn FnOnce(&Supervisor) + Send>;

/// A node's parts once the Socket.IO instance exists.
struct Wired {
    service: Messaging,
    notifier: Option<Notifier>,
    in_flight: TaskTracker,
    router: Router,
    close_sockets: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
    /// Starts the node's socket timers (token expiry, handshake confirmation).
    start_timers: TaskStart,
}

/// Builds the service, the Socket.IO instance and the router for one adapter.
/// (Registering the namespace is left to the caller: it differs per adapter.)
fn wire<A: Adapter>(builder: SocketIoBuilder<A>, deps: Deps<'_>) -> (Wired, SocketIo<A>) {
    let config = deps.config;
    let readiness = deps.readiness;
    let in_flight = gateway::InFlight::default();
    let (expiries, expiry_wheel) = gateway::expiries();
    let fanout = Arc::new(LateFanout::<A>::default());
    let notifier = (!deps.couriers.is_empty()).then(|| {
        Notifier::new(
            deps.store.clone(),
            deps.ephemeral.clone(),
            deps.couriers,
            config.notify.settings,
        )
    });
    let service = Messaging::new(
        deps.store,
        deps.ephemeral,
        fanout.clone(),
        ServiceSettings {
            limits: config.limits.clone(),
            rate_limits: config.rate_limits,
            typing_ttl: config.typing_ttl,
            max_sends_in_flight: config.max_sends_in_flight,
        },
    );
    let budget = crate::budget::NodeBudget::new(&config.budgets);
    let (sio_layer, io) = builder
        .max_payload(config.max_frame_bytes as u64)
        .ws_max_message_size(config.max_frame_bytes)
        .ws_max_frame_size(config.max_frame_bytes)
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .with_state(service.clone())
        .with_state(in_flight.clone())
        .with_state(expiries)
        .with_state(deps.authenticator.clone())
        .with_state(budget.clone())
        .build_layer();
    fanout.bind(io.clone());
    let state = HttpState {
        service: service.clone(),
        authenticator: deps.authenticator,
        readiness: readiness.clone(),
        supervisor: deps.supervisor,
        cluster: matches!(config.shared, SharedState::Redis(_)),
        metrics: crate::instruments::install().inspect(|_| {
            crate::instruments::expose_families(
                &crate::gateway::HandshakeRefusal::OUTCOMES,
                &crate::protocol::ev::FROM_CLIENT,
            )
        }),
        budget,
        adapter_stats: deps.adapter_stats,
        dev_signing_secret: match (&config.jwt.key, config.dev_mode) {
            (JwtKey::Hs256 { secret, .. }, true) => Some(secret.clone()),
            _ => None,
        },
    };
    let router = http::router(state, config.max_frame_bytes)
        .layer(sio_layer)
        .layer(axum::middleware::from_fn(http::own_new_session_head))
        .layer(axum::middleware::from_fn_with_state(
            readiness,
            http::refuse_new_sessions_while_draining,
        ))
        .layer(cors_layer(&config.cors))
        .layer(compression_layer(config.compress_above));
    let (timed, timing_service) = (io.clone(), service.clone());
    let start_timers: TaskStart = Box::new(move |supervisor| {
        supervisor.spawn("socket_timers", Lifetime::UntilStopped, move |stop| {
            expiry_wheel
                .clone()
                .run(timed.clone(), timing_service.clone(), stop)
        });
    });
    let closer = io.clone();
    let close_sockets: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send> =
        Box::new(move || Box::pin(async move { closer.close().await }));
    (
        Wired {
            service,
            notifier,
            in_flight: in_flight.0,
            router,
            close_sockets,
            start_timers,
        },
        io,
    )
}

/// A built node, bound but not yet serving.
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    close_sockets: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
    start_timers: TaskStart,
    supervisor: Supervisor,
    in_flight: TaskTracker,
    service: Messaging,
    notifier: Option<Notifying>,
    readiness: Readiness,
    cluster: Option<Cluster>,
    retention: RetentionSchedule,
    drain_grace: Duration,
}

impl App {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's readiness, e.g. to wait until it serves.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The supervisor of the node's long-lived tasks (fault drills: abort a
    /// task and watch the node restart it).
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.clone()
    }

    /// Serves until `shutdown` resolves, then drains: readiness goes false,
    /// sockets are closed (so clients reconnect elsewhere and presence is
    /// cleaned up), in-flight requests finish within the grace period.
    /// A long-lived task that keeps failing (see `supervisor`) drains the
    /// node the same way, and the run ends with an error.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            local_addr,
            router,
            close_sockets,
            start_timers,
            supervisor,
            in_flight,
            service,
            notifier,
            readiness,
            cluster,
            retention,
            drain_grace,
        } = self;
        start_timers(&supervisor);
        let typing = service.clone();
        supervisor.spawn("typing_sweep", Lifetime::UntilStopped, move |stop| {
            sweep_typing(typing.clone(), stop)
        });
        let blocking = service.clone();
        supervisor.spawn("blocks_refresh", Lifetime::UntilStopped, move |stop| {
            refresh_blocks(blocking.clone(), stop)
        });
        let welcoming = service.clone();
        supervisor.spawn("welcomes", Lifetime::UntilStopped, move |stop| {
            let service = welcoming.clone();
            async move { service.welcome_queued(stop).await }
        });
        supervisor.spawn("retention", Lifetime::UntilStopped, move |stop| {
            apply_retention(retention.clone(), stop)
        });
        if let Some(cluster) = cluster {
            // A restarted pod keeps its node id: what its previous process
            // recorded is gone with it.
            if let Err(e) = service.forget_previous_life().await {
                warn!(error = %e, "could not forget this node id's previous sockets");
            }
            // Join the cluster before the first socket arrives, so that if
            // this node dies, its peers know to sweep its sockets.
            if let Err(e) = service.cluster_membership_once(cluster.node_ttl).await {
                warn!(error = %e, "first cluster heartbeat failed; retrying in the background");
            }
            let member = service.clone();
            supervisor.spawn("cluster_membership", Lifetime::UntilStopped, move |stop| {
                keep_membership(member.clone(), cluster, stop)
            });
            let relay = service.clone();
            supervisor.spawn("log_relay", Lifetime::UntilStopped, move |stop| {
                relay_owed(relay.clone(), stop)
            });
        }
        if let Some(notifying) = notifier {
            supervisor.spawn("notifier", Lifetime::UntilStopped, move |stop| {
                notify(notifying.clone(), stop)
            });
        }

        let drain = CancellationToken::new();
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(drain.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });
        readiness.set_ready();
        info!(addr = %local_addr, "serving");

        let gave_up = tokio::select! {
            () = shutdown => None,
            why = supervisor.gave_up() => Some(why),
        };
        info!("draining");
        readiness.set_draining();
        // Events already received finish (committed and acked) before the
        // sockets close; the wait is bounded by the grace period.
        in_flight.close();
        if tokio::time::timeout(drain_grace, in_flight.wait())
            .await
            .is_err()
        {
            warn!("drain grace period elapsed with socket events in flight");
        }
        if tokio::time::timeout(drain_grace, service.finish_detached_work())
            .await
            .is_err()
        {
            warn!("drain grace period elapsed with announcements in flight");
        }
        crate::instruments::draining(true);
        close_sockets().await;
        drain.cancel();
        match tokio::time::timeout(drain_grace, server).await {
            Ok(joined) => joined.context("server task")?.context("server")?,
            Err(_) => warn!("drain grace period elapsed; exiting with requests in flight"),
        }
        supervisor.stop().await;
        info!("stopped");
        match gave_up {
            None => Ok(()),
            Some(why) => Err(anyhow::anyhow!("the node stopped itself: {why}")),
        }
    }
}
