//! `/metrics` in Prometheus text format, with counters that move: sockets,
//! handshakes, events by name and outcome, HTTP requests by route, messages
//! stored.

use crate::common;
use crate::common::{SECRET, token};

use common::TestNode;
use parloir::Config;
use parloir::config::StoreConfig;

async fn curl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 body")
}

/// The value of one sample (`name{labels} value`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().expect("a numeric sample"))
}

async fn embedded_node(dir: &std::path::Path) -> TestNode {
    TestNode::spawn(Config::for_tests(
        StoreConfig::Sqlite {
            path: dir.join("m.db"),
        },
        SECRET,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_traffic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = embedded_node(dir.path()).await;
    let metrics_url = format!("{}/metrics", node.url());
    let before = curl(&[&metrics_url]).await;

    let alice = token("m-alice");
    let auth = format!("Authorization: Bearer {alice}");
    let created = curl(&[
        "-X",
        "POST",
        &format!("{}/api/v1/conversations", node.url()),
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"participantIds":["m-bob"]}"#,
    ])
    .await;
    let conversation: serde_json::Value =
        serde_json::from_str(&created).expect("JSON conversation");
    let id = conversation["id"].as_str().expect("an id");
    let ok = common::send_with_official_client(
        &node.url(),
        &alice,
        serde_json::json!({"conversationId": id, "content": "hi"}),
    )
    .await;
    assert_eq!(ok["ack"]["ok"], true, "{ok}");
    let bad = common::send_with_official_client(
        &node.url(),
        &alice,
        serde_json::json!({"conversationId": id, "content": ""}),
    )
    .await;
    assert_eq!(bad["ack"]["error"]["code"], "VALIDATION", "{bad}");

    let after = curl(&[&metrics_url]).await;
    let moved = |series: &str, by: f64| {
        let (b, a) = (sample(&before, series), sample(&after, series));
        assert!(a - b >= by, "{series}: {b} -> {a}, expected +{by}\n{after}");
    };
    moved("parloir_messages_stored_total", 1.0);
    moved(
        r#"parloir_events_total{event="send-message",outcome="ok"}"#,
        1.0,
    );
    moved(
        r#"parloir_events_total{event="send-message",outcome="VALIDATION"}"#,
        1.0,
    );
    moved(r#"parloir_handshakes_total{outcome="ok"}"#, 2.0);
    moved(
        r#"parloir_http_requests_total{route="/api/v1/conversations",status="201"}"#,
        1.0,
    );
    assert!(
        after.contains("# TYPE parloir_event_duration_seconds histogram"),
        "{after}"
    );
    assert!(after.contains("parloir_sockets_connected"), "{after}");
    assert!(
        after.contains(
            r#"parloir_store_call_duration_seconds_count{op="insert_message",outcome="ok"}"#
        ),
        "store latency is recorded per operation: {after}"
    );
    assert!(after.contains(r#"parloir_shared_state_call_duration_seconds_count{op="try_acquire_send",outcome="ok"}"#), "{after}");
    node.shutdown().await.expect("the node drains");
}

/// Prometheus users expect a node to be visible from its first scrape:
/// dashboards and `absent()` alerts see nothing of a family until it has a
/// series. Every family the README lists whose series are known in advance
/// is exposed at zero before any traffic, with each budget's refusal reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_known_family_is_exposed_before_any_traffic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = embedded_node(dir.path()).await;
    let first = curl(&[&format!("{}/metrics", node.url())]).await;
    let exposed = |series: &str| {
        first.lines().any(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
    };
    for series in [
        "parloir_sockets_connected",
        "parloir_draining",
        "parloir_messages_stored_total",
        "parloir_sends_shed_total",
        "parloir_shared_state_errors_total",
        "parloir_broadcast_failures_total",
        r#"parloir_handshakes_total{outcome="ok"}"#,
        r#"parloir_handshakes_total{outcome="unauthorized"}"#,
        r#"parloir_handshakes_total{outcome="token_expired"}"#,
        r#"parloir_handshakes_total{outcome="too_many_connections"}"#,
        r#"parloir_handshakes_total{outcome="rate_limited"}"#,
        r#"parloir_events_total{event="send-message",outcome="ok"}"#,
        r#"parloir_events_total{event="get-presence",outcome="ok"}"#,
        r#"parloir_event_duration_seconds_count{event="join-conversation"}"#,
        r#"parloir_store_errors_total{kind="unavailable"}"#,
        r#"parloir_store_errors_total{kind="query"}"#,
        r#"parloir_refusals_total{reason="send_rate"}"#,
        r#"parloir_refusals_total{reason="create_rate"}"#,
        r#"parloir_refusals_total{reason="event_rate"}"#,
        r#"parloir_refusals_total{reason="events_in_flight"}"#,
        r#"parloir_refusals_total{reason="http_rate"}"#,
        r#"parloir_refusals_total{reason="handshake_rate"}"#,
        r#"parloir_refusals_total{reason="sockets_per_user"}"#,
        r#"parloir_retention_rows_total{action="archived"}"#,
        r#"parloir_retention_rows_total{action="purged"}"#,
        r#"parloir_retention_rows_total{action="deleted"}"#,
        r#"parloir_retention_rows_total{action="notifications_forgotten"}"#,
        r#"parloir_notifications_total{channel="webhook",outcome="gathered"}"#,
        r#"parloir_notifications_total{channel="webhook",outcome="sent"}"#,
        r#"parloir_notifications_total{channel="webhook",outcome="retried"}"#,
        r#"parloir_notifications_total{channel="webhook",outcome="dead"}"#,
        r#"parloir_notifications_total{channel="webhook",outcome="cancelled"}"#,
        r#"parloir_notifications_total{channel="email",outcome="gathered"}"#,
        r#"parloir_notifications_total{channel="email",outcome="sent"}"#,
        r#"parloir_notifications_total{channel="email",outcome="retried"}"#,
        r#"parloir_notifications_total{channel="email",outcome="dead"}"#,
        r#"parloir_notifications_total{channel="email",outcome="cancelled"}"#,
        "parloir_notifications_queued",
        "parloir_notifications_oldest_due_seconds",
        r#"parloir_retention_runs_total{outcome="completed"}"#,
        r#"parloir_retention_runs_total{outcome="skipped"}"#,
        r#"parloir_retention_runs_total{outcome="stopped"}"#,
        r#"parloir_retention_runs_total{outcome="failed"}"#,
    ] {
        assert!(
            exposed(series),
            "{series} is exposed before any traffic:\n{first}"
        );
        assert_eq!(sample(&first, series), 0.0, "{series} starts at zero");
    }
    assert!(
        first.contains("# HELP parloir_refusals_total"),
        "families are described: {first}"
    );
    node.shutdown().await.expect("the node drains");
}

/// A client resuming many conversations after a reconnect mostly has nothing
/// new in most: `sync` reads where every log stands in one query, and reads
/// the log itself only of the conversations with news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reads_the_log_only_of_conversations_with_news() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = embedded_node(dir.path()).await;
    let metrics_url = format!("{}/metrics", node.url());
    let alice = token("s-alice");
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = curl(&[
            "-X",
            "POST",
            &format!("{}/api/v1/conversations", node.url()),
            "-H",
            &format!("Authorization: Bearer {alice}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"participantIds":["s-peer-{i}"]}}"#),
        ])
        .await;
        let conversation: serde_json::Value =
            serde_json::from_str(&created).expect("JSON conversation");
        ids.push(conversation["id"].as_str().expect("an id").to_owned());
    }
    let sent = common::send_with_official_client(
        &node.url(),
        &alice,
        serde_json::json!({"conversationId": ids[0], "content": "news"}),
    )
    .await;
    assert_eq!(sent["ack"]["ok"], true, "{sent}");

    let mut d = common::processes::Driver::start().await;
    d.connect("alice", &node.url(), &alice).await;
    let log_reads = r#"parloir_store_call_duration_seconds_count{op="log_after",outcome="ok"}"#;
    let before = sample(&curl(&[&metrics_url]).await, log_reads);
    // Every conversation known up to its creation (1); the first has a message since.
    let after_seqs: serde_json::Map<String, serde_json::Value> =
        ids.iter().map(|id| (id.clone(), 1.into())).collect();
    let ack = d
        .emit(
            "alice",
            "sync",
            serde_json::json!({"conversations": after_seqs}),
        )
        .await;
    let replays = &ack["data"]["conversations"];
    assert_eq!(
        replays[&ids[0]]["events"][0]["type"], "new-message",
        "{ack}"
    );
    for id in &ids[1..] {
        assert_eq!(replays[id]["events"], serde_json::json!([]), "{ack}");
        assert_eq!(replays[id]["latestSeq"], 1, "{ack}");
        assert_eq!(replays[id]["hasMore"], false, "{ack}");
    }
    let after = sample(&curl(&[&metrics_url]).await, log_reads);
    assert_eq!(
        after - before,
        1.0,
        "one log read, for the one conversation with news"
    );
    node.shutdown().await.expect("the node drains");
}
