//! Cluster behaviour through failures, with real processes: two parloir
//! nodes sharing a Redis and a Postgres of this test's own, the official
//! Socket.IO client, and a node SIGKILLed, Redis killed and restarted empty,
//! Postgres stopped and started. Every Redis test runs twice: on one Redis
//! and on a three-master Redis Cluster.

use crate::common;
use crate::common::{SECRET, token};

use std::time::Duration;

use common::PostgresDatabase;
use common::processes::{Driver, NodeProcess, PostgresServer, RedisCluster, RedisKind, TestRedis};
use serde_json::{Value, json};

/// Heartbeat every 200 ms; a node silent for 1 s is dead.
const HEARTBEAT_MS: &str = "200";
const NODE_TTL_MS: &str = "1000";
const EVENT: Duration = Duration::from_secs(5);

fn node_env(
    database_url: &str,
    redis: Option<&TestRedis>,
    prefix: &str,
    id: &str,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("PARLOIR_NODE_ID", id.to_owned()),
        ("PARLOIR_DB_ACQUIRE_TIMEOUT_MS", "1000".to_owned()),
        ("PARLOIR_DRAIN_GRACE_SECS", "1".to_owned()),
    ];
    if let Some(redis) = redis {
        env.extend([
            ("REDIS_URL", redis.url()),
            ("PARLOIR_REDIS_PREFIX", prefix.to_owned()),
            ("PARLOIR_HEARTBEAT_MS", HEARTBEAT_MS.to_owned()),
            ("PARLOIR_NODE_TTL_MS", NODE_TTL_MS.to_owned()),
        ]);
    }
    env
}

/// A fresh database, a Redis of `kind` and two nodes sharing both under one
/// key prefix: "node-a" and `second`.
async fn two_nodes(
    kind: RedisKind,
    second: &str,
) -> (PostgresDatabase, TestRedis, NodeProcess, NodeProcess) {
    let db = PostgresDatabase::create().await;
    let redis = TestRedis::start(kind).await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let a = NodeProcess::start(&node_env(db.url(), Some(&redis), &prefix, "node-a")).await;
    let b = NodeProcess::start(&node_env(db.url(), Some(&redis), &prefix, second)).await;
    (db, redis, a, b)
}

