//! Property-based fuzzing of everything that reads client input: every
//! domain constructor with arbitrary text, and every socket event and HTTP
//! route of a real node with arbitrary JSON. Nothing may panic: every event
//! is answered with an ack, every request with a status below 500, and the
//! process-wide panic count stays at zero.
//!
//! The case count is `PROPTEST_CASES` (default 300 per event and route in
//! CI); run longer with e.g. `PROPTEST_CASES=5000 scripts/test -- cargo
//! nextest run --test fuzz`.

use crate::common;
use crate::common::SECRET;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parloir::Config;
use parloir::config::StoreConfig;
use parloir::domain::{
    Attachment, ClientMessageId, Content, ConversationId, Limits, ListCursor, MessageId,
    NewConversation, NewMessage, PageRequest, UserId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

const EVENTS: [&str; 9] = [
    "join-conversation",
    "leave-conversation",
    "send-message",
    "mark-as-read",
    "mark-conversation-as-read",
    "user-typing",
    "user-stopped-typing",
    "get-presence",
    "no-such-event",
];
/// Field names of the contract, so that generated objects reach past the
/// outermost shape checks.
const FIELDS: [&str; 12] = [
    "conversationId",
    "content",
    "attachments",
    "clientMessageId",
    "messageId",
    "userIds",
    "limit",
    "before",
    "after",
    "participantIds",
    "title",
    "url",
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// Text with the characters that break things: NUL and other controls,
/// astral characters, strings shaped like ids, and `known` ids (of a real
/// conversation, its participants), which reach past the participant checks.
fn text(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f a-z0-9-]{0,40}",
        Just(ConversationId::new_random().to_string()),
        Just(MessageId::new_v7().to_string()),
        Just("😀".repeat(4001)),
        Just("https://cdn.example/a\u{0}.jpg".to_owned()),
        prop::sample::select(known),
    ]
}

fn json(known: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text(known).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(&FIELDS[..]), inner), 0..6).prop_map(
                |fields| {
                    Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

/// Payloads shaped like the contract's (every field present, or not, with
/// fuzzed values), so that each field's validation is reached often.
fn shaped(known: Vec<String>) -> impl Strategy<Value = Value> {
    let t = move || text(known.clone());
    let attachment = (t(), t(), proptest::option::of(t()))
        .prop_map(|(url, kind, name)| json!({"url": url, "type": kind, "name": name}));
    (
        proptest::option::of(t()),
        proptest::option::of(t()),
        proptest::option::of(prop::collection::vec(attachment, 0..3)),
        proptest::option::of(t()),
        proptest::option::of(t()),
        proptest::option::of(prop::collection::vec(t(), 0..4)),
        proptest::option::of(any::<i64>()),
        proptest::option::of(t()),
    )
        .prop_map(
            |(conversation, content, attachments, client_id, message, users, limit, title)| {
                let mut o = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        o.insert(k.to_owned(), v);
                    }
                };
                put("conversationId", conversation.map(Value::from));
                put("content", content.map(Value::from));
                put("attachments", attachments.map(Value::from));
                put("clientMessageId", client_id.map(Value::from));
                put("messageId", message.map(Value::from));
                put("userIds", users.clone().map(Value::from));
                put("participantIds", users.map(Value::from));
                put("limit", limit.map(Value::from));
                put("title", title.map(Value::from));
                Value::Object(o)
            },
        )
}

fn sample<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, n: u32) -> Vec<T> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

