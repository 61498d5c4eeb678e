//! Retention (issue #14) as operators and clients meet it: the
//! `parloir retention` command, and archived conversations through a real
//! node's HTTP API and sockets. The rules themselves are the store
//! contract's (`store_contract::retention`).

use crate::common;
use crate::common::{SECRET, token};

use chrono::TimeDelta;
use common::processes::Driver;
use common::{PostgresDatabase, TestNode};
use parloir::Config;
use parloir::config::StoreConfig;
use parloir::domain::{ConversationId, Limits, NewConversation, UserId, now_millis};
use parloir::service::{RetentionJob, RunOutcome};
use parloir::store::Store;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn postgres(database: &PostgresDatabase) -> StoreConfig {
    StoreConfig::Postgres {
        url: SecretString::from(database.url().to_owned()),
    }
}

/// A conversation between `members` created `days` days ago.
async fn conversation_created_days_ago(
    store: &Store,
    members: [&str; 2],
    days: i64,
) -> ConversationId {
    let new = NewConversation::parse(
        &UserId::parse("user", members[0]).expect("a user"),
        &[members[1].to_owned()],
        None,
        &Limits::default(),
    )
    .expect("a conversation");
    store
        .conversations
        .create_conversation(
            ConversationId::new_random(),
            &new,
            now_millis() - TimeDelta::days(days),
        )
        .await
        .expect("create")
        .0
        .id
}