async fn create_conversation(
    d: &mut Driver,
    node: &NodeProcess,
    creator: &str,
    others: &[&str],
) -> String {
    let (status, body) = d
        .http(
            "POST",
            &format!("{}/api/v1/conversations", node.url),
            &token(creator),
            Some(json!({"participantIds": others})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("a conversation id").to_owned()
}

/// `who` joins the conversation's room and has read its history.
async fn join(d: &mut Driver, who: &str, conversation: &str) {
    ok_data(
        &d.emit(
            who,
            "join-conversation",
            json!({"conversationId": conversation}),
        )
        .await,
    );
    d.wait(
        who,
        "conversation-history",
        json!({"conversationId": conversation}),
        EVENT,
    )
    .await;
}

fn ok_data(ack: &Value) -> &Value {
    assert_eq!(ack["ok"], true, "expected a successful ack, got {ack}");
    &ack["data"]
}

/// A counter or gauge of a node's `/metrics` (0 when absent).
async fn metric(d: &mut Driver, node: &NodeProcess, name: &str) -> f64 {
    let (_, body) = d
        .http("GET", &format!("{}/metrics", node.url), "", None)
        .await;
    let text = body.as_str().expect("metrics are text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

const RECEIVED: &str = "parloir_adapter_messages_received_total";

// The point of routing by room: a node hears a conversation's broadcasts
// only while one of its sockets is in the conversation (or in the room of a
// user they concern), read from the node's own metric.
on_both_redis_kinds!(a_node_receives_only_the_broadcasts_of_rooms_it_holds_sockets_in);
async fn a_node_receives_only_the_broadcasts_of_rooms_it_holds_sockets_in(kind: RedisKind) {
    let (db, redis, a, c) = two_nodes(kind, "node-c").await;
    let mut d = Driver::start().await;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(common::unique_user);
    let busy = create_conversation(&mut d, &a, &alice, &[&bob]).await;
    let barrier = create_conversation(&mut d, &a, &dave, &[&carol]).await;
    d.connect("alice", &a.url, &token(&alice)).await;
    d.connect("bob", &a.url, &token(&bob)).await;
    d.connect("dave", &a.url, &token(&dave)).await;
    d.connect("carol", &c.url, &token(&carol)).await;
    for (who, conversation) in [
        ("alice", &busy),
        ("bob", &busy),
        ("dave", &barrier),
        ("carol", &barrier),
    ] {
        join(&mut d, who, conversation).await;
    }
    let send = |conversation: &str, content: String| json!({"conversationId": conversation, "content": content});

    let before = metric(&mut d, &c, RECEIVED).await;
    for i in 0..20 {
        let ack = d
            .emit("alice", "send-message", send(&busy, format!("busy #{i}")))
            .await;
        let id = ok_data(&ack)["id"].clone();
        d.wait("bob", "new-message", json!({"id": id}), EVENT).await;
    }
    // Barrier: one message node C must hear (carol is there), after which
    // anything of the busy conversation would have arrived too.
    let ack = d
        .emit("dave", "send-message", send(&barrier, "to carol".into()))
        .await;
    let id = ok_data(&ack)["id"].clone();
    d.wait("carol", "new-message", json!({"id": id}), EVENT)
        .await;
    d.wait(
        "carol",
        "unread-count-updated",
        json!({"conversationId": barrier}),
        EVENT,
    )
    .await;
    let after = metric(&mut d, &c, RECEIVED).await;
    assert_eq!(
        after - before,
        2.0,
        "node C received the barrier's new-message and carol's unread update, \
         and nothing of the 20 messages (40 broadcasts) between alice and bob"
    );

    // Once a socket of node C joins the busy conversation, C hears it.
    d.connect("bob-2", &c.url, &token(&bob)).await;
    join(&mut d, "bob-2", &busy).await;
    let ack = d
        .emit("alice", "send-message", send(&busy, "now C listens".into()))
        .await;
    let id = ok_data(&ack)["id"].clone();
    d.wait("bob-2", "new-message", json!({"id": id}), EVENT)
        .await;
    assert!(metric(&mut d, &c, RECEIVED).await > after);
    drop((a, c, redis));
    db.drop_database().await;
}

on_both_redis_kinds!(presence_spans_nodes_and_a_killed_nodes_users_go_offline_once);
async fn presence_spans_nodes_and_a_killed_nodes_users_go_offline_once(kind: RedisKind) {
    let (db, _redis, a, b) = two_nodes(kind, "node-b").await;
    let mut d = Driver::start().await;
    let (alice, bob, carol) = (
        common::unique_user("alice"),
        common::unique_user("bob"),
        common::unique_user("carol"),
    );
    let with_alice = create_conversation(&mut d, &a, &alice, &[&bob]).await;
    let with_carol = create_conversation(&mut d, &b, &carol, &[&bob]).await;

    d.connect("bob", &b.url, &token(&bob)).await;
    // Presence flows between users who both took part: the creators did, bob joins.
    join(&mut d, "bob", &with_alice).await;
    join(&mut d, "bob", &with_carol).await;
    d.connect("alice-1", &a.url, &token(&alice)).await;
    d.wait("bob", "user-online", json!({"userId": alice}), EVENT)
        .await;
    d.connect("alice-2", &b.url, &token(&alice)).await;
    d.close("alice-1").await;
    // Barrier: carol comes online after alice's device changes; bob must see
    // carol's online, and nothing about alice in between.
    d.connect("carol", &a.url, &token(&carol)).await;
    d.wait("bob", "user-online", json!({"userId": carol}), EVENT)
        .await;
    let between = d.drain("bob").await;
    assert!(
        !between
            .iter()
            .any(|e| e["args"][0]["userId"] == json!(alice)),
        "alice kept a device on node B: no offline and no second online, got {between:?}"
    );
    let presence = d
        .emit(
            "bob",
            "get-presence",
            json!({"userIds": [alice.clone(), carol.clone()]}),
        )
        .await;
    assert_eq!(ok_data(&presence)["online"][&alice], true, "{presence}");

    // Node A dies without a goodbye; carol was only there.
    a.kill().await;
    let offline = d
        .wait(
            "bob",
            "user-offline",
            json!({"userId": carol}),
            Duration::from_secs(10),
        )
        .await;
    assert!(offline["lastSeenAt"].is_string(), "{offline}");
    let presence = d
        .emit(
            "bob",
            "get-presence",
            json!({"userIds": [alice.clone(), carol.clone()]}),
        )
        .await;
    assert_eq!(
        ok_data(&presence)["online"][&alice],
        true,
        "alice's device on B is unaffected: {presence}"
    );
    assert_eq!(ok_data(&presence)["online"][&carol], false, "{presence}");
    // Barrier: alice's last device leaves; by then any duplicate offline for carol would have arrived.
    d.close("alice-2").await;
    d.wait("bob", "user-offline", json!({"userId": alice}), EVENT)
        .await;
    let rest = d.drain("bob").await;
    assert!(
        !rest
            .iter()
            .any(|e| e["event"] == "user-offline" && e["args"][0]["userId"] == json!(carol)),
        "carol's offline is announced exactly once: {rest:?}"
    );
    drop(b);
    db.drop_database().await;
}

on_both_redis_kinds!(a_drained_nodes_users_go_offline_for_their_contacts_elsewhere);
async fn a_drained_nodes_users_go_offline_for_their_contacts_elsewhere(kind: RedisKind) {
    let (db, redis, a, b) = two_nodes(kind, "node-b").await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &a, &alice, &[&bob]).await;
    d.connect("bob", &b.url, &token(&bob)).await;
    join(&mut d, "bob", &conversation).await;
    d.connect("alice", &a.url, &token(&alice)).await;
    d.wait("bob", "user-online", json!({"userId": alice}), EVENT)
        .await;

    // A rolling deploy drains node A; alice does not come back (her laptop is shut).
    // socketioxide closes a namespace before its sockets, so node A cannot tell
    // anyone: node B, seeing A gone, announces its users' departures. At worst
    // after A's membership expires (20 s).
    assert_eq!(a.terminate().await, Some(0), "a drained node exits cleanly");
    let offline = d
        .wait(
            "bob",
            "user-offline",
            json!({"userId": alice}),
            Duration::from_secs(25),
        )
        .await;
    assert!(offline["lastSeenAt"].is_string(), "{offline}");
    let presence = d
        .emit("bob", "get-presence", json!({"userIds": [alice.clone()]}))
        .await;
    assert_eq!(ok_data(&presence)["online"][&alice], false, "{presence}");
    drop((b, redis));
    db.drop_database().await;
}

on_both_redis_kinds!(cross_node_delivery_and_counters_survive_a_redis_restart);
async fn cross_node_delivery_and_counters_survive_a_redis_restart(kind: RedisKind) {
    let (db, mut redis, a, b) = two_nodes(kind, "node-b").await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &a, &alice, &[&bob]).await;
    d.connect("alice", &a.url, &token(&alice)).await;
    d.connect("bob", &b.url, &token(&bob)).await;
    for who in ["alice", "bob"] {
        join(&mut d, who, &conversation).await;
    }
    let send = |content: String| json!({"conversationId": conversation, "content": content});

    let first = d
        .emit("alice", "send-message", send("before the outage".into()))
        .await;
    let first_id = ok_data(&first)["id"].as_str().expect("an id").to_owned();
    d.wait("bob", "new-message", json!({"id": first_id}), EVENT)
        .await;

    redis.kill().await;
    let during = d
        .emit("alice", "send-message", send("during the outage".into()))
        .await;
    let during_id = ok_data(&during)["id"]
        .as_str()
        .expect("stored and acked while Redis is down")
        .to_owned();
    d.wait("alice", "new-message", json!({"id": during_id}), EVENT)
        .await; // local delivery still works
    // Readiness stays 200 (a shared outage must not empty the Service) but says so.
    let (status, ready) = d.http("GET", &format!("{}/readyz", a.url), "", None).await;
    assert_eq!(
        (status, &ready["status"], &ready["redis"]),
        (200, &json!("degraded"), &json!("down")),
        "{ready}"
    );
    let (_, metrics) = d.http("GET", &format!("{}/metrics", a.url), "", None).await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("parloir_redis_up 0")),
        "the outage shows in metrics"
    );

    redis.restart().await;
    let mut sent = vec![first_id.clone(), during_id.clone()];
    let mut resumed = false;
    for attempt in 0..40 {
        let ack = d
            .emit(
                "alice",
                "send-message",
                send(format!("after the restart #{attempt}")),
            )
            .await;
        let id = ok_data(&ack)["id"].as_str().expect("an id").to_owned();
        sent.push(id.clone());
        if d.try_wait(
            "bob",
            "new-message",
            json!({"id": id}),
            Duration::from_millis(500),
        )
        .await
        .is_some()
        {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "cross-node delivery did not resume after Redis came back"
    );
    // Redis forgot who is connected; node A records its sockets again at its
    // next heartbeat, so alice, connected all along, reads online again.
    let online_again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let presence = d
                .emit("bob", "get-presence", json!({"userIds": [alice.clone()]}))
                .await;
            if ok_data(&presence)["online"][&alice] == true {
                return;
            }
            d.try_wait(
                "bob",
                "user-online",
                json!({"userId": alice}),
                Duration::from_millis(250),
            )
            .await;
        }
    })
    .await;
    assert!(
        online_again.is_ok(),
        "alice's presence was recorded again after the restart"
    );

    // Bob rejoins from the last message he is sure of and gets exactly what followed.
    let ack = d
        .emit(
            "bob",
            "join-conversation",
            json!({"conversationId": conversation, "after": first_id}),
        )
        .await;
    ok_data(&ack);
    let history = d
        .wait(
            "bob",
            "conversation-history",
            json!({"conversationId": conversation}),
            EVENT,
        )
        .await;
    let ids: Vec<String> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ids,
        sent[1..].to_vec(),
        "everything after the last seen message, once, in order"
    );

    // Redis lost the unread counters: the next send rebuilds them from the read cursors.
    let (_, unread) = d
        .http(
            "GET",
            &format!("{}/api/v1/unread", b.url),
            &token(&bob),
            None,
        )
        .await;
    assert_eq!(unread["totalUnread"], json!(sent.len()), "{unread}");
    let last = d
        .emit("alice", "send-message", send("counted".into()))
        .await;
    ok_data(&last);
    let update = d
        .wait(
            "bob",
            "unread-count-updated",
            json!({"conversationId": conversation, "totalUnread": sent.len() + 1}),
            EVENT,
        )
        .await;
    assert_eq!(
        update["conversationUnread"],
        json!(sent.len() + 1),
        "{update}"
    );
    drop((a, b));
    db.drop_database().await;
}

