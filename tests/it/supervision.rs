//! No long-lived task of a node dies silently. A task that fails is
//! restarted while the node reports itself unready; one that keeps failing
//! stops the node with an error (so its pod is replaced). And a token valid
//! for years, which once panicked the expiry task and with it every socket's
//! expiry, expires nobody's socket late. Real nodes (two sharing Postgres
//! and Redis, where every kind of task runs) and the official client.

use std::time::Duration;

use crate::common::processes::Driver;
use crate::common::{self, PostgresDatabase, SECRET, TestNode, token, token_valid_for};
use parloir::config::StoreConfig;
use parloir::supervisor::RestartPolicy;
use parloir::{AppBuilder, Config};
use serde_json::{Value, json};

const EVENT: Duration = Duration::from_secs(10);

async fn sqlite_node(policy: RestartPolicy) -> (TestNode, tempfile::TempDir) {
    common::init_logs();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = StoreConfig::Sqlite {
        path: dir.path().join("parloir.db"),
    };
    let builder = AppBuilder::new(Config::for_tests(store, SECRET)).with_restart_policy(policy);
    (TestNode::spawn_with(builder).await, dir)
}

/// `/readyz` as (status, body), through the official client's `fetch`.
async fn readyz(d: &mut Driver, node: &TestNode) -> (u16, Value) {
    d.http("GET", &format!("{}/readyz", node.url()), "", None)
        .await
}

