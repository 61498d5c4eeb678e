//! The official-client conformance suite: `tests/js/conformance/*.test.mjs`
//! (node:test + socket.io-client v4, checking shared/PROTOCOL.md on the wire)
//! run against a real in-process node, once per store.
//!
//! Needs `node` and `tests/js/node_modules` (`npm ci --prefix tests/js`);
//! scripts/test provides both, and the Postgres server behind `DATABASE_URL`.
//!
//! For development:
//! - `PARLOIR_JS_FILTER=regex` runs only the JS tests whose name matches
//!   (`--test-name-pattern`);
//! - `PARLOIR_JS_FILES=send,join` runs only the files whose name contains
//!   one of the comma-separated parts;
//! - `RUST_LOG=parloir=debug` shows the node's logs with the output.
//!
//! To run the suite by hand against any node:
//! `PARLOIR_URL=http://127.0.0.1:PORT PARLOIR_JWT_SECRET=... node --test tests/js/conformance/`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::{PostgresDatabase, TestNode};
use parloir::Config;
use parloir::config::{RedisConfig, SharedState, StoreConfig};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The whole JS run, all files, must finish within this.
const SUITE_DEADLINE: Duration = Duration::from_secs(300);
/// Each JS test must finish within this (node's `--test-timeout`).
const JS_TEST_TIMEOUT_MS: u32 = 60_000;
/// JS files run in parallel processes (their users are unique, so they never interfere).
const JS_FILE_CONCURRENCY: u32 = 3;

/// Which files of `tests/js/conformance/` a run covers.
#[derive(Clone, Copy, Debug)]
enum Suite {
    /// Everything but `live-*`: connect, join, send, the HTTP API.
    Core,
    /// `live-*`: read cursors, unread counts, typing, presence (issue 4).
    Live,
}

impl Suite {
    fn includes(self, file_name: &str) -> bool {
        let live = file_name.starts_with("live-");
        match self {
            Suite::Core => !live,
            Suite::Live => live,
        }
    }
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

/// The suite's files, relative to `tests/js`, sorted, narrowed by `PARLOIR_JS_FILES`.
fn suite_files(suite: Suite) -> Vec<String> {
    let only: Vec<String> = std::env::var("PARLOIR_JS_FILES")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let dir = js_dir().join("conformance");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".test.mjs") && suite.includes(name))
        .filter(|name| only.is_empty() || only.iter().any(|part| name.contains(part.as_str())))
        .map(|name| format!("conformance/{name}"))
        .collect();
    files.sort();
    files
}

/// A fresh HS256 secret (the node wants at least 32 bytes).
fn test_secret() -> String {
    format!("parloir-conformance-{}", uuid::Uuid::new_v4().simple())
}

