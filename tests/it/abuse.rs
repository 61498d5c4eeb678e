//! A hostile client cannot hurt anybody else: every event and route has a
//! budget, and past it the answer is `RATE_LIMITED` (429) at once while
//! other users are served as usual. Real nodes (Postgres), driven by the
//! official Socket.IO client; budgets are lowered per test so that a flood
//! meets them quickly.

use crate::common;
use crate::common::{SECRET, token};

use std::collections::HashMap;
use std::time::Duration;

use common::processes::Driver;
use common::{PostgresDatabase, TestNode};
use parloir::Config;
use parloir::config::StoreConfig;
use secrecy::SecretString;
use serde_json::{Value, json};

const EVENT: Duration = Duration::from_secs(5);

async fn node(database: &PostgresDatabase, tune: impl FnOnce(&mut Config)) -> TestNode {
    common::init_logs();
    let store = StoreConfig::Postgres {
        url: SecretString::from(database.url().to_owned()),
    };
    let mut config = Config::for_tests(store, SECRET);
    tune(&mut config);
    TestNode::spawn(config).await
}

async fn create(d: &mut Driver, node: &TestNode, creator: &str, other: &str) -> (u16, Value) {
    d.http(
        "POST",
        &format!("{}/api/v1/conversations", node.url()),
        &token(creator),
        Some(json!({"participantIds": [other]})),
    )
    .await
}

/// A refusal counter of `/metrics` (0 when absent).
async fn refusals(d: &mut Driver, node: &TestNode, reason: &str) -> f64 {
    let (_, body) = d
        .http("GET", &format!("{}/metrics", node.url()), "", None)
        .await;
    let line = format!("parloir_refusals_total{{reason=\"{reason}\"}} ");
    body.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0.0, |v| v.trim().parse().unwrap_or(0.0))
}

