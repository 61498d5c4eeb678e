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
