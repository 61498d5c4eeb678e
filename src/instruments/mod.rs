//! The Prometheus metrics this node exports, named in one place. Recording
//! goes through the `metrics` facade (cheap when nothing is installed);
//! `install` sets up the exporter once per process and gives the handle
//! that `/metrics` renders.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SOCKETS_CONNECTED: &str = "parloir_sockets_connected";
pub const HANDSHAKES: &str = "parloir_handshakes_total";
pub const EVENTS: &str = "parloir_events_total";
pub const EVENT_SECONDS: &str = "parloir_event_duration_seconds";
pub const HTTP_REQUESTS: &str = "parloir_http_requests_total";
pub const HTTP_SECONDS: &str = "parloir_http_request_duration_seconds";
pub const MESSAGES_STORED: &str = "parloir_messages_stored_total";
pub const STORE_ERRORS: &str = "parloir_store_errors_total";
pub const STORE_SECONDS: &str = "parloir_store_call_duration_seconds";
pub const SHARED_STATE_SECONDS: &str = "parloir_shared_state_call_duration_seconds";
pub const SHARED_STATE_ERRORS: &str = "parloir_shared_state_errors_total";
pub const BROADCAST_FAILURES: &str = "parloir_broadcast_failures_total";
pub const REDIS_UP: &str = "parloir_redis_up";
pub const DRAINING: &str = "parloir_draining";
pub const INSERT_BATCH_SIZE: &str = "parloir_store_insert_batch_size";
pub const SENDS_SHED: &str = "parloir_sends_shed_total";
pub const REFUSALS: &str = "parloir_refusals_total";
pub const ADAPTER_PUBLISHED: &str = "parloir_adapter_messages_published_total";
pub const ADAPTER_RECEIVED: &str = "parloir_adapter_messages_received_total";
pub const ADAPTER_LOOPBACK: &str = "parloir_adapter_messages_loopback_total";
pub const ADAPTER_DROPPED: &str = "parloir_adapter_messages_dropped_total";
pub const ADAPTER_MALFORMED: &str = "parloir_adapter_messages_malformed_total";
pub const ADAPTER_SUBSCRIBE_FAILURES: &str = "parloir_adapter_subscribe_failures_total";
pub const ADAPTER_ROOMS: &str = "parloir_adapter_subscribed_rooms";
pub const NOTIFICATIONS: &str = "parloir_notifications_total";
pub const NOTIFICATIONS_QUEUED: &str = "parloir_notifications_queued";
pub const NOTIFICATIONS_OLDEST_DUE: &str = "parloir_notifications_oldest_due_seconds";
pub const RETENTION_ROWS: &str = "parloir_retention_rows_total";
pub const RETENTION_RUNS: &str = "parloir_retention_runs_total";
pub const TASK_FAILURES: &str = "parloir_task_failures_total";
pub const TASKS_DOWN: &str = "parloir_tasks_down";

/// Latency buckets in seconds: sub-millisecond to several seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Messages per group commit: powers of two up to the largest batch.
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

mod labels;