// A pod restarts under its name (the node id): what its previous process
// recorded must not keep its users online, and it must not wait for the
// node TTL either, since the new process heartbeats under the same id.
on_both_redis_kinds!(a_node_restarted_under_its_id_forgets_its_previous_sockets);
async fn a_node_restarted_under_its_id_forgets_its_previous_sockets(kind: RedisKind) {
    let db = PostgresDatabase::create().await;
    let redis = TestRedis::start(kind).await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let env = |id: &str| {
        let mut env = node_env(db.url(), Some(&redis), &prefix, id);
        // A TTL far longer than the test's deadline: the sweep cannot be what
        // announces the offline.
        for (k, v) in &mut env {
            match *k {
                "PARLOIR_HEARTBEAT_MS" => *v = "1000".to_owned(),
                "PARLOIR_NODE_TTL_MS" => *v = "60000".to_owned(),
                _ => {}
            }
        }
        env
    };
    let a = NodeProcess::start(&env("node-a")).await;
    let b = NodeProcess::start(&env("node-b")).await;
    let mut d = Driver::start().await;
    let (bob, carol) = (common::unique_user("bob"), common::unique_user("carol"));
    let conversation = create_conversation(&mut d, &b, &carol, &[&bob]).await;
    d.connect("bob", &b.url, &token(&bob)).await;
    join(&mut d, "bob", &conversation).await; // both took part: presence flows
    d.connect("carol", &a.url, &token(&carol)).await;
    d.wait("bob", "user-online", json!({"userId": carol}), EVENT)
        .await;

    a.kill().await;
    let _a_again = NodeProcess::start(&env("node-a")).await;
    d.wait("bob", "user-offline", json!({"userId": carol}), EVENT)
        .await;
    let presence = d
        .emit("bob", "get-presence", json!({"userIds": [carol.clone()]}))
        .await;
    assert_eq!(ok_data(&presence)["online"][&carol], false, "{presence}");
    drop(b);
    db.drop_database().await;
}

