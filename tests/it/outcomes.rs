//! Honest answers under store faults: a send whose commit cannot be
//! confirmed is answered `UNKNOWN_OUTCOME`, never "nothing was written", and
//! a retry with the same `clientMessageId` returns the stored message and
//! announces it, once. A real node on a real Postgres, reached through a
//! proxy that holds the database's answers back (the commit happens, its
//! answer comes after the node's deadline), driven by the official client.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::common::processes::Driver;
use crate::common::{self, PostgresDatabase, SECRET, StallingProxy, TestNode, token};
use parloir::Config;
use parloir::config::StoreConfig;
use secrecy::SecretString;

const EVENT: Duration = Duration::from_secs(10);

/// `postgres://user@host:port/db` → (host:port, the URL through `proxy`).
fn through(url: &str, proxy: SocketAddr) -> (SocketAddr, String) {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().expect("an authority");
    let target: SocketAddr = authority.parse().expect("DATABASE_URL names host:port");
    (target, url.replacen(authority, &proxy.to_string(), 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_commit_is_unconfirmed_is_unknown_and_its_retry_announces_it() {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let (target, _) = through(database.url(), "127.0.0.1:1".parse().expect("an address"));
    let proxy = StallingProxy::start(target).await;
    let (_, proxied) = through(database.url(), proxy.addr);
    let mut config = Config::for_tests(
        StoreConfig::Postgres {
            url: SecretString::from(proxied),
        },
        SECRET,
    );
    // A store call answers within acquire + statement timeout + 1 s: 2.5 s.
    config.db_acquire_timeout = Duration::from_millis(500);
    config.db_statement_timeout = Duration::from_millis(1000);
    let node = TestNode::spawn(config).await;

    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let mut d = Driver::start().await;
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

    // The insert reaches Postgres and commits; its answer is held back.
    proxy.stall_after(b"INSERT INTO messages");
    let unsure = d
        .call(json!({"op": "emit", "name": "alice", "event": "send-message", "timeoutMs": 10000,
                     "payload": {"conversationId": c, "content": "did it go?", "clientMessageId": "m-1"}}))
        .await;
    assert_eq!(
        unsure["ack"]["error"]["code"], "UNKNOWN_OUTCOME",
        "the commit was not confirmed in time: {unsure}"
    );
    proxy.resume();

    let retried = d
        .emit(
            "alice",
            "send-message",
            json!({"conversationId": c, "content": "did it go?", "clientMessageId": "m-1"}),
        )
        .await;
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
            json!({"conversationId": c, "content": "did it go?", "clientMessageId": "m-1"}),
        )
        .await;
    assert_eq!(again["data"]["id"], id, "{again}");
    // A later message as a barrier: the third attempt announced nothing.
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
    let (_, history) = d
        .http(
            "GET",
            &format!("{}/api/v1/conversations/{c}/messages", node.url()),
            &token(&bob),
            None,
        )
        .await;
    assert_eq!(
        history["messages"].as_array().map(Vec::len),
        Some(2),
        "stored once: {history}"
    );
    drop(node);
    database.drop_database().await;
}