/// Waits until every task `names` runs (none waits for a restart) and the
/// node reads ready again.
async fn until_running(d: &mut Driver, node: &TestNode, names: &[&str]) {
    tokio::time::timeout(EVENT, async {
        loop {
            let running = node.supervisor.running();
            if names.iter().all(|n| running.contains(n))
                && node.supervisor.all_running()
                && readyz(d, node).await.0 == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // polling the node's own state
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{names:?} run again: running {:?}",
            node.supervisor.running()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_valid_for_years_does_not_stop_the_expiry_of_others() {
    let (node, _dir) = sqlite_node(RestartPolicy::default()).await;
    let (patient, brief) = (common::unique_user("patient"), common::unique_user("brief"));
    let mut d = Driver::start().await;
    let three_years = chrono::Duration::days(3 * 365);
    d.connect(
        "patient",
        &node.url(),
        &token_valid_for(&patient, three_years),
    )
    .await;
    d.connect(
        "brief",
        &node.url(),
        &token_valid_for(&brief, chrono::Duration::seconds(3)),
    )
    .await;
    d.wait("brief", "error", json!({"code": "TOKEN_EXPIRED"}), EVENT)
        .await;
    d.wait(
        "brief",
        "disconnect",
        json!({"reason": "io server disconnect"}),
        EVENT,
    )
    .await;
    assert!(
        node.supervisor.running().contains(&"socket_timers"),
        "the timers task still runs: {:?}",
        node.supervisor.running()
    );
    let still = d
        .emit("patient", "get-presence", json!({"userIds": [brief]}))
        .await;
    assert_eq!(
        still["ok"], true,
        "the long-lived socket is served: {still}"
    );
}

/// Every task of a cluster node is killed in turn; each is restarted, and
/// what it does works again: token expiry, sends (group commit, the shared
/// state's batching), cross-node delivery (the adapter's reader and room
/// subscriptions), the typing sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_killed_is_restarted_and_works_again() {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let prefix = format!("supervision-{}:", uuid::Uuid::new_v4().simple());
    let config = || {
        let mut c = common::cluster_config(database.url(), common::SINGLE_REDIS, &prefix);
        c.typing_ttl = Duration::from_millis(800);
        // A webhook channel, so that the notification worker runs (nobody
        // here is ever offline long enough to be notified).
        c.notify.webhook = Some(parloir::notify::WebhookSettings {
            url: "http://127.0.0.1:9/unused".parse().expect("a URL"),
            key: b"a-webhook-signing-key".to_vec().into(),
            timeout: Duration::from_secs(1),
        });
        c
    };
    let policy = RestartPolicy {
        first_delay: Duration::from_millis(50),
        ..RestartPolicy::default()
    };
    let one = TestNode::spawn_with(AppBuilder::new(config()).with_restart_policy(policy)).await;
    let two = TestNode::spawn(config()).await;
    let tasks = one.supervisor.running();
    for expected in [
        "socket_timers",
        "typing_sweep",
        "welcomes",
        "blocks_refresh",
        "retention",
        "cluster_membership",
        "log_relay",
        "notifier",
        "group_commit",
        "send_quota_batching",
        "commit_effects_batching",
        "adapter_messages",
        "adapter_reconnections",
        "adapter_rooms",
    ] {
        assert!(tasks.contains(&expected), "{expected} runs: {tasks:?}");
    }

    let mut d = Driver::start().await;
    for task in &tasks {
        assert!(one.supervisor.abort(task), "{task} was running");
        until_running(&mut d, &one, &[task]).await;
    }

    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let (status, created) = d
        .http(
            "POST",
            &format!("{}/api/v1/conversations", one.url()),
            &token(&alice),
            Some(json!({"participantIds": [bob]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let conversation = created["id"].as_str().expect("an id").to_owned();
    d.connect("alice", &one.url(), &token(&alice)).await;
    d.connect("bob", &two.url(), &token(&bob)).await;
    for name in ["alice", "bob"] {
        let ack = d
            .emit(
                name,
                "join-conversation",
                json!({"conversationId": conversation}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{name} joins: {ack}");
    }
    let sent = d
        .emit(
            "alice",
            "send-message",
            json!({"conversationId": conversation, "content": "after the restarts"}),
        )
        .await;
    assert_eq!(
        sent["ok"], true,
        "a send commits after the restarts: {sent}"
    );
    d.wait(
        "bob",
        "new-message",
        json!({"content": "after the restarts"}),
        EVENT,
    )
    .await;
    let answer = d
        .emit(
            "bob",
            "send-message",
            json!({"conversationId": conversation, "content": "heard you"}),
        )
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
    d.wait(
        "alice",
        "new-message",
        json!({"content": "heard you"}),
        EVENT,
    )
    .await;
    // The typing sweep ends a typing state that is not repeated.
    let typed = d
        .emit(
            "alice",
            "user-typing",
            json!({"conversationId": conversation}),
        )
        .await;
    assert_eq!(typed["ok"], true, "{typed}");
    d.wait("bob", "user-typing", json!({"userId": alice}), EVENT)
        .await;
    d.wait(
        "bob",
        "user-stopped-typing",
        json!({"userId": alice}),
        EVENT,
    )
    .await;
    // The timers expire a token.
    let brief = common::unique_user("brief");
    d.connect(
        "brief",
        &one.url(),
        &token_valid_for(&brief, chrono::Duration::seconds(2)),
    )
    .await;
    d.wait("brief", "error", json!({"code": "TOKEN_EXPIRED"}), EVENT)
        .await;
    drop((one, two));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_task_down_is_not_ready_until_it_runs_again() {
    let (node, _dir) = sqlite_node(RestartPolicy {
        first_delay: Duration::from_secs(5),
        ..RestartPolicy::default()
    })
    .await;
    let mut d = Driver::start().await;
    assert!(node.supervisor.abort("typing_sweep"));
    let body = tokio::time::timeout(EVENT, async {
        loop {
            let (status, body) = readyz(&mut d, &node).await;
            if status == 503 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await; // polling the node's own state
        }
    })
    .await
    .expect("the node reads unready while the task waits for its restart");
    assert_eq!(body["tasksDown"], json!(["typing_sweep"]), "{body}");
    assert_eq!(body["status"], "restarting", "{body}");
    until_running(&mut d, &node, &["typing_sweep"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_failing_stops_the_node_with_an_error() {
    let (mut node, _dir) = sqlite_node(RestartPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
        give_up_after: 3,
        window: Duration::from_secs(60),
    })
    .await;
    let mut d = Driver::start().await;
    for _ in 0..2 {
        assert!(node.supervisor.abort("socket_timers"));
        until_running(&mut d, &node, &["socket_timers"]).await;
    }
    assert!(node.supervisor.abort("socket_timers"));
    let ended = tokio::time::timeout(EVENT, node.ended())
        .await
        .expect("the node stops by itself");
    let error = ended.expect_err("a node that gives up ends with an error");
    assert!(
        format!("{error:#}").contains("socket_timers"),
        "the error names the task: {error:#}"
    );
}