pub use labels::{NotificationOutcome, Refusal, RetentionAction, RetentionOutcome, StoreFailure};

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(INSERT_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    keep_up(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample until it is folded in, which a
/// scrape does too: with nothing scraping (the embedded default, or a
/// Prometheus that is down), a node's memory grew by every sample (measured:
/// 64 → 142 MB in five minutes at 3,000 msg/s). One thread per process does
/// the upkeep, whatever runtime comes and goes.
fn keep_up(handle: PrometheusHandle) {
    #[allow(clippy::disallowed_methods)] // its own OS thread, outside every runtime
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started: histogram samples pile up until scraped");
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(STORE_SECONDS, "store call latency by operation and outcome");
    describe_histogram!(
        INSERT_BATCH_SIZE,
        "messages committed together by one group commit"
    );
    describe_histogram!(
        SHARED_STATE_SECONDS,
        "shared-state (Redis or in-process) call latency by operation and outcome"
    );
    describe_gauge!(
        SOCKETS_CONNECTED,
        "Socket.IO sockets connected to this node"
    );
    describe_counter!(HANDSHAKES, "Socket.IO handshakes by outcome");
    describe_counter!(EVENTS, "client events by name and outcome");
    describe_histogram!(EVENT_SECONDS, "client event handling latency");
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    describe_histogram!(HTTP_SECONDS, "HTTP request latency by route");
    describe_counter!(MESSAGES_STORED, "messages committed by this node");
    describe_counter!(STORE_ERRORS, "store operations that failed, by kind");
    describe_counter!(
        SHARED_STATE_ERRORS,
        "shared-state (Redis or in-process) operations that failed"
    );
    describe_counter!(
        BROADCAST_FAILURES,
        "room broadcasts the adapter failed to publish"
    );
    describe_gauge!(
        REDIS_UP,
        "1 while Redis answers the readiness probe, 0 when it does not"
    );
    describe_gauge!(DRAINING, "1 once the node drains after SIGTERM");
    describe_counter!(
        NOTIFICATIONS,
        "offline notifications by channel and outcome (gathered, sent, retried, dead, cancelled)"
    );
    describe_gauge!(
        NOTIFICATIONS_QUEUED,
        "offline notifications pending or being sent, cluster-wide"
    );
    describe_gauge!(
        NOTIFICATIONS_OLDEST_DUE,
        "seconds the oldest due offline notification has waited past its due time"
    );
    describe_counter!(
        REFUSALS,
        "client requests refused for exceeding a budget, by reason"
    );
    describe_counter!(
        ADAPTER_PUBLISHED,
        "messages this node published to other nodes through Redis (one per room of a broadcast)"
    );
    describe_counter!(
        ADAPTER_RECEIVED,
        "messages this node received from Redis: broadcasts to rooms it has sockets in, requests, its own publications"
    );
    describe_counter!(
        ADAPTER_LOOPBACK,
        "received messages this node had published itself (dropped unread)"
    );
    describe_counter!(
        ADAPTER_DROPPED,
        "messages from other nodes lost because this node read them too slowly"
    );
    describe_counter!(
        ADAPTER_MALFORMED,
        "received messages that were not adapter messages of this version"
    );
    describe_counter!(
        ADAPTER_SUBSCRIBE_FAILURES,
        "room subscriptions that failed (retried)"
    );
    describe_gauge!(
        ADAPTER_ROOMS,
        "rooms this node is subscribed to (rooms it holds a socket in)"
    );
    describe_counter!(
        RETENTION_ROWS,
        "rows the retention job changed on this node, by action (archived, purged, deleted)"
    );
    describe_counter!(
        RETENTION_RUNS,
        "retention runs on this node, by outcome (skipped: another node held the lock)"
    );
}

/// Registers every family whose series are known in advance, at zero, so
/// that a node is visible from its first scrape: dashboards and `absent()`
/// alerts otherwise see nothing until traffic arrives. Counters and gauges
/// only get `+ 0`, so a second node in the same process (tests) changes
/// nothing. HTTP families appear with the first request (their routes and
/// statuses are not known before); `parloir_redis_up` is set by the first
/// heartbeat in cluster mode and absent in embedded mode, where there is no
/// Redis; the adapter's families are copied in at each scrape.
pub fn expose_families(handshake_outcomes: &[&'static str], client_events: &[&'static str]) {
    gauge!(SOCKETS_CONNECTED).increment(0.0);
    gauge!(DRAINING).increment(0.0);
    for counter in [
        MESSAGES_STORED,
        SHARED_STATE_ERRORS,
        BROADCAST_FAILURES,
        SENDS_SHED,
    ] {
        counter!(counter).increment(0);
    }
    for outcome in handshake_outcomes {
        counter!(HANDSHAKES, "outcome" => *outcome).increment(0);
    }
    for event in client_events {
        counter!(EVENTS, "event" => *event, "outcome" => "ok").increment(0);
        // Registered without a sample: rendered with empty buckets.
        let _ = histogram!(EVENT_SECONDS, "event" => *event);
    }
    for reason in Refusal::ALL {
        counter!(REFUSALS, "reason" => reason.label()).increment(0);
    }
    for kind in StoreFailure::ALL {
        counter!(STORE_ERRORS, "kind" => kind.label()).increment(0);
    }
    for action in RetentionAction::ALL {
        counter!(RETENTION_ROWS, "action" => action.label()).increment(0);
    }
    for outcome in RetentionOutcome::ALL {
        counter!(RETENTION_RUNS, "outcome" => outcome.label()).increment(0);
    }
    for channel in crate::domain::Channel::ALL {
        for outcome in NotificationOutcome::ALL {
            notification(channel, outcome, 0);
        }
    }
    gauge!(NOTIFICATIONS_QUEUED).increment(0.0);
    gauge!(NOTIFICATIONS_OLDEST_DUE).increment(0.0);
    gauge!(TASKS_DOWN).increment(0.0);
}

pub fn notification(channel: crate::domain::Channel, outcome: NotificationOutcome, n: u64) {
    counter!(NOTIFICATIONS, "channel" => channel.as_str(), "outcome" => outcome.label())
        .increment(n);
}

/// Notifications not settled for good, and how long the oldest due one
/// has waited past its due time (0 when none is late).
pub fn notification_backlog(queued: u64, oldest_due_age: Duration) {
    gauge!(NOTIFICATIONS_QUEUED).set(queued as f64);
    gauge!(NOTIFICATIONS_OLDEST_DUE).set(oldest_due_age.as_secs_f64());
}

/// Copies the Socket.IO adapter's counters into the exported metrics (at
/// each scrape: the adapter keeps its own counts).
pub fn adapter(stats: socketioxide_sharded::StatsSnapshot) {
    counter!(ADAPTER_PUBLISHED).absolute(stats.published);
    counter!(ADAPTER_RECEIVED).absolute(stats.received);
    counter!(ADAPTER_LOOPBACK).absolute(stats.loopback);
    counter!(ADAPTER_DROPPED).absolute(stats.dropped);
    counter!(ADAPTER_MALFORMED).absolute(stats.malformed);
    counter!(ADAPTER_SUBSCRIBE_FAILURES).absolute(stats.subscribe_failures);
    gauge!(ADAPTER_ROOMS).set(stats.subscribed_rooms as f64);
}

pub fn socket_connected() {
    gauge!(SOCKETS_CONNECTED).increment(1.0);
}

pub fn socket_disconnected() {
    gauge!(SOCKETS_CONNECTED).decrement(1.0);
}

pub fn handshake(outcome: &'static str) {
    counter!(HANDSHAKES, "outcome" => outcome).increment(1);
}

pub fn event(event: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(EVENTS, "event" => event, "outcome" => outcome).increment(1);
    histogram!(EVENT_SECONDS, "event" => event).record(elapsed.as_secs_f64());
}

pub fn http_request(route: String, status: u16, elapsed: Duration) {
    histogram!(HTTP_SECONDS, "route" => route.clone()).record(elapsed.as_secs_f64());
    counter!(HTTP_REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

pub fn message_stored() {
    counter!(MESSAGES_STORED).increment(1);
}

/// A request refused because its client is past a budget.
pub fn refusal(reason: Refusal) {
    counter!(REFUSALS, "reason" => reason.label()).increment(1);
}

pub fn send_shed() {
    counter!(SENDS_SHED).increment(1);
}

pub fn insert_batch(size: usize) {
    histogram!(INSERT_BATCH_SIZE).record(size as f64);
}

pub fn store_error(kind: StoreFailure) {
    counter!(STORE_ERRORS, "kind" => kind.label()).increment(1);
}

pub fn store_call(op: &'static str, outcome: &'static str, elapsed: Duration) {
    histogram!(STORE_SECONDS, "op" => op, "outcome" => outcome).record(elapsed.as_secs_f64());
}

pub fn shared_state_call(op: &'static str, outcome: &'static str, elapsed: Duration) {
    histogram!(SHARED_STATE_SECONDS, "op" => op, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    if outcome != "ok" {
        shared_state_error();
    }
}

pub fn shared_state_error() {
    counter!(SHARED_STATE_ERRORS).increment(1);
}

pub fn broadcast_failure() {
    counter!(BROADCAST_FAILURES).increment(1);
}

pub fn redis_up(up: bool) {
    gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
}

pub fn draining(on: bool) {
    gauge!(DRAINING).set(if on { 1.0 } else { 0.0 });
}

/// Rows one retention batch changed.
pub fn retention_rows(action: RetentionAction, rows: u64) {
    counter!(RETENTION_ROWS, "action" => action.label()).increment(rows);
}

pub fn retention_run(outcome: RetentionOutcome) {
    counter!(RETENTION_RUNS, "outcome" => outcome.label()).increment(1);
}

/// A supervised task failed `n` times (0 registers the task's series).
pub fn task_failures(task: &'static str, n: u64) {
    counter!(TASK_FAILURES, "task" => task).increment(n);
}

/// Supervised tasks waiting for their restart.
pub fn tasks_down(n: usize) {
    gauge!(TASKS_DOWN).set(n as f64);
}
