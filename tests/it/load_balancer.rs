//! Behind a cookie-sticky HAProxy (the repository's own config), as in
//! production: long-polling and websocket clients reach each other across
//! nodes, and a node drained by SIGTERM in the middle of a stream of sends
//! loses nothing, stores nothing twice, and its clients move to the survivor.
//! Each test runs on one Redis and on a three-master Redis Cluster.

use crate::common;
use crate::common::{SECRET, token};

use std::collections::HashMap;
use std::time::Duration;

use common::PostgresDatabase;
use common::processes::{Driver, LoadBalancer, NodeProcess, RedisKind, TestRedis};
use serde_json::{Value, json};

const EVENT: Duration = Duration::from_secs(10);

struct Cluster {
    db: PostgresDatabase,
    _redis: TestRedis,
    nodes: Vec<NodeProcess>,
}

async fn cluster(kind: RedisKind) -> Cluster {
    let db = PostgresDatabase::create().await;
    let redis = TestRedis::start(kind).await;
    let prefix = format!("lb{}:", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let env = [
            ("DATABASE_URL", db.url().to_owned()),
            ("REDIS_URL", redis.url()),
            ("PARLOIR_REDIS_PREFIX", prefix.clone()),
            ("JWT_SECRET", SECRET.to_owned()),
            ("PARLOIR_NODE_ID", id.to_owned()),
            ("PARLOIR_DRAIN_GRACE_SECS", "5".to_owned()),
            ("PARLOIR_SEND_RATE_PER_SEC", "1000".to_owned()),
            ("PARLOIR_SEND_BURST", "1000".to_owned()),
        ];
        nodes.push(NodeProcess::start(&env).await);
    }
    Cluster {
        db,
        _redis: redis,
        nodes,
    }
}