proptest! {
    #[test]
    fn domain_constructors_never_panic(
        a in text(vec!["x".into()]), b in text(vec!["y".into()]), c in text(vec!["z".into()]),
        limit in any::<Option<i64>>(), n in 0usize..120,
    ) {
        let limits = Limits::default();
        let _ = UserId::parse("userId", &a);
        let _ = ConversationId::parse("conversationId", &a);
        let _ = MessageId::parse("messageId", &a);
        let _ = ClientMessageId::parse(&a);
        let _ = Content::parse(&a, &limits);
        let _ = ListCursor::decode(&a);
        let _ = PageRequest::parse(limit, Some(&a), Some(&b));
        let attachment = Attachment { url: a.clone(), mime_type: b.clone(), name: Some(c.clone()), size: None };
        let _ = attachment.clone().validate(0, &limits);
        let _ = NewMessage::parse(&a, &b, vec![attachment], Some(&c), &limits);
        let creator = UserId::parse("userId", "creator").expect("a valid id");
        let others: Vec<String> = (0..n).map(|i| format!("{a}{i}")).collect();
        let _ = NewConversation::parse(&creator, &others, Some(&c), &limits);
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

/// A raw Socket.IO client on a websocket: payloads go out exactly as
/// generated, whatever a client library would have refused to send.
struct Raw {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr, token: &str) -> Self {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the websocket opens");
        let mut raw = Self { ws, next: 0 };
        raw.expect_prefix("0").await;
        raw.send(format!("40/messaging,{}", json!({ "token": token })))
            .await;
        raw.expect_prefix("40/messaging,").await;
        raw
    }

    async fn send(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("the node reads");
    }

    /// The next text frame starting with `prefix`, answering pings and
    /// skipping server events on the way.
    async fn expect_prefix(&mut self, prefix: &str) -> String {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("nothing starting with {prefix:?} within 10 s"))
                .expect("the connection stays open")
                .expect("a frame");
            let Message::Text(text) = frame else { continue };
            let text = text.as_str();
            if text == "2" {
                self.send("3".to_owned()).await;
            } else if text.starts_with(prefix) {
                return text.to_owned();
            }
        }
    }

    /// Emits with an ack id; returns the ack's argument.
    async fn emit(&mut self, event: &str, payload: &Value) -> Value {
        self.emit_text(event, &payload.to_string()).await
    }

    /// `emit` with the payload as JSON text, sent as is.
    async fn emit_text(&mut self, event: &str, payload: &str) -> Value {
        self.next += 1;
        let id = self.next;
        self.send(format!("42/messaging,{id}[{},{payload}]", json!(event)))
            .await;
        let ack = self.expect_prefix(&format!("43/messaging,{id}[")).await;
        let args: Value = serde_json::from_str(&ack[format!("43/messaging,{id}").len()..])
            .expect("the ack is JSON");
        args[0].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_payloads_on_every_event_and_route_are_answered_without_a_panic() {
    count_panics();
    common::init_logs();
    // Postgres: it refuses more text than SQLite does (NUL), so a field that
    // is not validated shows as INTERNAL here.
    let database = common::PostgresDatabase::create().await;
    let store = StoreConfig::Postgres {
        url: secrecy::SecretString::from(database.url().to_owned()),
    };
    let node = common::TestNode::spawn(Config::for_tests(store, SECRET)).await;
    let token = common::token("fuzzer");
    let http = reqwest_like::Client::new(node.addr, &token);
    let (status, body) = http
        .request_body(
            "POST",
            "/api/v1/conversations",
            &json!({"participantIds": ["peer"]}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("a conversation");
    let conversation_id = created["id"].as_str().expect("an id").to_owned();
    let known = vec![
        conversation_id.clone(),
        "peer".to_owned(),
        "fuzzer".to_owned(),
    ];
    let mut raw = Raw::connect(node.addr, &token).await;
    let payloads = sample(prop_oneof![json(known.clone()), shaped(known)], cases());

    // Larger frames close the connection by design (PARLOIR_MAX_FRAME_BYTES,
    // covered by the conformance suite): the fuzz stays below.
    let fits = |p: &&Value| p.to_string().len() < 60 * 1024;
    for event in EVENTS {
        for payload in payloads.iter().filter(fits) {
            let ack = raw.emit(event, payload).await;
            let answered = ack["ok"] == true
                || ack["error"]["code"]
                    .as_str()
                    .is_some_and(|c| c != "INTERNAL");
            assert!(answered, "{event} {payload}: {ack}");
        }
    }

    // Nesting far past serde_json's recursion limit (128), which a client
    // library would not even encode: refused, not a stack overflow.
    let deep = format!("{}0{}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_object = format!(r#"{{"conversationId":"{conversation_id}","content":{deep}}}"#);
    for event in EVENTS {
        for payload in [&deep, &deep_object] {
            let ack = raw.emit_text(event, payload).await;
            assert_eq!(ack["error"]["code"], "VALIDATION", "{event}: {ack}");
        }
    }
    for path in [
        "/api/v1/conversations".to_owned(),
        format!("/api/v1/conversations/{conversation_id}/messages"),
    ] {
        let status = http.request("POST", &path, &deep_object).await;
        assert!((400..500).contains(&status), "POST {path}: {status}");
    }

    for payload in &payloads {
        let conversation = if payload.to_string().len() % 2 == 0 {
            conversation_id.clone()
        } else {
            ConversationId::new_random().to_string()
        };
        for (method, path) in [
            ("POST", "/api/v1/conversations".to_owned()),
            (
                "POST",
                format!("/api/v1/conversations/{conversation}/messages"),
            ),
            ("POST", format!("/api/v1/conversations/{conversation}/read")),
        ] {
            let status = http.request(method, &path, &payload.to_string()).await;
            assert!(status < 500, "{method} {path} {payload}: {status}");
        }
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a handler panicked");
    node.shutdown().await.expect("the node drains cleanly");
    database.drop_database().await;
}

/// Just enough HTTP/1.1 for the fuzz: a request with a JSON body, its status.
mod reqwest_like {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Client {
        addr: std::net::SocketAddr,
        token: String,
    }

    impl Client {
        pub fn new(addr: std::net::SocketAddr, token: &str) -> Self {
            Self {
                addr,
                token: token.to_owned(),
            }
        }

        pub async fn request(&self, method: &str, path: &str, body: &str) -> u16 {
            self.request_body(method, path, body).await.0
        }

        pub async fn request_body(&self, method: &str, path: &str, body: &str) -> (u16, String) {
            let mut stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .expect("the node listens");
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                self.token,
                body.len()
            );
            stream
                .write_all(request.as_bytes())
                .await
                .expect("the request is sent");
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.expect("a response");
            let response = String::from_utf8_lossy(&response).into_owned();
            let status = response
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("a status line");
            let body = response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            (status, body)
        }
    }
}