// A disconnection that happens while Redis does not answer is recorded
// once it answers again; otherwise the user would read online until the
// node dies.
on_both_redis_kinds!(a_disconnection_during_a_redis_stall_is_recorded_afterwards);
async fn a_disconnection_during_a_redis_stall_is_recorded_afterwards(kind: RedisKind) {
    let db = PostgresDatabase::create().await;
    let redis = TestRedis::start(kind).await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let env = |id| {
        let mut env = node_env(db.url(), Some(&redis), &prefix, id);
        env.push(("PARLOIR_REDIS_TIMEOUT_MS", "500".to_owned()));
        env
    };
    let a = NodeProcess::start(&env("node-a")).await;
    let b = NodeProcess::start(&env("node-b")).await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &b, &alice, &[&bob]).await;
    d.connect("bob", &b.url, &token(&bob)).await;
    join(&mut d, "bob", &conversation).await; // both took part: presence flows
    d.connect("alice", &a.url, &token(&alice)).await;
    d.wait("bob", "user-online", json!({"userId": alice}), EVENT)
        .await;

    const ERRORS: &str = "parloir_shared_state_errors_total";
    let before = metric(&mut d, &a, ERRORS).await;
    redis.pause().await;
    d.close("alice").await;
    // Wait until node A has tried to record the disconnection, and failed.
    let failed = tokio::time::timeout(EVENT, async {
        while metric(&mut d, &a, ERRORS).await <= before {
            tokio::task::yield_now().await;
        }
    })
    .await;
    redis.resume().await;
    assert!(failed.is_ok(), "the disconnection met the stalled Redis");
    let offline = d
        .wait(
            "bob",
            "user-offline",
            json!({"userId": alice}),
            Duration::from_secs(10),
        )
        .await;
    assert!(offline["lastSeenAt"].is_string(), "{offline}");
    drop((a, b));
    db.drop_database().await;
}