async fn sockets_on(d: &mut Driver, node: &NodeProcess) -> f64 {
    let (_, body) = d
        .http("GET", &format!("{}/metrics", node.url), "", None)
        .await;
    let text = body.as_str().expect("metrics are text");
    text.lines()
        .find_map(|l| l.strip_prefix("parloir_sockets_connected "))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

async fn group(d: &mut Driver, url: &str, members: &[&String]) -> String {
    let others: Vec<&String> = members[1..].to_vec();
    let (status, body) = d
        .http(
            "POST",
            &format!("{url}/api/v1/conversations"),
            &token(members[0]),
            Some(json!({"participantIds": others})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

on_both_redis_kinds!(polling_and_websocket_clients_reach_each_other_across_nodes);
async fn polling_and_websocket_clients_reach_each_other_across_nodes(kind: RedisKind) {
    let c = cluster(kind).await;
    let lb = LoadBalancer::start(&[&c.nodes[0], &c.nodes[1]]).await;
    let mut d = Driver::start().await;
    let (alice, bob, carol) = (
        common::unique_user("alice"),
        common::unique_user("bob"),
        common::unique_user("carol"),
    );
    let conversation = group(&mut d, &lb.url, &[&alice, &bob, &carol]).await;
    // Long-polling needs every request of a session on one node: the cookie does that.
    d.connect_with(
        "alice",
        &lb.url,
        &token(&alice),
        json!({"transports": ["polling"]}),
    )
    .await;
    d.connect_with(
        "bob",
        &lb.url,
        &token(&bob),
        json!({"transports": ["websocket"]}),
    )
    .await;
    d.connect_with(
        "carol",
        &lb.url,
        &token(&carol),
        json!({"transports": ["polling", "websocket"]}),
    )
    .await;
    let (on_1, on_2) = (
        sockets_on(&mut d, &c.nodes[0]).await,
        sockets_on(&mut d, &c.nodes[1]).await,
    );
    assert!(
        on_1 >= 1.0 && on_2 >= 1.0 && on_1 + on_2 == 3.0,
        "the balancer spread the users: {on_1} + {on_2}"
    );
    for who in ["alice", "bob", "carol"] {
        let ack = d
            .emit(
                who,
                "join-conversation",
                json!({"conversationId": conversation}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    for (from, to) in [
        ("alice", ["bob", "carol"]),
        ("bob", ["alice", "carol"]),
        ("carol", ["alice", "bob"]),
    ] {
        let ack = d
            .emit(
                from,
                "send-message",
                json!({"conversationId": conversation, "content": format!("from {from}")}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        for receiver in to {
            d.wait(
                receiver,
                "new-message",
                json!({"content": format!("from {from}")}),
                EVENT,
            )
            .await;
        }
    }
    c.db.drop_database().await;
}

on_both_redis_kinds!(a_drained_node_loses_nothing_stores_nothing_twice_and_its_clients_move);
async fn a_drained_node_loses_nothing_stores_nothing_twice_and_its_clients_move(kind: RedisKind) {
    let mut c = cluster(kind).await;
    let lb = LoadBalancer::start(&[&c.nodes[0], &c.nodes[1]]).await;
    let mut d = Driver::start().await;
    let members: Vec<String> = (0..4)
        .map(|i| common::unique_user(&format!("sender{i}")))
        .collect();
    let refs: Vec<&String> = members.iter().collect();
    let conversation = group(&mut d, &lb.url, &refs).await;
    for (i, m) in members.iter().enumerate() {
        let options = json!({"transports": ["polling", "websocket"], "reconnection": true});
        d.connect_with(&format!("c{i}"), &lb.url, &token(m), options)
            .await;
    }
    assert!(
        sockets_on(&mut d, &c.nodes[0]).await >= 1.0,
        "some clients are on the node that will drain"
    );
    const COUNT: usize = 30;
    for i in 0..members.len() {
        let stream = json!({"op": "stream", "name": format!("c{i}"), "conversationId": conversation,
                            "count": COUNT, "intervalMs": 40, "prefix": format!("c{i}-")});
        assert_eq!(d.call(stream).await["ok"], true);
    }
    // The middle of the stream: c0 has had a third of its messages acked and echoed back to it.
    let ack = d
        .emit(
            "c0",
            "join-conversation",
            json!({"conversationId": conversation}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    d.wait(
        "c0",
        "new-message",
        json!({"clientMessageId": "c0-10"}),
        EVENT,
    )
    .await;
    let draining = c.nodes.remove(0);
    assert_eq!(
        draining.terminate().await,
        Some(0),
        "the drained node exits 0"
    );

    let mut acked: HashMap<String, String> = HashMap::new();
    let mut reconnects = 0;
    for i in 0..members.len() {
        let result = d
            .call(json!({"op": "stream-result", "name": format!("c{i}")}))
            .await;
        let list = result["acked"]
            .as_array()
            .unwrap_or_else(|| panic!("stream result: {result}"));
        assert_eq!(
            list.len(),
            COUNT,
            "every message of c{i} was acked: {result}"
        );
        for a in list {
            acked.insert(
                a["clientMessageId"].as_str().unwrap_or_default().to_owned(),
                a["id"].as_str().unwrap_or_default().to_owned(),
            );
        }
        reconnects += result["reconnects"].as_u64().unwrap_or(0);
    }
    assert!(
        reconnects >= 1,
        "the drained node's clients reconnected (through the balancer, to the survivor)"
    );

    // What is stored: each acked message exactly once, under the id its ack carried.
    let survivor = &c.nodes[0];
    let mut stored: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = before
            .as_ref()
            .map(|b| format!("&before={b}"))
            .unwrap_or_default();
        let url = format!(
            "{}/api/v1/conversations/{conversation}/messages?limit=100{query}",
            survivor.url
        );
        let (status, page) = d.http("GET", &url, &token(&members[0]), None).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        before = messages
            .first()
            .and_then(|m| m["id"].as_str())
            .map(str::to_owned);
        stored.splice(0..0, messages);
        if page["hasMore"] != true {
            break;
        }
    }
    let mut by_client_id: HashMap<String, Vec<String>> = HashMap::new();
    for m in &stored {
        by_client_id
            .entry(m["clientMessageId"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(m["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        stored.len(),
        members.len() * COUNT,
        "nothing lost, nothing extra"
    );
    for (client_id, id) in &acked {
        assert_eq!(
            by_client_id.get(client_id),
            Some(&vec![id.clone()]),
            "{client_id} stored once, as acked"
        );
    }
    c.db.drop_database().await;
}
