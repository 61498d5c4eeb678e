//! Offline notifications end to end: real nodes, a real HTTP receiver for
//! webhooks, a real SMTP server (aiosmtpd) for e-mails, the official
//! Socket.IO client for recipients who are online. Time is a `ManualClock`
//! moved by the test (or, for the node processes, a zero delay), so no test
//! waits for a notification to fall due.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parloir::clock::ManualClock;
use parloir::config::{Config, NotifyConfig, RedisConfig, SharedState, StoreConfig};
use parloir::notify::WebhookSettings;
use parloir::notify::webhook::signature;
use parloir::protocol::UnreadNotification;
use parloir::service::NotifySettings;
use parloir::{App, AppBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::common::processes::{Driver, NodeProcess};
use crate::common::{PostgresDatabase, SECRET, token, unique_user};

/// The webhook signing key every test node and receiver shares.
const KEY: &[u8] = b"parloir-webhook-test-key-32bytes";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- receiver

/// One webhook request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: UnreadNotification,
}

/// A real HTTP server that answers webhooks with scripted statuses (204
/// once the script is spent), checks every signature, and reports each
/// request on a channel.
struct Receiver {
    url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    _stop: tokio_util::sync::DropGuard,
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(StatusCode),
    /// Never answer (the sending node is killed meanwhile).
    Hang,
}

#[derive(Clone)]
struct ReceiverState {
    seen: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>) -> Self {
        let (seen, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(ReceiverState {
                seen,
                script: script.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds");
        let addr: SocketAddr = listener.local_addr().expect("receiver address");
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
        });
        Self {
            url: format!("http://{addr}/hooks"),
            requests,
            script,
            _stop: stop.drop_guard(),
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a webhook arrives in time")
            .expect("the receiver runs")
    }

    /// Every request received so far, without waiting.
    fn so_far(&mut self) -> Vec<Received> {
        let mut all = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            all.push(r);
        }
        all
    }

    fn answer_next(&self, answer: Answer) {
        self.script.lock().expect("script lock").push_back(answer);
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("the webhook carries {name}"))
            .to_owned()
    };
    let id = header("webhook-id");
    let timestamp: i64 = header("webhook-timestamp").parse().expect("Unix seconds");
    assert_eq!(
        header("webhook-signature"),
        signature(KEY, &id, timestamp, &body),
        "the signature is the Standard Webhooks HMAC of id.timestamp.body"
    );
    let parsed: UnreadNotification = serde_json::from_slice(&body).expect("the documented body");
    assert_eq!(
        parsed.id.to_string(),
        id,
        "webhook-id is the notification id"
    );
    assert_eq!(parsed.kind, "message.unread");
    let _ = state.seen.send(Received { id, body: parsed });
    let answer = state
        .script
        .lock()
        .expect("script lock")
        .pop_front()
        .unwrap_or(Answer::Status(StatusCode::NO_CONTENT));
    match answer {
        Answer::Status(status) => status,
        Answer::Hang => std::future::pending().await,
    }
}

// ---------------------------------------------------------------- SMTP sink

/// aiosmtpd on a free port (`tests/support/smtp_sink.py`).
struct SmtpSink {
    port: u16,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl SmtpSink {
    async fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the SMTP sink (pip install aiosmtpd)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the SMTP sink starts")
            .expect("sink stdout")
            .expect("the sink prints its port");
        let port = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Self {
            port,
            lines,
            _child: child,
        }
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("an e-mail arrives in time")
            .expect("sink stdout")
            .expect("the sink runs");
        serde_json::from_str(&line).expect("one JSON line per e-mail")
    }
}

// ---------------------------------------------------------------- nodes

fn notify_settings(max_attempts: u32) -> NotifySettings {
    NotifySettings {
        delay: Duration::from_secs(60),
        max_attempts,
        lease: Duration::from_secs(30),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        batch: 64,
    }
}

fn webhook_to(receiver: &Receiver) -> WebhookSettings {
    WebhookSettings {
        url: receiver.url.parse().expect("receiver URL"),
        key: KEY.to_vec().into(),
        timeout: Duration::from_secs(5),
    }
}