/// Runs the JS files of `suite` against `nodes` (with two, the harness
/// spreads sockets and requests over both), printing node's test output as
/// it comes, and panics unless every JS test passed.
async fn run_js_suite(nodes: &[&TestNode], secret: &str, suite: Suite, store: &str) {
    let dir = js_dir();
    assert!(
        dir.join("node_modules").join("socket.io-client").is_dir(),
        "{} has no node_modules: run `npm ci --prefix tests/js` (scripts/test does)",
        dir.display()
    );
    let files = suite_files(suite);
    if files.is_empty() && std::env::var_os("PARLOIR_JS_FILES").is_some() {
        println!("[{store}] PARLOIR_JS_FILES selects no {suite:?} file: nothing to run");
        return;
    }
    assert!(
        !files.is_empty(),
        "no {suite:?} test files in {}",
        dir.display()
    );

    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(format!("--test-timeout={JS_TEST_TIMEOUT_MS}"))
        .arg(format!("--test-concurrency={JS_FILE_CONCURRENCY}"));
    if let Ok(pattern) = std::env::var("PARLOIR_JS_FILTER") {
        command.arg(format!("--test-name-pattern={pattern}"));
    }
    command
        .args(&files)
        .env("PARLOIR_URL", nodes[0].url())
        .env("PARLOIR_JWT_SECRET", secret)
        .env_remove("PARLOIR_URL_2")
        .env_remove("FORCE_COLOR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    if let Some(second) = nodes.get(1) {
        command.env("PARLOIR_URL_2", second.url());
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    println!(
        "[{store}] node --test {} against {}",
        files.join(" "),
        urls.join(" and ")
    );
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting `node` (is Node.js 20+ installed?): {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();

    let run = async {
        let (mut out_open, mut err_open) = (true, true);
        let mut failures: Vec<String> = Vec::new();
        let mut tests_run: Option<u32> = None;
        while out_open || err_open {
            tokio::select! {
                line = stdout.next_line(), if out_open => match line.expect("reading node's stdout") {
                    Some(line) => {
                        let trimmed = line.trim();
                        if trimmed.starts_with('✖')
                            && trimmed != "✖ failing tests:"
                            && !failures.iter().any(|f| f == trimmed)
                        {
                            failures.push(trimmed.to_owned());
                        }
                        if let Some(n) = trimmed.strip_prefix("ℹ tests ") {
                            tests_run = n.parse().ok();
                        }
                        println!("[{store}] {line}");
                    }
                    None => out_open = false,
                },
                line = stderr.next_line(), if err_open => match line.expect("reading node's stderr") {
                    Some(line) => eprintln!("[{store}] {line}"),
                    None => err_open = false,
                },
            }
        }
        let status: ExitStatus = child.wait().await.expect("waiting for node");
        (status, failures, tests_run)
    };
    let (status, failures, tests_run) = match tokio::time::timeout(SUITE_DEADLINE, run).await {
        Ok(outcome) => outcome,
        Err(_) => {
            panic!("the {suite:?} JS suite on {store} did not finish within {SUITE_DEADLINE:?}")
        }
    };
    assert!(
        status.success(),
        "the {suite:?} JS conformance suite failed on {store} ({status}); failing tests:\n{}",
        failures.join("\n")
    );
    if std::env::var_os("PARLOIR_JS_FILTER").is_none() {
        assert!(
            tests_run.is_some_and(|n| n > 0),
            "the {suite:?} JS suite on {store} ran no test (reported: {tests_run:?})"
        );
    }
}

async fn on_sqlite(suite: Suite) {
    common::init_logs();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let secret = test_secret();
    let store = StoreConfig::Sqlite {
        path: dir.path().join("parloir.db"),
    };
    let node = TestNode::spawn(Config::for_tests(store, &secret)).await;
    run_js_suite(&[&node], &secret, suite, "sqlite").await;
    node.shutdown().await.expect("the node drains cleanly");
}

async fn on_postgres(suite: Suite) {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let secret = test_secret();
    let store = StoreConfig::Postgres {
        url: SecretString::from(database.url().to_owned()),
    };
    let node = TestNode::spawn(Config::for_tests(store, &secret)).await;
    run_js_suite(&[&node], &secret, suite, "postgres").await;
    node.shutdown().await.expect("the node drains cleanly");
    database.drop_database().await;
}

/// Two nodes sharing one Postgres database and one Redis or Redis Cluster
/// (`PARLOIR_TEST_REDIS_URL` or `PARLOIR_TEST_REDIS_CLUSTER_URL`, a key
/// prefix of their own), as in production behind a sticky load balancer.
async fn on_two_nodes(suite: Suite, redis_var: &str) {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let redis_url = std::env::var(redis_var).unwrap_or_else(|_| {
        panic!("{redis_var} is not set: run scripts/test (it starts a throwaway Redis and Redis Cluster)")
    });
    let secret = test_secret();
    let prefix = format!("conformance-{}:", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let store = StoreConfig::Postgres {
            url: SecretString::from(database.url().to_owned()),
        };
        let mut config = Config::for_tests(store, &secret);
        config.shared = SharedState::Redis(RedisConfig {
            url: SecretString::from(redis_url.clone()),
            pool_size: 2,
            command_timeout: Duration::from_secs(2),
            prefix: prefix.clone(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
        });
        nodes.push(TestNode::spawn(config).await);
    }
    let store = format!("two nodes on {redis_var}");
    run_js_suite(&[&nodes[0], &nodes[1]], &secret, suite, &store).await;
    for node in nodes {
        node.shutdown().await.expect("the node drains cleanly");
    }
    database.drop_database().await;
}

use common::{REDIS_CLUSTER, SINGLE_REDIS};

#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_passes_on_two_nodes_sharing_redis() {
    on_two_nodes(Suite::Core, SINGLE_REDIS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_conformance_suite_passes_on_two_nodes_sharing_redis() {
    on_two_nodes(Suite::Live, SINGLE_REDIS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_passes_on_two_nodes_sharing_a_redis_cluster() {
    on_two_nodes(Suite::Core, REDIS_CLUSTER).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_conformance_suite_passes_on_two_nodes_sharing_a_redis_cluster() {
    on_two_nodes(Suite::Live, REDIS_CLUSTER).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_passes_on_sqlite() {
    on_sqlite(Suite::Core).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_suite_passes_on_postgres() {
    on_postgres(Suite::Core).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_conformance_suite_passes_on_sqlite() {
    on_sqlite(Suite::Live).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_conformance_suite_passes_on_postgres() {
    on_postgres(Suite::Live).await;
}
