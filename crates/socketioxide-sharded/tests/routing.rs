//! Broadcasts reach the servers that have sockets in their rooms, and only
//! those; the Socket.IO room model holds across servers. Every test runs on
//! one Redis and on a three-master Redis Cluster.

mod common;

use std::time::Duration;

use common::{Server, config, redis_urls, unique_prefix};
use serde_json::json;

/// Runs `$body(url)` once per Redis deployment, as one test each.
macro_rules! on_every_redis {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$body(&super::url("redis")).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_cluster() {
                super::$body(&super::url("redis-cluster")).await;
            }
        }
    };
}

fn url(kind: &str) -> String {
    redis_urls()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, url)| url)
        .expect("a known deployment")
}

on_every_redis!(
    a_server_receives_only_the_rooms_it_has_sockets_in,
    only_member_servers_receive
);
async fn only_member_servers_receive(url: &str) {
    let prefix = unique_prefix();
    let (a, b, c) = (
        Server::start(url, config(&prefix)).await,
        Server::start(url, config(&prefix)).await,
        Server::start(url, config(&prefix)).await,
    );
    let mut on_a = a.connect(&["r1"]).await;
    let mut on_b = b.connect(&["r2"]).await;
    let mut sender = c.connect(&[]).await;
    let b_before = b.stats();

    sender.to(&["r1"], &[], "hello", json!("r1")).await;
    assert_eq!(on_a.next_event().await, ("hello".into(), json!("r1")));
    // Barrier: B gets a broadcast of its own room; the r1 one never came.
    sender.to(&["r2"], &[], "hello", json!("r2")).await;
    assert_eq!(on_b.next_event().await, ("hello".into(), json!("r2")));
    let b_after = b.stats();
    assert_eq!(
        b_after.received - b_before.received,
        1,
        "B received only the broadcast of its room: {b_before:?} -> {b_after:?}"
    );
    assert_eq!(c.stats().received, 0, "C holds no room: it hears nothing");
    assert_eq!(c.stats().published, 2);
    assert!(on_b.pending_events().is_empty());
}

on_every_redis!(joining_subscribes_and_leaving_unsubscribes, join_and_leave);
async fn join_and_leave(url: &str) {
    let prefix = unique_prefix();
    let (a, b) = (
        Server::start(url, config(&prefix)).await,
        Server::start(url, config(&prefix)).await,
    );
    let mut sender = a.connect(&[]).await;
    let mut member = b.connect(&[]).await;
    let mut witness = b.connect(&["witness"]).await;

    // The join returns once B is subscribed: the next broadcast arrives.
    member.join("room").await;
    assert_eq!(b.stats().subscribed_rooms, 2);
    sender.to(&["room"], &[], "ev", json!(1)).await;
    assert_eq!(member.next_event().await, ("ev".into(), json!(1)));

    member.leave("room").await;
    b.wait_stats("B unsubscribes the room it no longer has sockets in", |s| {
        s.subscribed_rooms == 1
    })
    .await;
    let before = b.stats().received;
    sender.to(&["room"], &[], "ev", json!(2)).await;
    sender.to(&["witness"], &[], "ev", json!(3)).await;
    assert_eq!(witness.next_event().await, ("ev".into(), json!(3)));
    assert_eq!(
        b.stats().received - before,
        1,
        "only the witness's broadcast reached B"
    );
    assert!(member.pending_events().is_empty());
}

on_every_redis!(
    a_socket_in_several_target_rooms_gets_one_copy,
    one_copy_per_socket
);
async fn one_copy_per_socket(url: &str) {
    let prefix = unique_prefix();
    let (a, b) = (
        Server::start(url, config(&prefix)).await,
        Server::start(url, config(&prefix)).await,
    );
    let mut sender = a.connect(&[]).await;
    let mut both = b.connect(&["r1", "r2"]).await;
    let mut only_r2 = b.connect(&["r2"]).await;
    let mut excluded = b.connect(&["r1", "x"]).await;

    sender.to(&["r1", "r2"], &["x"], "once", json!(1)).await;
    assert_eq!(both.next_event().await, ("once".into(), json!(1)));
    assert_eq!(only_r2.next_event().await, ("once".into(), json!(1)));
    // Barrier, then nothing else may have arrived.
    sender.to(&["r2", "x"], &[], "barrier", json!(2)).await;
    assert_eq!(both.next_event().await, ("barrier".into(), json!(2)));
    assert_eq!(only_r2.next_event().await, ("barrier".into(), json!(2)));
    assert_eq!(excluded.next_event().await, ("barrier".into(), json!(2)));
    assert!(both.pending_events().is_empty(), "one copy per socket");
    assert!(
        excluded.pending_events().is_empty(),
        "except holds across servers"
    );
}

on_every_redis!(
    a_broadcast_to_many_rooms_reaches_each_member_once,
    many_rooms
);
async fn many_rooms(url: &str) {
    let prefix = unique_prefix();
    let (a, b) = (
        Server::start(url, config(&prefix)).await,
        Server::start(url, config(&prefix)).await,
    );
    let mut sender = a.connect(&[]).await;
    // More rooms than `max_rooms_per_split` (3): sent once to every server.
    let mut members = Vec::new();
    for room in ["m1", "m2", "m3", "m4"] {
        members.push(b.connect(&[room, "m1"]).await);
    }
    let local = a.connect(&["m4"]).await;
    let mut local = local;
    sender
        .to(&["m1", "m2", "m3", "m4"], &[], "many", json!(1))
        .await;
    for m in &mut members {
        assert_eq!(m.next_event().await, ("many".into(), json!(1)));
    }
    assert_eq!(local.next_event().await, ("many".into(), json!(1)));
    sender.to(&["m1"], &[], "barrier", json!(2)).await;
    for m in &mut members {
        assert_eq!(m.next_event().await, ("barrier".into(), json!(2)));
        assert!(m.pending_events().is_empty(), "each member got one copy");
    }
}

on_every_redis!(remote_socket_operations_span_the_servers, remote_operations);
async fn remote_operations(url: &str) {
    let prefix = unique_prefix();
    let (a, b) = (
        Server::start(url, config(&prefix)).await,
        Server::start(url, config(&prefix)).await,
    );
    let mut asker = a.connect(&[]).await;
    let on_a = a.connect(&["team"]).await;
    let mut on_b = b.connect(&["team", "other"]).await;

    let mut expected = vec![on_a.sid.clone(), on_b.sid.clone()];
    expected.sort();
    assert_eq!(asker.call("fetch", json!("team")).await, json!(expected));

    let rooms = asker.call("rooms", json!(null)).await;
    for room in ["team", "other"] {
        assert!(
            rooms.as_array().is_some_and(|r| r.contains(&json!(room))),
            "{room} is a room of some server: {rooms}"
        );
    }

    assert_eq!(asker.call("kick", json!("other")).await, json!(true));
    on_b.closed().await;
    assert_eq!(
        asker.call("fetch", json!("team")).await,
        json!([on_a.sid.clone()])
    );
}

on_every_redis!(
    rooms_emptied_by_disconnections_are_unsubscribed,
    sweep_after_disconnect
);
async fn sweep_after_disconnect(url: &str) {
    let prefix = unique_prefix();
    let mut cfg = config(&prefix);
    cfg.sweep_interval = Duration::from_millis(100);
    let b = Server::start(url, cfg).await;
    let client = b.connect(&["gone-soon"]).await;
    assert_eq!(b.stats().subscribed_rooms, 1);
    client.close();
    b.wait_stats("the emptied room is unsubscribed at a sweep", |s| {
        s.subscribed_rooms == 0
    })
    .await;
}