/// A node that notifies through `notify`, on its own SQLite file, its time
/// read from `clock`.
struct Node {
    url: String,
    _stop: tokio_util::sync::DropGuard,
    _dir: Option<tempfile::TempDir>,
}

async fn serve(app: App) -> (String, tokio_util::sync::DropGuard) {
    let url = format!("http://{}", app.local_addr());
    let readiness = app.readiness();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
    tokio::time::timeout(WAIT, readiness.wait_ready())
        .await
        .expect("the node is ready");
    (url, stop.drop_guard())
}

async fn node(notify: NotifyConfig, clock: &Arc<ManualClock>) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_tests(
        StoreConfig::Sqlite {
            path: dir.path().join("parloir.db"),
        },
        SECRET,
    );
    config.notify = notify;
    let app = AppBuilder::new(config)
        .with_clock(clock.clone())
        .build()
        .await
        .expect("the node builds");
    let (url, stop) = serve(app).await;
    Node {
        url,
        _stop: stop,
        _dir: Some(dir),
    }
}

fn webhooks(receiver: &Receiver, max_attempts: u32) -> NotifyConfig {
    NotifyConfig {
        settings: notify_settings(max_attempts),
        poll: Duration::from_millis(20),
        webhook: Some(webhook_to(receiver)),
        smtp: None,
    }
}

// ---------------------------------------------------------------- HTTP