// One shard of a Redis Cluster dies and comes back empty: the one that
// carries the conversation's room channel. Sends are still acked and stored
// and delivered on the sender's node; once the shard is back, the nodes
// subscribe the room again and cross-node delivery resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_cluster_shard_resumes_its_rooms_cross_node_delivery() {
    let db = PostgresDatabase::create().await;
    let mut cluster = RedisCluster::start().await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let env = |id: &str| {
        let mut env = node_env(db.url(), None, &prefix, id);
        env.extend([
            ("REDIS_URL", cluster.url()),
            ("PARLOIR_REDIS_PREFIX", prefix.clone()),
            ("PARLOIR_HEARTBEAT_MS", HEARTBEAT_MS.to_owned()),
            ("PARLOIR_NODE_TTL_MS", NODE_TTL_MS.to_owned()),
        ]);
        env
    };
    let a = NodeProcess::start(&env("node-a")).await;
    let b = NodeProcess::start(&env("node-b")).await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &a, &alice, &[&bob]).await;
    d.connect("alice", &a.url, &token(&alice)).await;
    d.connect("bob", &b.url, &token(&bob)).await;
    for who in ["alice", "bob"] {
        join(&mut d, who, &conversation).await;
    }
    let send = |content: String| json!({"conversationId": conversation, "content": content});
    let channel = format!("{prefix}sio:/messaging#room#conversation-{conversation}");
    let shard = cluster.master_of(&channel).await;

    cluster.kill_master(shard).await;
    let during = d
        .emit(
            "alice",
            "send-message",
            send("while the shard is down".into()),
        )
        .await;
    let during_id = ok_data(&during)["id"].clone();
    d.wait("alice", "new-message", json!({"id": during_id}), EVENT)
        .await;

    cluster.restart().await;
    let mut resumed = false;
    for attempt in 0..40 {
        let ack = d
            .emit("alice", "send-message", send(format!("after #{attempt}")))
            .await;
        let id = ok_data(&ack)["id"].clone();
        if d.try_wait(
            "bob",
            "new-message",
            json!({"id": id}),
            Duration::from_millis(500),
        )
        .await
        .is_some()
        {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "cross-node delivery resumed once the shard was back"
    );
    drop((a, b));
    db.drop_database().await;
}

