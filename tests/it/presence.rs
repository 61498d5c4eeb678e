//! Presence as a contact sees it, on two nodes sharing Postgres and Redis
//! (a single Redis and a Redis Cluster), driven by the official client and,
//! for connections cut short, by a raw Engine.IO websocket.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::processes::{Driver, RedisKind};
use crate::common::{self, PostgresDatabase, TestNode, token};

const EVENT: Duration = Duration::from_secs(15);

fn redis_var(kind: RedisKind) -> &'static str {
    match kind {
        RedisKind::Single => common::SINGLE_REDIS,
        RedisKind::Cluster => common::REDIS_CLUSTER,
    }
}

async fn two_nodes(
    database: &PostgresDatabase,
    kind: RedisKind,
    tune: impl Fn(&mut parloir::Config),
) -> [TestNode; 2] {
    common::init_logs();
    let prefix = format!("presence-{}:", uuid::Uuid::new_v4().simple());
    let config = || {
        let mut c = common::cluster_config(database.url(), redis_var(kind), &prefix);
        tune(&mut c);
        c
    };
    [
        TestNode::spawn(config()).await,
        TestNode::spawn(config()).await,
    ]
}

/// Creates a conversation of `creator` and `others` on `node`; returns its id.
async fn conversation(d: &mut Driver, node: &TestNode, creator: &str, others: &[&str]) -> String {
    let (status, body) = d
        .http(
            "POST",
            &format!("{}/api/v1/conversations", node.url()),
            &token(creator),
            Some(json!({"participantIds": others})),
        )
        .await;
    assert!(status == 201 || status == 200, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

/// `name` asks about `user` until `online` reads `want`.
async fn until_presence(d: &mut Driver, name: &str, user: &str, want: bool) -> Value {
    tokio::time::timeout(EVENT, async {
        loop {
            let ack = d
                .emit(name, "get-presence", json!({"userIds": [user]}))
                .await;
            assert_eq!(ack["ok"], true, "{ack}");
            if ack["data"]["online"][user] == want {
                return ack["data"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await; // asking again, as a client polls
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{user} never read online={want} to {name}"))
}

/// Handshakes cut short by a connection reset right after the CONNECT
/// packet (while the node records presence in shared state) leave no ghost:
/// the user reads offline again, and may connect as many devices as ever.
async fn a_handshake_cut_short_leaves_no_ghost(kind: RedisKind) {
    let database = PostgresDatabase::create().await;
    let nodes = two_nodes(&database, kind, |c| c.budgets.max_sockets_per_user = 5).await;
    let (ghost, bob) = (common::unique_user("ghost"), common::unique_user("bob"));
    let mut d = Driver::start().await;
    let c = conversation(&mut d, &nodes[0], &ghost, &[&bob]).await;
    d.connect("ghost", &nodes[0].url(), &token(&ghost)).await;
    d.connect("bob", &nodes[1].url(), &token(&bob)).await;
    for (name, content) in [("ghost", "hello"), ("bob", "hi")] {
        let ack = d
            .emit(
                name,
                "send-message",
                json!({"conversationId": c, "content": content}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    until_presence(&mut d, "bob", &ghost, true).await;
    d.close("ghost").await;
    until_presence(&mut d, "bob", &ghost, false).await;

    let reset = d
        .call(json!({"op": "connect-reset", "url": nodes[0].url(), "token": token(&ghost), "count": 20}))
        .await;
    assert_eq!(reset["ok"], true, "{reset}");
    // Whatever the resets recorded is undone: five devices fit under the
    // cap again (a ghost would hold a slot for as long as its node lives).
    let devices = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut connected = Vec::new();
            for i in 0..5 {
                let name = format!("device-{i}");
                match d
                    .try_connect(&name, &nodes[i % 2].url(), &token(&ghost), json!({}))
                    .await
                {
                    Ok(()) => connected.push(name),
                    Err(e) => assert_eq!(e, "too_many_connections"),
                }
            }
            if connected.len() == 5 {
                return connected;
            }
            for name in connected {
                d.close(&name).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // until the watch undoes the ghosts
        }
    })
    .await
    .expect("every slot held by a cut handshake is freed");
    until_presence(&mut d, "bob", &ghost, true).await;
    for name in devices {
        d.close(&name).await;
    }
    // No ghost keeps the user online.
    let offline = until_presence(&mut d, "bob", &ghost, false).await;
    assert!(
        offline["lastSeen"][&ghost].is_string(),
        "offline with a last-seen time: {offline}"
    );
    drop(nodes);
    database.drop_database().await;
}

on_both_redis_kinds!(a_handshake_cut_short_leaves_no_ghost);

/// The names of `event`s `name` received (unconsumed) whose first argument
/// has `field` = `value`.
async fn received(d: &mut Driver, name: &str, event: &str, field: &str, value: &str) -> usize {
    d.drain(name)
        .await
        .iter()
        .filter(|e| e["event"] == event && e["args"][0][field] == value)
        .count()
}

/// Presence flows only between users who both took part in a shared
/// conversation: being added to one (even a group of strangers) reveals
/// nothing, until the user sends, reads or joins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_conversation_with_someone_does_not_reveal_their_presence() {
    let database = PostgresDatabase::create().await;
    let nodes = two_nodes(&database, RedisKind::Single, |_| {}).await;
    let [watcher, target, friend] = ["watcher", "target", "friend"].map(common::unique_user);
    let mut d = Driver::start().await;
    d.connect("watcher", &nodes[0].url(), &token(&watcher))
        .await;
    let snooping = conversation(&mut d, &nodes[0], &watcher, &[&target, &friend]).await;
    d.connect("target", &nodes[1].url(), &token(&target)).await;
    let ack = d
        .emit("watcher", "get-presence", json!({"userIds": [target]}))
        .await;
    assert_eq!(ack["data"]["online"][&target], false, "{ack}");
    assert_eq!(ack["data"]["lastSeen"][&target], Value::Null, "{ack}");
    // The friend took part (joins): the watcher hears of her, not of the target.
    d.connect("friend", &nodes[1].url(), &token(&friend)).await;
    let joined = d
        .emit(
            "friend",
            "join-conversation",
            json!({"conversationId": snooping}),
        )
        .await;
    assert_eq!(joined["ok"], true, "{joined}");
    until_presence(&mut d, "watcher", &friend, true).await;
    d.close("friend").await;
    d.wait("watcher", "user-offline", json!({"userId": friend}), EVENT)
        .await;
    d.close("target").await;
    d.connect("friend", &nodes[1].url(), &token(&friend)).await;
    d.wait("watcher", "user-online", json!({"userId": friend}), EVENT)
        .await;
    assert_eq!(
        received(&mut d, "watcher", "user-offline", "userId", &target).await,
        0,
        "the target's going offline is not announced to the watcher"
    );
    let ack = d
        .emit("watcher", "get-presence", json!({"userIds": [target]}))
        .await;
    assert_eq!(
        ack["data"]["lastSeen"][&target],
        Value::Null,
        "no last-seen leaks: {ack}"
    );
    // Once the target takes part, presence flows both ways.
    d.connect("target", &nodes[1].url(), &token(&target)).await;
    let sent = d
        .emit(
            "target",
            "send-message",
            json!({"conversationId": snooping, "content": "who are you?"}),
        )
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    until_presence(&mut d, "watcher", &target, true).await;
    drop(nodes);
    database.drop_database().await;
}

/// A block, made on one node, takes effect within seconds on sockets open
/// on the other: no one-to-one message, no typing, no read receipt, no
/// presence between the two, both ways; no new conversation from the
/// blocked user. Group messages still flow. Lifting it restores all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_takes_effect_on_open_sockets_of_every_node() {
    let database = PostgresDatabase::create().await;
    let nodes = two_nodes(&database, RedisKind::Single, |_| {}).await;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(common::unique_user);
    let mut d = Driver::start().await;
    let pair = conversation(&mut d, &nodes[0], &alice, &[&bob]).await;
    let group = conversation(&mut d, &nodes[0], &alice, &[&bob, &carol]).await;
    d.connect("alice", &nodes[0].url(), &token(&alice)).await;
    d.connect("bob", &nodes[1].url(), &token(&bob)).await;
    d.connect("carol", &nodes[1].url(), &token(&carol)).await;
    for (name, c) in [
        ("alice", &pair),
        ("bob", &pair),
        ("alice", &group),
        ("bob", &group),
        ("carol", &group),
    ] {
        let ack = d
            .emit(name, "join-conversation", json!({"conversationId": c}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    until_presence(&mut d, "alice", &bob, true).await;

    let (status, body) = d
        .http(
            "POST",
            &format!("{}/api/v1/me/blocks/{bob}", nodes[0].url()),
            &token(&alice),
            None,
        )
        .await;
    assert_eq!(
        (status, body["blocked"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (_, listed) = d
        .http(
            "GET",
            &format!("{}/api/v1/me/blocks", nodes[1].url()),
            &token(&alice),
            None,
        )
        .await;
    assert_eq!(listed["blocks"][0]["userId"], bob.as_str(), "{listed}");

    // Bob, on the other node, cannot write into the pair within seconds.
    let refused = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let ack = d
                .emit(
                    "bob",
                    "send-message",
                    json!({"conversationId": pair, "content": "hey"}),
                )
                .await;
            if ack["ok"] == false {
                return ack;
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // until the block reaches the node
        }
    })
    .await
    .expect("the block reaches bob's node within seconds");
    assert_eq!(refused["error"]["code"], "FORBIDDEN", "{refused}");
    let ack = d
        .emit(
            "alice",
            "send-message",
            json!({"conversationId": pair, "content": "bye"}),
        )
        .await;
    assert_eq!(
        ack["error"]["code"], "FORBIDDEN",
        "the blocker cannot either: {ack}"
    );
    let (status, body) = d
        .http(
            "POST",
            &format!("{}/api/v1/conversations", nodes[1].url()),
            &token(&bob),
            Some(json!({"participantIds": [alice, carol]})),
        )
        .await;
    assert_eq!(
        status, 403,
        "no conversation started with the blocker: {body}"
    );

    // In the group: typing and read receipts reach carol, not alice.
    let ack = d
        .emit("bob", "user-typing", json!({"conversationId": group}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    d.wait("carol", "user-typing", json!({"userId": bob}), EVENT)
        .await;
    let m = d
        .emit(
            "carol",
            "send-message",
            json!({"conversationId": group, "content": "read me"}),
        )
        .await;
    let read = d
        .emit("bob", "mark-as-read", json!({"messageId": m["data"]["id"]}))
        .await;
    assert_eq!(read["ok"], true, "{read}");
    d.wait("carol", "message-read", json!({"userId": bob}), EVENT)
        .await;
    // Group messages still flow; this one is alice's barrier.
    let barrier = d
        .emit(
            "bob",
            "send-message",
            json!({"conversationId": group, "content": "barrier"}),
        )
        .await;
    assert_eq!(barrier["ok"], true, "{barrier}");
    d.wait("alice", "new-message", json!({"content": "barrier"}), EVENT)
        .await;
    let seen = d.drain("alice").await;
    let from_bob = |event: &str| {
        seen.iter()
            .filter(|e| e["event"] == event && e["args"][0]["userId"] == bob.as_str())
            .count()
    };
    assert_eq!(from_bob("user-typing"), 0, "no typing from bob: {seen:?}");
    assert_eq!(from_bob("message-read"), 0, "no receipt from bob: {seen:?}");
    let ack = d
        .emit("alice", "get-presence", json!({"userIds": [bob]}))
        .await;
    assert_eq!(ack["data"]["online"][&bob], false, "no presence: {ack}");
    let ack = d
        .emit("bob", "get-presence", json!({"userIds": [alice]}))
        .await;
    assert_eq!(ack["data"]["online"][&alice], false, "both ways: {ack}");

    // Lifted (over the socket, on the other node): all of it flows again.
    let lifted = d
        .emit("alice", "unblock-user", json!({"userId": bob}))
        .await;
    assert_eq!(lifted["data"]["blocked"], false, "{lifted}");
    tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let ack = d
                .emit(
                    "bob",
                    "send-message",
                    json!({"conversationId": pair, "content": "friends again"}),
                )
                .await;
            if ack["ok"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // until the node reads the lifted block
        }
    })
    .await
    .expect("the lifted block reaches bob's node");
    d.wait(
        "alice",
        "new-message",
        json!({"content": "friends again"}),
        EVENT,
    )
    .await;
    until_presence(&mut d, "alice", &bob, true).await;
    drop(nodes);
    database.drop_database().await;
}