async fn api(method: reqwest::Method, url: String, token: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let mut request = client.request(method, &url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

async fn conversation(node: &str, creator: &str, others: &[&str]) -> String {
    let created = api(
        reqwest::Method::POST,
        format!("{node}/api/v1/conversations"),
        &token(creator),
        Some(json!({"participantIds": others})),
    )
    .await;
    created["id"]
        .as_str()
        .expect("a conversation id")
        .to_owned()
}

async fn send(node: &str, from: &str, conversation: &str, content: &str) -> Value {
    api(
        reqwest::Method::POST,
        format!("{node}/api/v1/conversations/{conversation}/messages"),
        &token(from),
        Some(json!({"content": content})),
    )
    .await
}

/// A counter or gauge of `/metrics` whose line contains every `label` (0 when absent).
async fn metric(node: &str, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(format!("{node}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the metric reaches `at_least` (the worker runs every 20 ms).
async fn until_metric(node: &str, name: &str, labels: &[&str], at_least: f64) {
    tokio::time::timeout(WAIT, async {
        loop {
            if metric(node, name, labels).await >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name}{labels:?} did not reach {at_least}"));
}

const NOTIFIED: &str = "parloir_notifications_total";

// ---------------------------------------------------------------- tests

/// An offline recipient hears of messages once, folded into one
/// notification; an online one and one who read in time never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_participants_who_are_away_and_have_not_read_are_notified() {
    let mut receiver = Receiver::start(vec![]).await;
    let clock = Arc::new(ManualClock::default());
    let node = node(webhooks(&receiver, 3), &clock).await;
    let (alice, online, reader, away) = (
        unique_user("alice"),
        unique_user("online"),
        unique_user("reader"),
        unique_user("away"),
    );
    let c = conversation(&node.url, &alice, &[&online, &reader, &away]).await;
    let mut d = Driver::start().await;
    d.connect("online", &node.url, &token(&online)).await;

    send(&node.url, &alice, &c, "first").await;
    let second = send(&node.url, &alice, &c, "second, and latest").await;
    // Gathered for the two who are away, not for the one online.
    until_metric(&node.url, NOTIFIED, &["outcome=\"gathered\""], 2.0).await;
    api(
        reqwest::Method::POST,
        format!("{}/api/v1/conversations/{c}/read", node.url),
        &token(&reader),
        None,
    )
    .await;
    clock.advance(Duration::from_secs(61));

    let got = receiver.next().await;
    assert_eq!(got.body.recipient_id.as_str(), away);
    assert_eq!(got.body.conversation_id.to_string(), c);
    assert_eq!(
        got.body.unread_count, 2,
        "both messages, in one notification"
    );
    assert_eq!(
        got.body.latest_message.id.to_string(),
        second["id"].as_str().unwrap_or_default()
    );
    assert_eq!(got.body.latest_message.excerpt, "second, and latest");
    assert_eq!(got.body.latest_message.sender_id.as_str(), alice);
    assert_eq!(got.body.latest_message.sender_name, alice, "the name claim");
    // The reader's notification is cancelled, not sent.
    until_metric(&node.url, NOTIFIED, &["outcome=\"cancelled\""], 1.0).await;
    until_metric(&node.url, "parloir_notifications_queued", &[], 0.0).await;
    assert!(receiver.so_far().is_empty(), "exactly one webhook");
    assert_eq!(
        metric(&node.url, NOTIFIED, &["outcome=\"sent\""]).await,
        1.0
    );
}

/// A receiver that fails three times then succeeds sees the same
/// `webhook-id` four times, spaced by the backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_same_webhook_id_until_it_succeeds() {
    let unavailable = Answer::Status(StatusCode::SERVICE_UNAVAILABLE);
    let mut receiver = Receiver::start(vec![unavailable; 3]).await;
    let clock = Arc::new(ManualClock::default());
    let node = node(webhooks(&receiver, 8), &clock).await;
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let c = conversation(&node.url, &alice, &[&bob]).await;
    send(&node.url, &alice, &c, "are you there?").await;
    until_metric(&node.url, NOTIFIED, &["outcome=\"gathered\""], 1.0).await;

    clock.advance(Duration::from_secs(61));
    let mut ids = vec![receiver.next().await.id];
    for retried in 1..=3 {
        until_metric(
            &node.url,
            NOTIFIED,
            &["outcome=\"retried\""],
            f64::from(retried),
        )
        .await;
        // Nothing is attempted before the backoff has passed.
        assert!(receiver.so_far().is_empty());
        clock.advance(Duration::from_secs(60));
        ids.push(receiver.next().await.id);
    }
    until_metric(&node.url, NOTIFIED, &["outcome=\"sent\""], 1.0).await;
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

/// A receiver that never recovers: the notification is dead after the
/// last attempt, and is not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_ends_in_dead_after_the_limit() {
    let failing = Answer::Status(StatusCode::BAD_GATEWAY);
    let mut receiver = Receiver::start(vec![failing; 3]).await;
    let clock = Arc::new(ManualClock::default());
    let node = node(webhooks(&receiver, 3), &clock).await;
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let c = conversation(&node.url, &alice, &[&bob]).await;
    send(&node.url, &alice, &c, "hello?").await;
    until_metric(&node.url, NOTIFIED, &["outcome=\"gathered\""], 1.0).await;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(61));
        receiver.next().await;
    }
    until_metric(&node.url, NOTIFIED, &["outcome=\"dead\""], 1.0).await;
    assert_eq!(
        metric(&node.url, NOTIFIED, &["outcome=\"retried\""]).await,
        2.0
    );
    assert_eq!(
        metric(&node.url, "parloir_notifications_queued", &[]).await,
        0.0
    );
    clock.advance(Duration::from_secs(3600));
    until_metric(&node.url, "parloir_notifications_queued", &[], 0.0).await;
    assert!(
        receiver.so_far().is_empty(),
        "a dead notification is not retried"
    );
    // A permanent refusal is dead at once.
    receiver.answer_next(Answer::Status(StatusCode::GONE));
    send(&node.url, &alice, &c, "still there?").await;
    until_metric(&node.url, NOTIFIED, &["outcome=\"gathered\""], 2.0).await;
    clock.advance(Duration::from_secs(61));
    receiver.next().await;
    until_metric(&node.url, NOTIFIED, &["outcome=\"dead\""], 2.0).await;
}

/// E-mail through a real SMTP server, to the address of the recipient's
/// token, until the recipient turns e-mails off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_recipient_gets_an_email_until_they_turn_them_off() {
    let mut sink = SmtpSink::start().await;
    let clock = Arc::new(ManualClock::default());
    let notify = NotifyConfig {
        settings: notify_settings(3),
        poll: Duration::from_millis(20),
        webhook: None,
        smtp: Some(parloir::notify::SmtpSettings {
            url: format!("smtp://127.0.0.1:{}", sink.port).into(),
            from: "parloir <noreply@parloir.test>".parse().expect("a mailbox"),
            timeout: Duration::from_secs(5),
        }),
    };
    let node = node(notify, &clock).await;
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let bob_token = parloir::auth::mint_hs256(
        &secrecy::SecretString::from(SECRET.to_owned()),
        &parloir::domain::UserId::parse("user", &bob).expect("valid id"),
        None,
        Some("Bob"),
        Some("bob@customer.test"),
        chrono::Duration::minutes(10),
    )
    .expect("a token");
    // Bob's token is seen once (an API call), which is how his address is known.
    api(
        reqwest::Method::GET,
        format!("{}/api/v1/unread", node.url),
        &bob_token,
        None,
    )
    .await;
    let c = conversation(&node.url, &alice, &[&bob]).await;
    send(
        &node.url,
        &alice,
        &c,
        "Your appointment <tomorrow> is confirmed",
    )
    .await;
    until_metric(&node.url, NOTIFIED, &["outcome=\"gathered\""], 1.0).await;
    clock.advance(Duration::from_secs(61));

    let mail = sink.next().await;
    assert_eq!(mail["to"], json!(["bob@customer.test"]));
    assert_eq!(mail["from"], "noreply@parloir.test");
    assert_eq!(mail["subject"], format!("New message from {alice}"));
    let text = mail["text"].as_str().expect("a plain-text part");
    let html = mail["html"].as_str().expect("an HTML part");
    assert!(
        text.contains("Your appointment <tomorrow> is confirmed"),
        "{text}"
    );
    assert!(
        html.contains("Your appointment &lt;tomorrow&gt; is confirmed"),
        "{html}"
    );
    for part in [text, html] {
        assert!(part.contains("turn off e-mail notifications"), "{part}");
        assert!(part.contains(&c), "names the conversation: {part}");
    }
    assert!(
        mail["message_id"]
            .as_str()
            .is_some_and(|id| id.ends_with("@parloir>")),
        "{mail}"
    );

    let settings = api(
        reqwest::Method::PUT,
        format!("{}/api/v1/me/notifications", node.url),
        &bob_token,
        Some(json!({"email": false})),
    )
    .await;
    assert_eq!(settings, json!({"email": false}));
    send(&node.url, &alice, &c, "second").await;
    until_metric(&node.url, NOTIFIED, &["outcome=\"gathered\""], 2.0).await;
    clock.advance(Duration::from_secs(61));
    until_metric(
        &node.url,
        NOTIFIED,
        &["channel=\"email\"", "outcome=\"cancelled\""],
        1.0,
    )
    .await;
    assert_eq!(
        metric(&node.url, NOTIFIED, &["outcome=\"sent\""]).await,
        1.0
    );
}

/// Bad input to the settings route is a VALIDATION error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_settings_refuse_bad_input() {
    let receiver = Receiver::start(vec![]).await;
    let clock = Arc::new(ManualClock::default());
    let node = node(webhooks(&receiver, 3), &clock).await;
    let client = reqwest::Client::new();
    for body in [
        json!({}),
        json!({"email": "no"}),
        json!({"email": true, "sms": true}),
    ] {
        let response = client
            .put(format!("{}/api/v1/me/notifications", node.url))
            .bearer_auth(token(&unique_user("carol")))
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.expect("an error body");
        assert_eq!(error["error"]["code"], "VALIDATION", "{body}");
    }
    let response = client
        .put(format!("{}/api/v1/me/notifications", node.url))
        .json(&json!({"email": false}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Two nodes of a cluster (one Postgres, one Redis) deliver each
/// notification exactly once between them. The database is the test's own
/// (`#[sqlx::test]`), handed to each node as a pool of its own.
#[sqlx::test(migrations = "migrations/postgres")]
async fn two_nodes_deliver_each_notification_once(pool: sqlx::PgPool) {
    let mut receiver = Receiver::start(vec![]).await;
    let clock = Arc::new(ManualClock::default());
    let redis_url = std::env::var("PARLOIR_TEST_REDIS_URL")
        .expect("PARLOIR_TEST_REDIS_URL is set: run scripts/test");
    let prefix = format!("notify-{}:", uuid::Uuid::new_v4().simple());
    let mut urls = Vec::new();
    let mut guards = Vec::new();
    for _ in 0..2 {
        // The URL is not used: the node stores through `node_pool`.
        let mut config = Config::for_tests(
            StoreConfig::Postgres {
                url: "postgres://the-test-pool".to_owned().into(),
            },
            SECRET,
        );
        let node_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(5)
            .connect_with((*pool.connect_options()).clone())
            .await
            .expect("a pool of the test database");
        config.shared = SharedState::Redis(RedisConfig {
            url: redis_url.clone().into(),
            pool_size: 2,
            command_timeout: Duration::from_secs(2),
            prefix: prefix.clone(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
        });
        config.notify = webhooks(&receiver, 3);
        // Small batches: the two workers claim side by side many times.
        config.notify.settings.batch = 2;
        config.notify.poll = Duration::from_millis(5);
        let app = AppBuilder::new(config)
            .with_clock(clock.clone())
            .with_postgres_pool(node_pool)
            .build()
            .await
            .expect("the node builds");
        let (url, guard) = serve(app).await;
        urls.push(url);
        guards.push(guard);
    }
    const N: usize = 40;
    for i in 0..N {
        // A sender each: one sender's burst is smaller than N.
        let (alice, bob) = (unique_user("alice"), unique_user("bob"));
        let node = &urls[i % 2];
        let c = conversation(node, &alice, &[&bob]).await;
        send(node, &alice, &c, &format!("message {i}")).await;
    }
    until_metric(&urls[0], NOTIFIED, &["outcome=\"gathered\""], N as f64).await;
    clock.advance(Duration::from_secs(61));
    let mut ids = HashSet::new();
    for _ in 0..N {
        ids.insert(receiver.next().await.id);
    }
    assert_eq!(ids.len(), N, "every notification arrives");
    // Both nodes' workers report here (one metrics recorder per test process).
    until_metric(&urls[0], NOTIFIED, &["outcome=\"sent\""], N as f64).await;
    until_metric(&urls[1], "parloir_notifications_queued", &[], 0.0).await;
    let extra = receiver.so_far();
    assert!(extra.is_empty(), "delivered twice: {extra:?}");
    assert_eq!(
        metric(&urls[0], NOTIFIED, &["outcome=\"sent\""]).await,
        N as f64
    );
    drop(guards);
}

/// A node killed while delivering leaves the notification to another,
/// which delivers it once its lease has run out, with the same webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_delivery_leaves_the_notification_to_another() {
    let mut receiver = Receiver::start(vec![Answer::Hang]).await;
    let db = PostgresDatabase::create().await;
    let env = |receiver: &Receiver| {
        vec![
            ("DATABASE_URL", db.url().to_owned()),
            ("JWT_SECRET", SECRET.to_owned()),
            ("PARLOIR_WEBHOOK_URL", receiver.url.clone()),
            (
                "PARLOIR_WEBHOOK_SECRET",
                String::from_utf8(KEY.to_vec()).expect("ASCII key"),
            ),
            ("PARLOIR_WEBHOOK_TIMEOUT_MS", "1500".to_owned()),
            ("PARLOIR_NOTIFY_LEASE_SECS", "2".to_owned()),
            ("PARLOIR_NOTIFY_DELAY_SECS", "0".to_owned()),
            ("PARLOIR_NOTIFY_POLL_MS", "50".to_owned()),
        ]
    };
    let first = NodeProcess::start(&env(&receiver)).await;
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let c = conversation(&first.url, &alice, &[&bob]).await;
    send(&first.url, &alice, &c, "anyone?").await;
    // The first node is delivering (the receiver holds its request): kill it.
    let held = receiver.next().await;
    first.kill().await;
    let second = NodeProcess::start(&env(&receiver)).await;
    let delivered = receiver.next().await;
    assert_eq!(
        delivered.id, held.id,
        "the same notification, the same webhook-id"
    );
    assert_eq!(delivered.body.recipient_id.as_str(), bob);
    until_metric(&second.url, NOTIFIED, &["outcome=\"sent\""], 1.0).await;
    db.drop_database().await;
}