// A Redis that stalls (connections stay up, commands time out) — what an
// overloaded node sees too — slows a send but must not cut cross-node
// delivery afterwards: the first message after the stall reaches the other
// node. (A node that went local-only after a timeout dropped every
// cross-node delivery for 5 s.)
on_both_redis_kinds!(a_stalled_redis_does_not_cut_cross_node_delivery_afterwards);
async fn a_stalled_redis_does_not_cut_cross_node_delivery_afterwards(kind: RedisKind) {
    let db = PostgresDatabase::create().await;
    let redis = TestRedis::start(kind).await;
    let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
    let env = |id| {
        let mut env = node_env(db.url(), Some(&redis), &prefix, id);
        // Every Redis call of a send times out within the client's 5 s ack deadline.
        env.push(("PARLOIR_REDIS_TIMEOUT_MS", "1000".to_owned()));
        env
    };
    let a = NodeProcess::start(&env("node-a")).await;
    let b = NodeProcess::start(&env("node-b")).await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &a, &alice, &[&bob]).await;
    d.connect("alice", &a.url, &token(&alice)).await;
    d.connect("bob", &b.url, &token(&bob)).await;
    for who in ["alice", "bob"] {
        join(&mut d, who, &conversation).await;
    }
    let send = |content: &str| json!({"conversationId": conversation, "content": content});

    redis.pause().await;
    let during = d
        .emit("alice", "send-message", send("during the stall"))
        .await;
    let during_id = ok_data(&during)["id"]
        .as_str()
        .expect("stored and acked while Redis stalls")
        .to_owned();
    d.wait("alice", "new-message", json!({"id": during_id}), EVENT)
        .await;
    redis.resume().await;

    let after = d
        .emit("alice", "send-message", send("after the stall"))
        .await;
    let after_id = ok_data(&after)["id"].as_str().expect("an id").to_owned();
    d.wait("bob", "new-message", json!({"id": after_id}), EVENT)
        .await;
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_unavailable_broadcasts_nothing_and_heals() {
    let pg = PostgresServer::start().await;
    let node = NodeProcess::start(&node_env(&pg.url("postgres"), None, "", "solo")).await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &node, &alice, &[&bob]).await;
    d.connect("alice", &node.url, &token(&alice)).await;
    d.connect("bob", &node.url, &token(&bob)).await;
    ok_data(
        &d.emit(
            "bob",
            "join-conversation",
            json!({"conversationId": conversation}),
        )
        .await,
    );
    let send = |content: &str| json!({"conversationId": conversation, "content": content});
    ok_data(&d.emit("alice", "send-message", send("before")).await);
    d.wait("bob", "new-message", json!({"content": "before"}), EVENT)
        .await;

    pg.stop().await;
    let refused = d.emit("alice", "send-message", send("while down")).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "UNAVAILABLE", "{refused}");
    d.wait(
        "alice",
        "error",
        json!({"code": "UNAVAILABLE", "event": "send-message"}),
        EVENT,
    )
    .await;

    pg.start_again().await;
    let mut healed = None;
    for attempt in 0..20 {
        let ack = d
            .emit("alice", "send-message", send(&format!("after #{attempt}")))
            .await;
        if ack["ok"] == true {
            healed = Some(ack);
            break;
        }
        assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
    }
    let healed = healed.expect("sends succeed again once Postgres is back");
    let id = ok_data(&healed)["id"].clone();
    // Barrier: bob receives the healed message; nothing of the refused one came before it.
    d.wait("bob", "new-message", json!({"id": id}), EVENT).await;
    let (_, history) = d
        .http(
            "GET",
            &format!("{}/api/v1/conversations/{conversation}/messages", node.url),
            &token(&bob),
            None,
        )
        .await;
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        !contents.contains(&"while down"),
        "the refused send stored nothing: {contents:?}"
    );
    let seen = d.drain("bob").await;
    assert!(
        !seen.iter().any(|e| e["args"][0]["content"] == "while down"),
        "{seen:?}"
    );
}

/// Two nodes over a Redis of `kind` (commands time out after 1 s), alice
/// on the first and bob on the second, both in one conversation's room.
struct StalledPair {
    db: PostgresDatabase,
    redis: TestRedis,
    /// Alice's node (`None` once killed).
    a: Option<NodeProcess>,
    b: NodeProcess,
    d: Driver,
    conversation: String,
}

