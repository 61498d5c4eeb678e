//! Spans reach an OTLP collector: a `send-message` over Socket.IO (driven by
//! the official client) and over HTTP each produce their event or request
//! span and the service span, with the attributes SREs filter on.

use crate::common;
use crate::common::{SECRET, token};

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestNode;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use opentelemetry::trace::TracerProvider as _;
use parloir::Config;
use parloir::config::StoreConfig;
use tracing_subscriber::layer::SubscriberExt as _;

/// A W3C trace context from a caller upstream: its trace id and span id.
const UPSTREAM_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const UPSTREAM_SPAN_ID: &str = "00f067aa0ba902b7";

async fn post(url: &str, token: &str, body: serde_json::Value) -> serde_json::Value {
    post_with_headers(url, token, body, &[]).await
}

async fn post_with_headers(
    url: &str,
    token: &str,
    body: serde_json::Value,
    headers: &[String],
) -> serde_json::Value {
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            url,
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .args(headers.iter().flat_map(|h| ["-H", h.as_str()]))
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .await
        .expect("curl runs");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// A string attribute. The fake collector renders values as their protobuf
/// `Debug` text (`Some(AnyValue { value: Some(StringValue("x")) })`).
fn attr(span: &ExportedSpan, key: &str) -> Option<String> {
    let raw = span.attributes.get(key)?;
    let start = raw.find("StringValue(\"")? + "StringValue(\"".len();
    let end = raw[start..].find("\")")? + start;
    Some(raw[start..end].to_owned())
}

fn find<'a>(
    spans: &'a [ExportedSpan],
    name: &str,
    attrs: &[(&str, &str)],
) -> Option<&'a ExportedSpan> {
    spans
        .iter()
        .find(|s| s.name == name && attrs.iter().all(|(k, v)| attr(s, k).as_deref() == Some(*v)))
}

fn describe(spans: &[ExportedSpan]) -> Vec<(String, BTreeMap<String, String>)> {
    spans
        .iter()
        .map(|s| (s.name.clone(), s.attributes.clone()))
        .collect()
}

/// Collects exported spans until `done` holds or the deadline passes.
async fn collect_until(
    collector: &mut FakeCollectorServer,
    done: impl Fn(&[ExportedSpan]) -> bool,
) -> Vec<ExportedSpan> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut spans = Vec::new();
    while !done(&spans) && tokio::time::Instant::now() < deadline {
        spans.extend(collector.exported_spans(1, Duration::from_secs(1)).await);
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_spans_are_exported_with_their_attributes() {
    let mut collector = FakeCollectorServer::start()
        .await
        .expect("fake collector starts");
    let provider = parloir::telemetry::otlp_provider(&collector.endpoint(), "parloir-test")
        .expect("exporter builds");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("parloir")));
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber of this test binary");
    // What `telemetry::init` installs in a node process.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::spawn(Config::for_tests(
        StoreConfig::Sqlite {
            path: dir.path().join("otlp.db"),
        },
        SECRET,
    ))
    .await;
    let (alice, bob) = (token("otlp-alice"), token("otlp-bob"));
    let conversation = post(
        &format!("{}/api/v1/conversations", node.url()),
        &alice,
        serde_json::json!({"participantIds": ["otlp-bob"]}),
    )
    .await;
    let conversation_id = conversation["id"]
        .as_str()
        .expect("a conversation id")
        .to_owned();

    // Over HTTP, continuing an upstream caller's trace…
    let http_message = post_with_headers(
        &format!(
            "{}/api/v1/conversations/{conversation_id}/messages",
            node.url()
        ),
        &bob,
        serde_json::json!({"content": "over http"}),
        &[format!(
            "traceparent: 00-{UPSTREAM_TRACE_ID}-{UPSTREAM_SPAN_ID}-01"
        )],
    )
    .await;
    // …and over Socket.IO with the official client.
    let reply = common::send_with_official_client(
        &node.url(),
        &alice,
        serde_json::json!({"conversationId": conversation_id, "content": "over socket"}),
    )
    .await;
    let socket_message_id = reply["ack"]["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("send acked: {reply}"))
        .to_owned();

    provider.force_flush().expect("spans flush");
    let http_id = http_message["id"]
        .as_str()
        .expect("a message id")
        .to_owned();
    let spans = collect_until(&mut collector, |spans| {
        find(spans, "socket.event", &[("event", "send-message")]).is_some()
            && find(spans, "send_message", &[("message.id", &socket_message_id)]).is_some()
            && spans
                .iter()
                .filter(|s| {
                    s.name == "store"
                        && attr(s, "db.operation").as_deref() == Some("insert_message")
                })
                .count()
                >= 2
            && find(spans, "send_message", &[("message.id", &http_id)]).is_some()
            && find(
                spans,
                "http.request",
                &[
                    ("http.method", "POST"),
                    ("http.route", "/api/v1/conversations/{id}/messages"),
                ],
            )
            .is_some()
    })
    .await;
    let all = describe(&spans);

    let event = find(
        &spans,
        "socket.event",
        &[
            ("event", "send-message"),
            ("outcome", "ok"),
            ("user.id", "otlp-alice"),
        ],
    )
    .unwrap_or_else(|| panic!("no socket.event span for send-message in {all:#?}"));
    let service = find(
        &spans,
        "send_message",
        &[
            ("message.id", &socket_message_id),
            ("conversation.id", &conversation_id),
        ],
    )
    .unwrap_or_else(|| panic!("no service span for the socket send in {all:#?}"));
    assert_eq!(
        service.parent_span_id, event.span_id,
        "the service span is a child of the event span"
    );
    assert_eq!(service.trace_id, event.trace_id);

    let request = find(
        &spans,
        "http.request",
        &[
            ("http.route", "/api/v1/conversations/{id}/messages"),
            ("http.method", "POST"),
        ],
    )
    .unwrap_or_else(|| panic!("no http.request span for the HTTP send in {all:#?}"));
    let http_service = find(
        &spans,
        "send_message",
        &[("message.id", &http_id), ("user.id", "otlp-bob")],
    )
    .unwrap_or_else(|| panic!("no service span for the HTTP send in {all:#?}"));
    assert_eq!(
        http_service.trace_id, request.trace_id,
        "the HTTP send's service span belongs to its request's trace"
    );
    assert_eq!(
        (request.trace_id.as_str(), request.parent_span_id.as_str()),
        (UPSTREAM_TRACE_ID, UPSTREAM_SPAN_ID),
        "the request continues the incoming traceparent"
    );
    node.shutdown().await.expect("the node drains");
}
