//! Real servers for the adapter's tests: socketioxide behind axum on random
//! loopback ports, each with its own fred connection to a shared Redis (or
//! Redis Cluster), and a minimal Engine.IO 4 / Socket.IO 4 websocket client.
//!
//! The Redis servers come from the environment, as the workspace's test
//! command provides them: `PARLOIR_TEST_REDIS_URL` (one Redis) and
//! `PARLOIR_TEST_REDIS_CLUSTER_URL` (a Redis Cluster, fred's
//! `redis-cluster://host:port?node=host:port` form).
#![allow(dead_code)] // each test file uses a subset

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Emitter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide_sharded::{
    ShardedAdapter, ShardedAdapterCtr, ShardedConfig, Stats, StatsSnapshot,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

pub type Adapter = ShardedAdapter<Emitter>;

/// How long any single expected event may take.
pub const EVENT: Duration = Duration::from_secs(5);

/// The Redis deployments to run each test against.
pub fn redis_urls() -> Vec<(&'static str, String)> {
    let required = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run scripts/test (it starts a Redis and a Redis Cluster)")
        })
    };
    vec![
        ("redis", required("PARLOIR_TEST_REDIS_URL")),
        ("redis-cluster", required("PARLOIR_TEST_REDIS_CLUSTER_URL")),
    ]
}

/// A prefix no other test uses, so tests sharing a Redis never meet.
pub fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}

pub fn config(prefix: &str) -> ShardedConfig {
    ShardedConfig {
        prefix: prefix.to_owned(),
        max_rooms_per_split: 3,
        request_timeout: Duration::from_secs(2),
        ..ShardedConfig::default()
    }
}

pub async fn fred_client(url: &str) -> fred::clients::SubscriberClient {
    use fred::prelude::*;
    let mut config = Config::from_url(url).expect("a Redis URL");
    config.version = fred::types::RespVersion::RESP3;
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.broadcast_channel_capacity = 4096)
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build_subscriber_client()
        .expect("a subscriber client");
    client.init().await.expect("connected to Redis");
    client
}

/// A socketioxide server on the sharded adapter, serving namespace `/`:
/// - the handshake's `auth.rooms` are joined through the adapter;
/// - `to {rooms, except, event, data}` broadcasts from the socket (which is
///   left out, as socket.io's `socket.to` does);
/// - `join` / `leave` room go through the adapter; `fetch` room answers the
///   ids of the sockets in it on every server; `kick` room disconnects them;
///   `rooms` answers every room of every other socket.
pub struct Server {
    pub port: u16,
    stats: Arc<Stats>,
    pub io: SocketIo<Adapter>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Deserialize)]
struct Auth {
    #[serde(default)]
    rooms: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct To {
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    event: String,
    data: Value,
}

async fn connected(_: SocketRef<Adapter>) {}

/// Connect middleware: socketioxide sends CONNECT once the middlewares are
/// done and only then runs the connect handler, so whatever the client may
/// rely on right after connecting is set up here.
async fn prepare(s: SocketRef<Adapter>, Data(auth): Data<Auth>) -> Result<(), String> {
    // A failed subscription (Redis down) is retried by the adapter; the
    // socket is in its rooms locally either way.
    let _ = s.local().join(auth.rooms).await;
    s.on(
        "to",
        async |s: SocketRef<Adapter>, Data(to): Data<To>, ack: AckSender<Adapter>| {
            let outcome = s
                .to(to.rooms)
                .except(to.except)
                .emit(&to.event, &to.data)
                .await;
            let _ = ack.send(&outcome.is_ok());
        },
    );
    s.on(
        "join",
        async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
            let outcome = s.local().join(room).await;
            let _ = ack.send(&outcome.is_ok());
        },
    );
    s.on(
        "leave",
        async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
            let outcome = s.local().leave(room).await;
            let _ = ack.send(&outcome.is_ok());
        },
    );
    s.on(
        "fetch",
        async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
            let mut ids: Vec<String> = match s.within(room).fetch_sockets().await {
                Ok(sockets) => sockets.iter().map(|r| r.data().id.to_string()).collect(),
                Err(e) => vec![format!("error: {e}")],
            };
            ids.sort();
            let _ = ack.send(&ids);
        },
    );
    s.on(
        "kick",
        async |s: SocketRef<Adapter>, Data(room): Data<String>, ack: AckSender<Adapter>| {
            let outcome = s.within(room).disconnect().await;
            let _ = ack.send(&outcome.is_ok());
        },
    );
    s.on(
        "rooms",
        async |s: SocketRef<Adapter>, ack: AckSender<Adapter>| {
            let mut rooms: Vec<String> = match s.broadcast().rooms().await {
                Ok(rooms) => rooms.into_iter().map(|r| r.to_string()).collect(),
                Err(e) => vec![format!("error: {e}")],
            };
            rooms.sort();
            let _ = ack.send(&rooms);
        },
    );
    Ok(())
}

