//! Shared helpers for integration tests: real parloir nodes on random loopback
//! ports (`TestNode`) and throwaway Postgres databases on the server that
//! `DATABASE_URL` points at (scripts/test starts one). Nothing here reads
//! other configuration from the environment: nodes are configured in code.

pub mod processes;

/// `mod $name { single_redis, redis_cluster }`: the async test body
/// `$name(kind: RedisKind)` once per Redis deployment (the file must import
/// `processes::RedisKind`).
macro_rules! on_both_redis_kinds {
    ($name:ident) => {
        mod $name {
            use super::RedisKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single_redis() {
                super::$name(RedisKind::Single).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_cluster() {
                super::$name(RedisKind::Cluster).await;
            }
        }
    };
}

use std::net::SocketAddr;
use std::time::Duration;

use parloir::{AppBuilder, Config};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A user id unique to this test run: `{prefix}-{8 hex}`.
pub fn unique_user(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

/// The HS256 secret of every test node that does not need a secret of its own.
pub const SECRET: &str = "parloir-test-secret-parloir-test-secret!";

/// A token for `user` signed with [`SECRET`].
pub fn token(user: &str) -> String {
    mint_token(SECRET, user)
}

/// A token for `user` signed with [`SECRET`], valid for `ttl`.
pub fn token_valid_for(user: &str, ttl: chrono::Duration) -> String {
    let secret = secrecy::SecretString::from(SECRET.to_owned());
    let user = parloir::domain::UserId::parse("user", user).expect("a valid test user id");
    parloir::auth::mint_hs256(&secret, &user, None, Some(user.as_str()), None, ttl)
        .expect("an HS256 token")
}

/// A node configuration on Postgres `database` sharing the Redis (or Redis
/// Cluster) named by `redis_var` under key `prefix`, with fast heartbeats.
pub fn cluster_config(database: &str, redis_var: &str, prefix: &str) -> Config {
    use parloir::config::{RedisConfig, SharedState, StoreConfig};
    let redis_url = std::env::var(redis_var).unwrap_or_else(|_| {
        panic!("{redis_var} is not set: run scripts/test (it starts a throwaway Redis and Redis Cluster)")
    });
    let store = StoreConfig::Postgres {
        url: secrecy::SecretString::from(database.to_owned()),
    };
    let mut config = Config::for_tests(store, SECRET);
    config.shared = SharedState::Redis(RedisConfig {
        url: secrecy::SecretString::from(redis_url),
        pool_size: 2,
        command_timeout: Duration::from_secs(2),
        prefix: prefix.to_owned(),
        heartbeat: Duration::from_secs(1),
        node_ttl: Duration::from_secs(5),
    });
    config
}

/// The `PARLOIR_TEST_*` variables naming the test Redis deployments.
pub const SINGLE_REDIS: &str = "PARLOIR_TEST_REDIS_URL";
pub const REDIS_CLUSTER: &str = "PARLOIR_TEST_REDIS_CLUSTER_URL";

/// An HS256 token for `user` (display name = the id), valid ten minutes.
pub fn mint_token(secret: &str, user: &str) -> String {
    let secret = secrecy::SecretString::from(secret.to_owned());
    let user = parloir::domain::UserId::parse("user", user).expect("a valid test user id");
    parloir::auth::mint_hs256(
        &secret,
        &user,
        None,
        Some(user.as_str()),
        None,
        chrono::Duration::minutes(10),
    )
    .expect("an HS256 token")
}

/// Emits `send-message` with `payload` once through the official Socket.IO
/// client (`tests/js/bin/sio-client.mjs`) as `token`'s user, and returns the
/// client's one-line report (`{"ack": ..., ...}`).
pub async fn send_with_official_client(
    url: &str,
    token: &str,
    payload: serde_json::Value,
) -> serde_json::Value {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let out = tokio::process::Command::new("node")
        .current_dir(&js)
        .arg("bin/sio-client.mjs")
        .arg(url)
        .arg("/messaging")
        .arg(serde_json::json!({ "token": token }).to_string())
        .arg("send-message")
        .arg(serde_json::json!([payload]).to_string())
        .output()
        .await
        .expect("node runs the client");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the client prints one JSON line ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Shows the in-process nodes' logs with the test output (`RUST_LOG`,
/// default `warn`). Several tests share a binary: only the first installs it.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// How long a node may take to report ready on `/readyz`.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// The Postgres server the tests may create databases on.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run scripts/test (it starts a throwaway Postgres and exports it), \
             or `scripts/test -- cargo nextest run ...` to run a subset with the same services"
        )
    })
}

/// `url` with its database name replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").expect("a database URL has a scheme") + 3;
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A fresh, empty database on the `DATABASE_URL` server, dropped (connections
/// and all) when this value is dropped.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl PostgresDatabase {
    pub async fn create() -> Self {
        let admin_url = database_url();
        let name = format!("parloir_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"));
        // The name is ours (letters, digits, underscores): safe to splice.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        admin.close().await.expect("closing the admin connection");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
            dropped: false,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database now, ending any connection still open to it.
    pub async fn drop_database(mut self) {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await;
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"));
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("DROP DATABASE {name}: {e}"));
    admin.close().await.expect("closing the admin connection");
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if self.dropped || std::thread::panicking() {
            return; // a failed test keeps its database for a post-mortem
        }
        // Drop may run inside a runtime, which must not block: use a thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database")
                .block_on(drop_database(&admin_url, &name));
        })
        .join()
        .expect("dropping the test database");
    }
}

/// A parloir node serving on a random loopback port, stopped when dropped.
pub struct TestNode {
    pub addr: SocketAddr,
    /// The node's long-lived tasks (fault drills abort them).
    pub supervisor: parloir::supervisor::Supervisor,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestNode {
    /// Builds the node (migrating its store), serves it, and returns once
    /// `/readyz` answers 200.
    pub async fn spawn(config: Config) -> Self {
        Self::spawn_with(AppBuilder::new(config)).await
    }

    /// As `spawn`, from a builder the test has tuned.
    pub async fn spawn_with(builder: AppBuilder) -> Self {
        let app = builder.build().await.expect("the test node builds");
        let addr = app.local_addr();
        let supervisor = app.supervisor();
        let readiness = app.readiness();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        tokio::time::timeout(READY_DEADLINE, readiness.wait_ready())
            .await
            .unwrap_or_else(|_| {
                panic!("the test node at {addr} was not ready within {READY_DEADLINE:?}")
            });
        assert_eq!(
            Self::status_of(addr, "/readyz").await,
            Some(200),
            "a ready node answers /readyz with 200"
        );
        Self {
            addr,
            supervisor,
            stop,
            task: Some(task),
        }
    }

    /// Waits until the node's run ends by itself (not stopped by the test),
    /// and returns how it ended.
    pub async fn ended(&mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("the task is only taken here");
        task.await?
    }

    /// `http://127.0.0.1:PORT`, the base URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the node, waits for its drain, and returns how its run ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let task = self.task.take().expect("the task is only taken here");
        task.await?
    }

    /// The status code of a plain `GET path`, or None if the node did not answer.
    pub async fn get_status(&self, path: &str) -> Option<u16> {
        Self::status_of(self.addr, path).await
    }

    async fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let head = String::from_utf8_lossy(&response);
        head.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
