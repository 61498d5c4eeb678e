//! Honest answers under store faults: a send whose commit cannot be
//! confirmed is answered `UNKNOWN_OUTCOME`, never "nothing was written"; a
//! retry with the same `clientMessageId` returns the stored message and
//! announces it, once; without a retry the node announces it by itself. A
//! real node on a real Postgres whose commit answers after the node's
//! deadline (a deferred trigger sleeps at COMMIT), the official client.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use crate::common::processes::Driver;
use crate::common::{self, PostgresDatabase, SECRET, TestNode, token};
use parloir::Config;
use parloir::config::StoreConfig;
use secrecy::SecretString;

const EVENT: Duration = Duration::from_secs(10);

/// A node whose store call deadline is 2.5 s (acquire 0.5 s + statement
/// 1 s + 1 s), on a database where a message whose content starts with
/// "slow commit" takes 4 s to commit: a deferred constraint trigger sleeps at
/// COMMIT, which Postgres runs after the statement's timeout is disarmed.
/// The insert is done, its commit answers after the node gave up: the
/// outcome is unknown to the node, and the message is stored after all.
async fn node_with_slow_commits(database: &PostgresDatabase) -> TestNode {
    let mut config = Config::for_tests(
        StoreConfig::Postgres {
            url: SecretString::from(database.url().to_owned()),
        },
        SECRET,
    );
    config.db_acquire_timeout = Duration::from_millis(500);
    config.db_statement_timeout = Duration::from_millis(1000);
    let node = TestNode::spawn(config).await;
    let mut db = sqlx::PgConnection::connect(database.url())
        .await
        .expect("a connection to the test database");
    for statement in [
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON messages \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
         WHEN (NEW.content LIKE 'slow commit%') EXECUTE FUNCTION slow_commit()",
    ] {
        sqlx::query(statement)
            .execute(&mut db)
            .await
            .expect("the slow-commit trigger installs");
    }
    node
}

/// alice and bob in a conversation, both joined; returns its id.
async fn joined_pair(d: &mut Driver, node: &TestNode) -> (String, String, String) {
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let (status, created) = d
        .http(
            "POST",
            &format!("{}/api/v1/conversations", node.url()),
            &token(&alice),
            Some(json!({"participantIds": [bob]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let c = created["id"].as_str().expect("an id").to_owned();
    d.connect("alice", &node.url(), &token(&alice)).await;
    d.connect("bob", &node.url(), &token(&bob)).await;
    for name in ["alice", "bob"] {
        let ack = d
            .emit(name, "join-conversation", json!({"conversationId": c}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    (alice, bob, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_commit_is_unconfirmed_is_unknown_and_its_retry_announces_it() {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let node = node_with_slow_commits(&database).await;
    let mut d = Driver::start().await;
    let (_, _, c) = joined_pair(&mut d, &node).await;

    let unsure = d
        .call(json!({"op": "emit", "name": "alice", "event": "send-message", "timeoutMs": 10000,
                     "payload": {"conversationId": c, "content": "slow commit: did it go?", "clientMessageId": "m-1"}}))
        .await;
    assert_eq!(
        unsure["ack"]["error"]["code"], "UNKNOWN_OUTCOME",
        "the commit was not confirmed in time: {unsure}"
    );
    // The first attempt commits after all; the retry finds its message.
    let mut db = sqlx::PgConnection::connect(database.url())
        .await
        .expect("a connection to the test database");
    tokio::time::timeout(EVENT, async {
        loop {
            let stored: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE client_message_id = 'm-1')",
            )
            .fetch_one(&mut db)
            .await
            .expect("a query");
            if stored {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // waiting for the slow commit
        }
    })
    .await
    .expect("the first attempt commits");
    let retried = d
        .call(json!({"op": "emit", "name": "alice", "event": "send-message", "timeoutMs": 10000,
                     "payload": {"conversationId": c, "content": "slow commit: did it go?", "clientMessageId": "m-1"}}))
        .await;
    let retried = &retried["ack"];
    assert_eq!(retried["ok"], true, "the retry settles it: {retried}");
    let id = retried["data"]["id"].clone();
    let heard = d
        .wait(
            "bob",
            "new-message",
            json!({"clientMessageId": "m-1"}),
            EVENT,
        )
        .await;
    assert_eq!(heard["id"], id, "the stored message is announced: {heard}");
    let again = d
        .emit(
            "alice",
            "send-message",
            json!({"conversationId": c, "content": "slow commit: did it go?", "clientMessageId": "m-1"}),
        )
        .await;
    assert_eq!(again["data"]["id"], id, "{again}");
    // A later message as a barrier: nothing announced the message again.
    let barrier = d
        .emit(
            "alice",
            "send-message",
            json!({"conversationId": c, "content": "barrier", "clientMessageId": "m-2"}),
        )
        .await;
    assert_eq!(barrier["ok"], true, "{barrier}");
    d.wait(
        "bob",
        "new-message",
        json!({"clientMessageId": "m-2"}),
        EVENT,
    )
    .await;
    let seen: Vec<_> = d
        .drain("bob")
        .await
        .into_iter()
        .filter(|e| e["event"] == "new-message" && e["args"][0]["clientMessageId"] == "m-1")
        .collect();
    assert!(seen.is_empty(), "announced once: {seen:?}");
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE client_message_id = 'm-1'")
            .fetch_one(&mut db)
            .await
            .expect("a query");
    assert_eq!(stored, 1, "stored once");
    drop(node);
    database.drop_database().await;
}

/// A send answered `UNKNOWN_OUTCOME` whose client never retries: the node
/// looks for the message after the deadline, finds it stored, and
/// announces it by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_of_unknown_outcome_is_announced_without_a_retry() {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let node = node_with_slow_commits(&database).await;
    let mut d = Driver::start().await;
    let (_, _, c) = joined_pair(&mut d, &node).await;
    let unsure = d
        .call(json!({"op": "emit", "name": "alice", "event": "send-message", "timeoutMs": 10000,
                     "payload": {"conversationId": c, "content": "slow commit, never retried", "clientMessageId": "m-9"}}))
        .await;
    assert_eq!(
        unsure["ack"]["error"]["code"], "UNKNOWN_OUTCOME",
        "{unsure}"
    );
    let heard = d
        .wait(
            "bob",
            "new-message",
            json!({"clientMessageId": "m-9"}),
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(heard["content"], "slow commit, never retried", "{heard}");
    drop(node);
    database.drop_database().await;
}