impl Server {
    pub async fn start(redis_url: &str, config: ShardedConfig) -> Self {
        let client = fred_client(redis_url).await;
        let ctr = ShardedAdapterCtr::new(client, config).expect("a valid configuration");
        let stats = ctr.stats();
        let (layer, io) = SocketIo::builder()
            .with_adapter::<Adapter>(ctr)
            .build_layer();
        io.ns("/", connected.with(prepare))
            .await
            .expect("the namespace's channels are subscribed");
        let app = axum::Router::<()>::new().layer(layer);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            stats,
            io,
            task,
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits until `condition` holds for this server's counters.
    pub async fn wait_stats(&self, what: &str, condition: impl Fn(&StatsSnapshot) -> bool) {
        let deadline = tokio::time::Instant::now() + EVENT;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let now = self.stats();
            if condition(&now) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {EVENT:?}, counters {now:?}"
            );
            tick.tick().await;
        }
    }

    pub async fn connect(&self, rooms: &[&str]) -> Client {
        Client::connect(self.port, json!({ "rooms": rooms })).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Socket.IO client over a websocket: events land in a queue, acks are
/// matched to their emits.
pub struct Client {
    pub sid: String,
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    pending: Arc<std::sync::Mutex<std::collections::HashMap<u64, oneshot::Sender<Value>>>>,
    next_ack: u64,
    closed: Option<oneshot::Receiver<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn connect(port: u16, auth: Value) -> Self {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the websocket opens");
        let (mut sink, mut stream) = ws.split();
        let open = next_text(&mut stream).await;
        assert!(
            open.starts_with('0'),
            "an Engine.IO open packet, got {open}"
        );
        sink.send(Message::text(format!("40{auth}")))
            .await
            .expect("CONNECT sent");
        // The server may ping before it answers the CONNECT.
        let connected = loop {
            let text = next_text(&mut stream).await;
            if text == "2" {
                sink.send(Message::text("3")).await.expect("PONG sent");
                continue;
            }
            break text;
        };
        let body = connected
            .strip_prefix("40")
            .unwrap_or_else(|| panic!("a CONNECT answer, got {connected}"));
        let sid = serde_json::from_str::<Value>(body).expect("CONNECT carries JSON")["sid"]
            .as_str()
            .expect("a sid")
            .to_owned();

        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let pending: Arc<std::sync::Mutex<std::collections::HashMap<u64, oneshot::Sender<Value>>>> =
            Arc::default();
        let (closed_tx, closed) = oneshot::channel();
        let acks = pending.clone();
        let pong = out.clone();
        let task = tokio::spawn(async move {
            let writer = async {
                while let Some(text) = outgoing.recv().await {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
            };
            let reader = async {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let text = text.as_str();
                    if text == "2" {
                        let _ = pong.send("3".to_owned());
                    } else if let Some(event) = text.strip_prefix("42") {
                        let args: Value = serde_json::from_str(event).expect("an event array");
                        let name = args[0].as_str().unwrap_or_default().to_owned();
                        let _ = events_tx.send((name, args[1].clone()));
                    } else if let Some(ack) = text.strip_prefix("43") {
                        let split = ack.find('[').expect("an ack array");
                        let id: u64 = ack[..split].parse().expect("an ack id");
                        let args: Value = serde_json::from_str(&ack[split..]).expect("ack args");
                        if let Some(tx) = acks.lock().expect("not poisoned").remove(&id) {
                            let _ = tx.send(args[0].clone());
                        }
                    } else if text.starts_with("41") {
                        break; // disconnected by the server
                    }
                }
            };
            tokio::select! {
                _ = writer => {}
                _ = reader => {}
            }
            let _ = closed_tx.send(());
        });
        Self {
            sid,
            out,
            events,
            pending,
            next_ack: 0,
            closed: Some(closed),
            task,
        }
    }

    /// Emits and waits for the ack's first argument.
    pub async fn call(&mut self, event: &str, data: Value) -> Value {
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("not poisoned")
            .insert(self.next_ack, tx);
        let packet = format!("42{}{}", self.next_ack, json!([event, data]));
        self.out.send(packet).expect("the client runs");
        tokio::time::timeout(EVENT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack to {event} within {EVENT:?}"))
            .expect("the ack arrives")
    }

    /// Broadcasts `data` as `event` to `rooms` minus `except`, from this socket.
    pub async fn to(&mut self, rooms: &[&str], except: &[&str], event: &str, data: Value) {
        let ok = self
            .call(
                "to",
                json!({"rooms": rooms, "except": except, "event": event, "data": data}),
            )
            .await;
        assert_eq!(ok, json!(true), "the broadcast to {rooms:?} succeeded");
    }

    pub async fn join(&mut self, room: &str) {
        assert_eq!(self.call("join", json!(room)).await, json!(true));
    }

    pub async fn leave(&mut self, room: &str) {
        assert_eq!(self.call("leave", json!(room)).await, json!(true));
    }

    /// The next event received, which must come within [`EVENT`].
    pub async fn next_event(&mut self) -> (String, Value) {
        tokio::time::timeout(EVENT, self.events.recv())
            .await
            .expect("an event within the deadline")
            .expect("the client runs")
    }

    /// Events received and not read yet.
    pub fn pending_events(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Waits until the server closes this socket.
    pub async fn closed(&mut self) {
        let closed = self.closed.take().expect("waited once");
        tokio::time::timeout(EVENT, closed)
            .await
            .expect("disconnected within the deadline")
            .expect("the client task ends");
    }

    pub fn close(self) {
        self.task.abort();
    }
}

async fn next_text<S>(stream: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(EVENT, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.as_str().to_owned(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}