impl StalledPair {
    async fn start(kind: RedisKind) -> Self {
        let db = PostgresDatabase::create().await;
        let redis = TestRedis::start(kind).await;
        let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
        let env = |id| {
            let mut env = node_env(db.url(), Some(&redis), &prefix, id);
            env.push(("PARLOIR_REDIS_TIMEOUT_MS", "1000".to_owned()));
            env
        };
        let a = NodeProcess::start(&env("node-a")).await;
        let b = NodeProcess::start(&env("node-b")).await;
        let mut d = Driver::start().await;
        let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
        let conversation = create_conversation(&mut d, &a, &alice, &[&bob]).await;
        d.connect("alice", &a.url, &token(&alice)).await;
        d.connect("bob", &b.url, &token(&bob)).await;
        for who in ["alice", "bob"] {
            join(&mut d, who, &conversation).await;
        }
        Self {
            db,
            redis,
            a: Some(a),
            b,
            d,
            conversation,
        }
    }

    /// Alice sends while Redis stalls (left stalled): the message is
    /// committed and reaches her node only. Returns it.
    async fn send_unheard(&mut self, content: &str) -> Value {
        self.redis.pause().await;
        let ack = self
            .d
            .emit(
                "alice",
                "send-message",
                json!({"conversationId": self.conversation, "content": content}),
            )
            .await;
        ok_data(&ack).clone()
    }

    /// Bob is told the conversation's latest number, syncs from the
    /// creation (1) and gets the message he missed.
    async fn bob_catches_up(&mut self, missed: &Value, within: Duration) {
        let latest = self
            .d
            .wait(
                "bob",
                "conversation-latest",
                json!({"conversationId": self.conversation}),
                within,
            )
            .await;
        assert_eq!(latest["seq"], missed["seq"], "{latest}");
        let ack = self
            .d
            .emit(
                "bob",
                "sync",
                json!({"conversations": {&self.conversation: 1}}),
            )
            .await;
        let replay = &ok_data(&ack)["conversations"][&self.conversation];
        assert_eq!(replay["events"][0]["data"]["id"], missed["id"], "{replay}");
    }
}

// A change committed while Redis stalled reached only its own node. Once
// Redis answers, that node tells the conversation's room its latest number
// (`conversation-latest`): a client on the other node sees it is behind,
// syncs, and gets the message it missed, without reconnecting.
on_both_redis_kinds!(a_change_whose_broadcast_was_lost_reaches_the_other_node_after_the_stall);
async fn a_change_whose_broadcast_was_lost_reaches_the_other_node_after_the_stall(kind: RedisKind) {
    let mut pair = StalledPair::start(kind).await;
    let missed = pair.send_unheard("lost live").await;
    pair.redis.resume().await;
    pair.bob_catches_up(&missed, Duration::from_secs(10)).await;
    let StalledPair { db, a, b, .. } = pair;
    drop((a, b));
    db.drop_database().await;
}

// A node dies after committing a change it could not announce (Redis
// stalled, then SIGKILL). The survivor, sweeping it, tells its sockets the
// latest number of every conversation they joined; the client behind it
// syncs and gets the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_left_unannounced_by_a_dead_node_reaches_the_survivors_clients() {
    let mut pair = StalledPair::start(RedisKind::Single).await;
    let missed = pair.send_unheard("its node died").await;
    if let Some(a) = pair.a.take() {
        a.kill().await;
    }
    pair.redis.resume().await;
    pair.bob_catches_up(&missed, Duration::from_secs(15)).await;
    let StalledPair { db, b, .. } = pair;
    drop(b);
    db.drop_database().await;
}

// A handshake never waits on the store: with Postgres down, a socket is
// still accepted and its presence recorded, and it gets its unread totals
// once the store answers again (its welcome is tried again until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_connects_while_postgres_is_down_and_gets_its_totals_later() {
    let pg = PostgresServer::start().await;
    let node = NodeProcess::start(&node_env(&pg.url("postgres"), None, "", "solo")).await;
    let mut d = Driver::start().await;
    let (alice, bob) = (common::unique_user("alice"), common::unique_user("bob"));
    let conversation = create_conversation(&mut d, &node, &alice, &[&bob]).await;
    d.connect("alice", &node.url, &token(&alice)).await;
    ok_data(
        &d.emit(
            "alice",
            "send-message",
            json!({"conversationId": conversation, "content": "unread"}),
        )
        .await,
    );

    pg.stop().await;
    d.connect("bob", &node.url, &token(&bob)).await;
    pg.start_again().await;
    let totals = d
        .wait(
            "bob",
            "unread-count-updated",
            json!({"totalUnread": 1}),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(totals["totalUnread"], 1, "{totals}");
    drop(node);
}