/// `parloir retention ARGS` on `database`; its standard output.
async fn retention_command(database: &PostgresDatabase, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parloir"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database.url())
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .arg("retention")
        .args(args)
        .output()
        .await
        .expect("the parloir binary runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    assert!(
        out.status.success(),
        "parloir retention {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number on the output line of `action` (`archived 1 conversations...`).
fn reported(output: &str, action: &str) -> u64 {
    output
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(action)).then(|| words.next())?
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count for {action} in:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_command_counts_then_changes_and_says_what() {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let store = parloir::app::open_store(
        &Config::for_tests(postgres(&database), SECRET),
        true,
        &parloir::supervisor::Supervisor::default(),
    )
    .await
    .expect("the store opens and migrates");
    conversation_created_days_ago(&store, ["cli-alice", "cli-bob"], 365).await;
    conversation_created_days_ago(&store, ["cli-alice", "cli-carol"], 120).await;
    conversation_created_days_ago(&store, ["cli-alice", "cli-dave"], 10).await;

    let dry = retention_command(&database, &["--dry-run"]).await;
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(reported(&dry, "archived"), 2, "{dry}");
    assert_eq!(reported(&dry, "purged"), 0, "{dry}");
    assert_eq!(reported(&dry, "deleted"), 0, "{dry}");
    assert_eq!(
        reported(
            &retention_command(&database, &["--dry-run"]).await,
            "archived"
        ),
        2,
        "a dry run changes nothing"
    );

    let run = retention_command(&database, &[]).await;
    assert!(run.contains("completed"), "{run}");
    assert_eq!(reported(&run, "archived"), 2, "{run}");
    let after = retention_command(&database, &["--dry-run"]).await;
    assert_eq!(reported(&after, "archived"), 0, "{after}");
    database.drop_database().await;
}

/// The ids of a conversation list page, and its `nextCursor`.
fn page(body: &Value) -> (Vec<String>, Option<String>) {
    let ids = body["conversations"]
        .as_array()
        .unwrap_or_else(|| panic!("a conversation list: {body}"))
        .iter()
        .map(|c| c["id"].as_str().expect("an id").to_owned())
        .collect();
    (ids, body["nextCursor"].as_str().map(str::to_owned))
}

/// `GET {api}/conversations{query}` as `token`'s user: the page.
async fn list(
    d: &mut Driver,
    api: &str,
    token: &str,
    query: &str,
) -> (Vec<String>, Option<String>) {
    let url = format!("{api}/conversations{query}");
    let (status, body) = d.http("GET", &url, token, None).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    page(&body)
}

/// Archival as a client sees it: a conversation idle past the archive age
/// leaves `GET /api/v1/conversations`, is listed with `?archived=true`
/// (paged the same way), stays readable and joinable, and comes back with
/// a new message. The job runs on the node's database, as another node (or
/// `parloir retention`) would, at a `now` 91 days ahead.
async fn archived_conversations_leave_the_list_until_a_new_message(store: StoreConfig) {
    common::init_logs();
    let config = Config::for_tests(store, SECRET);
    let node = TestNode::spawn(config.clone()).await;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(common::unique_user);
    let alices = token(&alice);
    let mut d = Driver::start().await;
    let api = format!("{}/api/v1", node.url());
    let mut created = Vec::new();
    for other in [&bob, &carol] {
        let (status, body) = d
            .http(
                "POST",
                &format!("{api}/conversations"),
                &alices,
                Some(json!({"participantIds": [other]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        created.push(body["id"].as_str().expect("an id").to_owned());
    }
    // Most recent activity first: carol's, then bob's.
    let both = vec![created[1].clone(), created[0].clone()];
    assert_eq!(list(&mut d, &api, &alices, "").await, (both.clone(), None));
    assert_eq!(
        list(&mut d, &api, &alices, "?archived=true").await,
        (vec![], None)
    );

    let job = RetentionJob::new(
        parloir::app::open_store(&config, false, &parloir::supervisor::Supervisor::default())
            .await
            .expect("the node's store"),
        config.retention.policy,
    );
    let run = job
        .run_once(
            now_millis() + TimeDelta::days(91),
            &CancellationToken::new(),
        )
        .await;
    assert!(matches!(run.outcome, RunOutcome::Completed), "{run:?}");
    assert_eq!(run.changed.archived, 2);

    assert_eq!(list(&mut d, &api, &alices, "").await, (vec![], None));
    assert_eq!(
        list(&mut d, &api, &alices, "?archived=false").await,
        (vec![], None)
    );
    assert_eq!(
        list(&mut d, &api, &alices, "?archived=true").await,
        (both.clone(), None)
    );
    let (first, cursor) = list(&mut d, &api, &alices, "?archived=true&limit=1").await;
    assert_eq!(first, vec![both[0].clone()]);
    let cursor = cursor.expect("a second page");
    assert_eq!(
        list(
            &mut d,
            &api,
            &alices,
            &format!("?archived=true&limit=1&cursor={cursor}")
        )
        .await,
        (vec![both[1].clone()], None)
    );
    let (status, body) = d
        .http(
            "GET",
            &format!("{api}/conversations?archived=maybe"),
            &alices,
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION", "{body}");

    // Archived is not gone: its history reads and its room can be joined.
    let bobs_conversation = &created[0];
    let (status, body) = d
        .http(
            "GET",
            &format!("{api}/conversations/{bobs_conversation}/messages"),
            &alices,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    d.connect("bob", &node.url(), &token(&bob)).await;
    let ack = d
        .emit(
            "bob",
            "join-conversation",
            json!({"conversationId": bobs_conversation}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // A new message brings it back, for both participants.
    let (status, body) = d
        .http(
            "POST",
            &format!("{api}/conversations/{bobs_conversation}/messages"),
            &alices,
            Some(json!({"content": "still there?"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        list(&mut d, &api, &alices, "").await,
        (vec![bobs_conversation.clone()], None)
    );
    assert_eq!(
        list(&mut d, &api, &alices, "?archived=true").await,
        (vec![created[1].clone()], None)
    );
    let (status, body) = d
        .http("GET", &format!("{api}/conversations"), &token(&bob), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(page(&body).0, vec![bobs_conversation.clone()]);

    // The run was counted by this process's metrics, which the node serves.
    let (status, metrics) = d
        .http("GET", &format!("{}/metrics", node.url()), "", None)
        .await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"parloir_retention_rows_total{action="archived"} 2"#),
        "{metrics}"
    );
    node.shutdown().await.expect("the node drains cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_conversations_leave_the_list_until_a_new_message_on_postgres() {
    let database = PostgresDatabase::create().await;
    archived_conversations_leave_the_list_until_a_new_message(postgres(&database)).await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_conversations_leave_the_list_until_a_new_message_on_sqlite() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    archived_conversations_leave_the_list_until_a_new_message(StoreConfig::Sqlite {
        path: dir.path().join("parloir.db"),
    })
    .await;
}