fn count(outcomes: &HashMap<String, u64>, key: &str) -> u64 {
    outcomes.get(key).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_flood_is_refused_at_once_and_a_bystander_keeps_sending() {
    let db = PostgresDatabase::create().await;
    let node = node(&db, |c| {
        c.budgets.socket_events_per_sec = 20;
        c.budgets.socket_event_burst = 40;
        c.budgets.socket_events_in_flight = 8;
    })
    .await;
    let [mallory, bob, carol] = ["mallory", "bob", "carol"].map(common::unique_user);
    let (mut flooder, mut bystander) = (Driver::start().await, Driver::start().await);
    let (status, body) = create(&mut bystander, &node, &bob, &carol).await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["id"].as_str().expect("an id").to_owned();
    flooder
        .connect("mallory", &node.url(), &token(&mallory))
        .await;
    bystander.connect("bob", &node.url(), &token(&bob)).await;
    let strangers: Vec<String> = (0..100).map(|i| format!("stranger-{i}")).collect();

    let flood = flooder.burst(
        "mallory",
        "get-presence",
        json!({"userIds": strangers}),
        400,
    );
    let sends = async {
        let mut acks = Vec::new();
        for i in 0..10 {
            let payload =
                json!({"conversationId": conversation, "content": format!("still here #{i}")});
            acks.push(bystander.emit("bob", "send-message", payload).await);
        }
        acks
    };
    let (outcomes, acks) = tokio::join!(flood, sends);

    assert_eq!(outcomes.values().sum::<u64>(), 400, "{outcomes:?}");
    // A refusal is two packets (the ack and the `error` event): a client that
    // floods without reading fills its own outgoing buffer (128 packets), and
    // socketioxide drops what does not fit (`noAck`). A client that reads
    // never meets it.
    assert!(
        count(&outcomes, "RATE_LIMITED") + count(&outcomes, "noAck") >= 300,
        "the flood is refused past the socket's budget: {outcomes:?}"
    );
    assert!(
        count(&outcomes, "RATE_LIMITED") >= 200,
        "most refusals reach the flooder: {outcomes:?}"
    );
    assert!(count(&outcomes, "ok") >= 1, "{outcomes:?}");
    for ack in &acks {
        assert_eq!(ack["ok"], true, "the bystander's sends succeed: {ack}");
    }
    assert!(
        refusals(&mut bystander, &node, "event_rate").await
            + refusals(&mut bystander, &node, "events_in_flight").await
            >= 300.0
    );
    // The flooder stays connected and is served again once it slows down.
    let later = flooder
        .emit("mallory", "get-presence", json!({"userIds": ["x"]}))
        .await;
    let later = if later["ok"] == true {
        later
    } else {
        flooder
            .wait("mallory", "error", json!({"code": "RATE_LIMITED"}), EVENT)
            .await;
        tokio::time::timeout(EVENT, async {
            loop {
                let ack = flooder
                    .emit("mallory", "get-presence", json!({"userIds": ["x"]}))
                    .await;
                if ack["ok"] == true {
                    return ack;
                }
                tokio::time::sleep(Duration::from_millis(100)).await; // the bucket refills at 20/s
            }
        })
        .await
        .expect("served again within the refill")
    };
    assert_eq!(later["ok"], true);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_in_flight_bound_are_refused() {
    let db = PostgresDatabase::create().await;
    let node = node(&db, |c| c.budgets.socket_events_in_flight = 2).await;
    let [alice, bob] = ["alice", "bob"].map(common::unique_user);
    let mut d = Driver::start().await;
    let (status, body) = create(&mut d, &node, &alice, &bob).await;
    assert_eq!(status, 201, "{body}");
    d.connect("alice", &node.url(), &token(&alice)).await;
    let outcomes = d
        .burst(
            "alice",
            "join-conversation",
            json!({"conversationId": body["id"]}),
            200,
        )
        .await;
    assert_eq!(outcomes.values().sum::<u64>(), 200, "{outcomes:?}");
    assert!(count(&outcomes, "ok") >= 2, "{outcomes:?}");
    assert!(
        count(&outcomes, "RATE_LIMITED") >= 1,
        "200 joins at once meet a bound of 2 in flight: {outcomes:?}"
    );
    assert!(refusals(&mut d, &node, "events_in_flight").await >= 1.0);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_creation_has_a_lower_limit_of_its_own() {
    let db = PostgresDatabase::create().await;
    let node = node(&db, |c| {
        c.rate_limits.create_per_min = 6;
        c.rate_limits.create_burst = 3;
    })
    .await;
    let spammer = common::unique_user("spammer");
    let mut d = Driver::start().await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (status, body) = create(&mut d, &node, &spammer, &format!("invented-{i}")).await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, vec![201, 201, 201, 429, 429, 429]);
    // Sends are a budget of their own, and other users are unaffected.
    let other = common::unique_user("other");
    assert_eq!(create(&mut d, &node, &other, &spammer).await.0, 201);
    assert!(refusals(&mut d, &node, "create_rate").await >= 3.0);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_budgeted_per_user() {
    let db = PostgresDatabase::create().await;
    let node = node(&db, |c| {
        c.budgets.http_requests_per_sec = 2;
        c.budgets.http_request_burst = 5;
    })
    .await;
    let [greedy, calm] = ["greedy", "calm"].map(common::unique_user);
    let mut d = Driver::start().await;
    let url = format!("{}/api/v1/unread", node.url());
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(d.http("GET", &url, &token(&greedy), None).await.0);
    }
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 5,
        "past the burst of 5: {statuses:?}"
    );
    assert_eq!(d.http("GET", &url, &token(&calm), None).await.0, 200);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_hold_only_so_many_sockets() {
    let db = PostgresDatabase::create().await;
    let node = node(&db, |c| c.budgets.max_sockets_per_user = 2).await;
    let hoarder = common::unique_user("hoarder");
    let mut d = Driver::start().await;
    d.connect("one", &node.url(), &token(&hoarder)).await;
    d.connect("two", &node.url(), &token(&hoarder)).await;
    assert_eq!(
        d.try_connect("three", &node.url(), &token(&hoarder), json!({}))
            .await,
        Err("too_many_connections".to_owned())
    );
    let other = common::unique_user("other");
    d.connect("other", &node.url(), &token(&other)).await;
    // Once a device leaves, another may come in (presence is updated on disconnect).
    d.close("one").await;
    let reconnected = tokio::time::timeout(EVENT, async {
        loop {
            match d
                .try_connect("again", &node.url(), &token(&hoarder), json!({}))
                .await
            {
                Ok(()) => return,
                Err(e) => assert_eq!(e, "too_many_connections"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // presence catches up with the close
        }
    })
    .await;
    assert!(reconnected.is_ok(), "a freed slot can be used again");
    db.drop_database().await;
}

/// Handshakes opened all at once are admitted against the cap one by one
/// (counted and recorded in one step), on one node and across two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_handshakes_cannot_pass_the_socket_cap() {
    let db = PostgresDatabase::create().await;
    let prefix = format!("abuse-{}:", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = common::cluster_config(db.url(), common::SINGLE_REDIS, &prefix);
        config.budgets.max_sockets_per_user = 3;
        nodes.push(TestNode::spawn(config).await);
    }
    let hoarder = common::unique_user("hoarder");
    let mut d = Driver::start().await;
    let a = d
        .call(
            json!({"op": "connect-many", "url": nodes[0].url(), "alsoUrl": nodes[1].url(),
                     "token": token(&hoarder), "count": 24, "prefix": "h"}),
        )
        .await;
    assert!(a.get("error").is_none(), "{a}");
    let connected = a["connected"].as_u64().expect("a count");
    let refused = a["refused"]["too_many_connections"].as_u64().unwrap_or(0);
    assert_eq!(connected, 3, "exactly the cap is admitted: {a}");
    assert_eq!(refused, 21, "every other handshake is refused: {a}");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_budgeted_per_client_address() {
    let db = PostgresDatabase::create().await;
    let behind_proxy = node(&db, |c| {
        c.budgets.handshakes_per_sec = 1;
        c.budgets.handshake_burst = 3;
        c.budgets.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a CIDR block")];
    })
    .await;
    let exposed = node(&db, |c| {
        c.budgets.handshakes_per_sec = 1;
        c.budgets.handshake_burst = 3;
    })
    .await;
    let user = common::unique_user("roamer");
    let mut d = Driver::start().await;
    let from = |ip: &str| json!({"X-Forwarded-For": ip});

    // Behind a trusted proxy, the forwarded address is the client.
    for i in 0..3 {
        let name = format!("a{i}");
        d.try_connect(
            &name,
            &behind_proxy.url(),
            &token(&user),
            from("198.51.100.7"),
        )
        .await
        .expect("within the address's burst");
        d.close(&name).await;
    }
    assert_eq!(
        d.try_connect(
            "a3",
            &behind_proxy.url(),
            &token(&user),
            from("198.51.100.7")
        )
        .await,
        Err("rate_limited".to_owned())
    );
    d.try_connect(
        "b0",
        &behind_proxy.url(),
        &token(&user),
        from("198.51.100.8"),
    )
    .await
    .expect("another client address has its own budget");

    // Without a trusted proxy, X-Forwarded-For is the client's word: ignored.
    let mut refused = 0;
    for i in 0..5 {
        let name = format!("e{i}");
        match d
            .try_connect(
                &name,
                &exposed.url(),
                &token(&user),
                from(&format!("203.0.113.{i}")),
            )
            .await
        {
            Ok(()) => d.close(&name).await,
            Err(e) => {
                assert_eq!(e, "rate_limited");
                refused += 1;
            }
        }
    }
    assert!(refused >= 1, "forged addresses do not buy more handshakes");
    assert!(refusals(&mut d, &exposed, "handshake_rate").await >= 2.0);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_and_oversized_payloads_hurt_only_their_sender() {
    let db = PostgresDatabase::create().await;
    let node = node(&db, |c| c.max_frame_bytes = 64 * 1024).await;
    let [mallory, bob, carol] = ["mallory", "bob", "carol"].map(common::unique_user);
    let (mut hostile, mut bystander) = (Driver::start().await, Driver::start().await);
    // Mallory is a participant: what stops the payloads is their shape.
    let (status, body) = bystander
        .http(
            "POST",
            &format!("{}/api/v1/conversations", node.url()),
            &token(&bob),
            Some(json!({"participantIds": [carol, mallory]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["id"].as_str().expect("an id").to_owned();
    hostile
        .connect("mallory", &node.url(), &token(&mallory))
        .await;
    bystander.connect("bob", &node.url(), &token(&bob)).await;

    // 1,000 levels of nesting, far past serde_json's limit of 128. Sent as
    // JSON text (`payloadJson`): a `Value` this deep would overflow this
    // test's own stack when printed, and socket.io-client's recursive encoder
    // overflows its JS stack a little past 1,000 levels, so no browser can
    // send more. `fuzz.rs` sends 20,000 levels in a raw frame.
    let nested = format!(
        r#"{{"conversationId":"{conversation}","content":{}"deep"{}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let answer = hostile
        .call(json!({"op": "emit", "name": "mallory", "event": "send-message", "payloadJson": nested, "timeoutMs": 2000}))
        .await;
    assert_eq!(answer["ack"]["ok"], false, "{answer}");
    assert_eq!(answer["ack"]["error"]["code"], "VALIDATION", "{answer}");

    // A frame past `max_frame_bytes` ends the sender's connection before
    // anything is parsed.
    let oversized =
        json!({"conversationId": conversation, "content": "x".repeat(100 * 1024)}).to_string();
    let answer = hostile
        .call(json!({"op": "emit", "name": "mallory", "event": "send-message", "payloadJson": oversized, "timeoutMs": 2000}))
        .await;
    assert_eq!(
        answer["error"], "socket has been disconnected",
        "an oversized frame drops the connection: {answer}"
    );

    let ack = bystander
        .emit(
            "bob",
            "send-message",
            json!({"conversationId": conversation, "content": "unbothered"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(node.get_status("/readyz").await, Some(200));
    let (_, history) = bystander
        .http(
            "GET",
            &format!(
                "{}/api/v1/conversations/{conversation}/messages",
                node.url()
            ),
            &token(&bob),
            None,
        )
        .await;
    assert_eq!(
        history["messages"].as_array().map(Vec::len),
        Some(1),
        "only the bystander's message is stored: {history}"
    );
    db.drop_database().await;
}

/// Store calls made so far for one operation (`/metrics`, every outcome).
async fn store_calls(d: &mut Driver, node: &TestNode, op: &str) -> f64 {
    let (_, body) = d
        .http("GET", &format!("{}/metrics", node.url()), "", None)
        .await;
    let label = format!("op=\"{op}\"");
    body.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("parloir_store_call_duration_seconds_count{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_in_a_large_group_costs_one_recount_and_tells_each_reader() {
    const PARTICIPANTS: usize = 60;
    let db = PostgresDatabase::create().await;
    let node = node(&db, |_| {}).await;
    let alice = common::unique_user("alice");
    let others: Vec<String> = (0..PARTICIPANTS - 1)
        .map(|i| common::unique_user(&format!("member{i}")))
        .collect();
    let (bob, carol) = (&others[0], &others[1]);
    let mut d = Driver::start().await;
    let (status, body) = d
        .http(
            "POST",
            &format!("{}/api/v1/conversations", node.url()),
            &token(&alice),
            Some(json!({"participantIds": others})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let conversation = body["id"].as_str().expect("an id").to_owned();
    d.connect("alice", &node.url(), &token(&alice)).await;
    d.connect("bob", &node.url(), &token(bob)).await;
    d.connect("carol", &node.url(), &token(carol)).await;
    let mut sent = Vec::new();
    for text in ["doomed", "kept"] {
        let ack = d
            .emit(
                "alice",
                "send-message",
                json!({"conversationId": conversation, "content": text}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        sent.push(ack["data"]["id"].as_str().expect("a message id").to_owned());
    }
    // Carol has read the first message: the delete changes bob's count only.
    let ack = d
        .emit("carol", "mark-as-read", json!({"messageId": sent[0]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    d.wait(
        "bob",
        "unread-count-updated",
        json!({"totalUnread": 2}),
        EVENT,
    )
    .await;
    // Carol's updates come in order: after each send, then after her read.
    d.wait(
        "carol",
        "unread-count-updated",
        json!({"totalUnread": 2}),
        EVENT,
    )
    .await;
    d.wait(
        "carol",
        "unread-count-updated",
        json!({"totalUnread": 1}),
        EVENT,
    )
    .await;
    let recounts_before = store_calls(&mut d, &node, "unread_counts").await;
    let grouped_before = store_calls(&mut d, &node, "unread_in_conversation").await;

    let (status, body) = d
        .http(
            "DELETE",
            &format!("{}/api/v1/messages/{}", node.url(), sent[0]),
            &token(&alice),
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let update = d
        .wait(
            "bob",
            "unread-count-updated",
            json!({"totalUnread": 1, "conversationId": conversation, "conversationUnread": 1}),
            EVENT,
        )
        .await;
    assert_eq!(update["totalUnread"], 1, "{update}");
    let update = d
        .wait(
            "carol",
            "unread-count-updated",
            json!({"conversationId": conversation, "conversationUnread": 1}),
            EVENT,
        )
        .await;
    assert_eq!(
        update["totalUnread"], 1,
        "carol's count is unchanged: {update}"
    );

    assert_eq!(
        store_calls(&mut d, &node, "unread_in_conversation").await - grouped_before,
        1.0,
        "one grouped recount for the conversation"
    );
    assert_eq!(
        store_calls(&mut d, &node, "unread_counts").await - recounts_before,
        0.0,
        "no per-participant recount of all their conversations ({} participants)",
        PARTICIPANTS - 1
    );
    db.drop_database().await;
}

/// A list cursor is opaque, but a client can forge one: a time far outside
/// what Postgres stores is refused as `VALIDATION`, not answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_list_cursor_is_refused_not_a_server_error() {
    use base64::Engine as _;
    let db = PostgresDatabase::create().await;
    let node = node(&db, |_| {}).await;
    let user = common::unique_user("forger");
    let mut d = Driver::start().await;
    for millis in ["-1000000000000000", "300000000000000"] {
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{millis}|{}", uuid::Uuid::new_v4()));
        let (status, body) = d
            .http(
                "GET",
                &format!("{}/api/v1/conversations?cursor={forged}", node.url()),
                &token(&user),
                None,
            )
            .await;
        assert_eq!(status, 400, "{millis}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION", "{body}");
    }
    db.drop_database().await;
}
