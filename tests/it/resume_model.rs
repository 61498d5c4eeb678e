//! Model-based resume (issue #23): clients on one or two nodes send, read,
//! delete and create conversations in a seeded random schedule; at random
//! points a client's socket closes or its connection drops without a close,
//! a node is SIGKILLed, or every node restarts one after the other. Each
//! client applies what it receives by number (in order, once) and resumes
//! as the contract says: `sync` for what it misses and the conversations it
//! was added to, `join-conversation` with `afterSeq` for each room. At the
//! end every client's view — messages, deletions, read receipts, unread
//! counts, conversation list — equals the store's and every other client's.
//!
//! Runs on one node (SQLite, Postgres) and on two nodes over a Redis and
//! over a Redis Cluster, each node its own process. The seed is printed;
//! `PARLOIR_MODEL_SEED=<seed>` replays it, `PARLOIR_MODEL_OPS=<n>` sets the
//! schedule's length (default 60).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::processes::{Driver, NodeProcess, RedisKind, TestRedis};
use crate::common::{self, PostgresDatabase, SECRET, token};

const EVENT: Duration = Duration::from_secs(10);
const USERS: usize = 4;

/// Where the nodes store.
enum Variant {
    Sqlite,
    Postgres,
    TwoNodes(RedisKind),
}

/// The nodes of a run: started, killed and restarted by the schedule.
struct Nodes {
    env: Vec<Vec<(&'static str, String)>>,
    running: Vec<Option<NodeProcess>>,
}

impl Nodes {
    async fn start(env: Vec<Vec<(&'static str, String)>>) -> Self {
        let mut running = Vec::new();
        for e in &env {
            running.push(Some(NodeProcess::start(e).await));
        }
        Self { env, running }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.running.len())
            .filter(|i| self.running[*i].is_some())
            .collect()
    }

    fn url(&self, i: usize) -> String {
        self.running[i].as_ref().expect("a live node").url.clone()
    }
}

/// What a client has applied of one conversation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ConversationView {
    latest: u64,
    /// Message id → (content, deleted).
    messages: BTreeMap<String, (String, bool)>,
    /// Reader → the message read up to.
    reads: BTreeMap<String, String>,
    /// Events above `latest + 1`, waiting for the gap to fill.
    pending: BTreeMap<u64, (String, Value)>,
}

impl ConversationView {
    /// Applies one numbered event, once and in order. Returns whether it
    /// was a duplicate.
    fn offer(&mut self, seq: u64, event: &str, data: &Value) -> bool {
        if seq <= self.latest || self.pending.contains_key(&seq) {
            return true;
        }
        self.pending.insert(seq, (event.to_owned(), data.clone()));
        while let Some((event, data)) = self.pending.remove(&(self.latest + 1)) {
            self.apply(&event, &data);
            self.latest += 1;
        }
        false
    }

    fn apply(&mut self, event: &str, data: &Value) {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match event {
            "new-message" => {
                let deleted = data.get("deletedAt").is_some_and(|d| !d.is_null());
                self.messages
                    .insert(text(&data["id"]), (text(&data["content"]), deleted));
            }
            "message-deleted" => {
                // Gone for the reader: what a replay would show of it.
                if let Some(m) = self.messages.get_mut(&text(&data["messageId"])) {
                    *m = (String::new(), true);
                }
            }
            "message-read" => {
                self.reads
                    .insert(text(&data["userId"]), text(&data["messageId"]));
            }
            // conversation-created, seq-skipped: only the number moves.
            _ => {}
        }
    }

    fn visible(&self) -> Vec<(String, String)> {
        self.messages
            .iter()
            .filter(|(_, (_, deleted))| !*deleted)
            .map(|(id, (content, _))| (id.clone(), content.clone()))
            .collect()
    }
}

/// One user with (at most) one socket.
struct Client {
    user: String,
    /// The node its socket is on, while connected.
    node: Option<usize>,
    conversations: HashMap<String, ConversationView>,
    since: Option<String>,
    duplicates: u64,
}

/// What the test knows was done, from the acks.
#[derive(Default)]
struct Truth {
    /// Conversation → participants.
    conversations: HashMap<String, Vec<String>>,
    /// Conversation → reader → message read up to.
    reads: HashMap<String, BTreeMap<String, String>>,
    /// Message → (conversation, sender).
    sent: HashMap<String, (String, String)>,
    deleted: HashSet<String>,
}

struct Run {
    d: Driver,
    nodes: Nodes,
    clients: Vec<Client>,
    truth: Truth,
    rng: StdRng,
    log: Vec<String>,
}

impl Run {
    fn note(&mut self, what: String) {
        println!("{what}");
        self.log.push(what);
    }

    fn live_node(&mut self) -> usize {
        let live = self.nodes.live();
        live[self.rng.random_range(0..live.len())]
    }

    /// Applies what every connected client received; marks as disconnected
    /// those whose socket the server closed or whose node died.
    async fn absorb(&mut self) {
        for i in 0..self.clients.len() {
            if self.clients[i].node.is_none() {
                continue;
            }
            let name = self.clients[i].user.clone();
            for e in self.d.drain(&name).await {
                let event = e["event"].as_str().unwrap_or_default().to_owned();
                let data = e["args"][0].clone();
                if event == "disconnect" {
                    self.d.close(&name).await;
                    self.clients[i].node = None;
                    break;
                }
                self.offer(i, &event, &data);
            }
        }
    }

    fn offer(&mut self, i: usize, event: &str, data: &Value) {
        let Some(seq) = data["seq"].as_u64() else {
            return; // not numbered: typing, presence, unread, history
        };
        let Some(conversation) = data["conversationId"].as_str().or_else(|| {
            (event == "conversation-created")
                .then(|| data["id"].as_str())
                .flatten()
        }) else {
            return;
        };
        let client = &mut self.clients[i];
        let view = client
            .conversations
            .entry(conversation.to_owned())
            .or_default();
        if event == "conversation-latest" {
            return; // a hint: gaps are looked for after each step anyway
        }
        if view.offer(seq, event, data) {
            client.duplicates += 1;
        }
    }

    /// Syncs `conversations` of client `i` (following `hasMore`) and adds
    /// the conversations it was added to.
    async fn sync(&mut self, i: usize, conversations: Vec<String>) {
        let name = self.clients[i].user.clone();
        let mut wanted = conversations;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 50, "sync never settles for {name}");
            let asked: serde_json::Map<String, Value> = wanted
                .iter()
                .map(|c| {
                    let latest = self.clients[i].conversations.get(c).map_or(0, |v| v.latest);
                    (c.clone(), json!(latest))
                })
                .collect();
            let mut request = json!({"conversations": asked});
            if let Some(since) = &self.clients[i].since {
                request["since"] = json!(since);
            }
            let ack = self.d.emit(&name, "sync", request).await;
            if ack["ok"] != true {
                return; // the node died under us: resumed at the next reconnect
            }
            let data = &ack["data"];
            self.clients[i].since = data["syncedAt"].as_str().map(str::to_owned);
            let mut more = Vec::new();
            for (conversation, replay) in data["conversations"].as_object().into_iter().flatten() {
                assert_ne!(
                    replay["recovered"], false,
                    "{name}: {conversation} not recovered (nothing is deleted by retention here)"
                );
                for e in replay["events"].as_array().into_iter().flatten() {
                    let (event, data) = (
                        e["type"].as_str().unwrap_or_default().to_owned(),
                        e["data"].clone(),
                    );
                    let seq = e["seq"].as_u64().expect("a number");
                    let client = &mut self.clients[i];
                    let view = client
                        .conversations
                        .entry(conversation.clone())
                        .or_default();
                    if view.offer(seq, &event, &data) {
                        client.duplicates += 1;
                    }
                }
                if replay["hasMore"] == true {
                    more.push(conversation.clone());
                }
            }
            for added in data["conversationsAdded"].as_array().into_iter().flatten() {
                let id = added["id"].as_str().expect("an id").to_owned();
                self.clients[i].conversations.entry(id.clone()).or_default();
                more.push(id);
            }
            if more.is_empty() {
                return;
            }
            wanted = more;
        }
    }

    /// Connects client `i` to a live node and resumes: sync, then every
    /// conversation's room joined from its latest number.
    async fn connect(&mut self, i: usize) {
        let node = self.live_node();
        let (name, url) = (self.clients[i].user.clone(), self.nodes.url(node));
        self.d.connect(&name, &url, &token(&name)).await;
        self.clients[i].node = Some(node);
        let known: Vec<String> = self.clients[i].conversations.keys().cloned().collect();
        self.sync(i, known).await;
        let all: Vec<String> = self.clients[i].conversations.keys().cloned().collect();
        for conversation in all {
            self.join(i, &conversation).await;
        }
        self.absorb().await;
    }

    async fn join(&mut self, i: usize, conversation: &str) {
        let name = self.clients[i].user.clone();
        let latest = self.clients[i]
            .conversations
            .get(conversation)
            .map_or(0, |v| v.latest);
        let ack = self
            .d
            .emit(
                &name,
                "join-conversation",
                json!({"conversationId": conversation, "afterSeq": latest}),
            )
            .await;
        if ack["ok"] == true && ack["data"]["hasMore"] == true {
            self.absorb().await;
            self.sync(i, vec![conversation.to_owned()]).await;
        }
    }

    /// Gaps that outlived a step are asked for.
    async fn fill_gaps(&mut self) {
        for i in 0..self.clients.len() {
            if self.clients[i].node.is_none() {
                continue;
            }
            let gaps: Vec<String> = self.clients[i]
                .conversations
                .iter()
                .filter(|(_, v)| !v.pending.is_empty())
                .map(|(c, _)| c.clone())
                .collect();
            if !gaps.is_empty() {
                self.sync(i, gaps).await;
            }
        }
    }

    fn connected(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|i| self.clients[*i].node.is_some())
            .collect()
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.random_range(0..items.len())].clone())
    }

    fn conversations_of(&self, user: &str) -> Vec<String> {
        let mut mine: Vec<String> = self
            .truth
            .conversations
            .iter()
            .filter(|(_, p)| p.iter().any(|u| u == user))
            .map(|(c, _)| c.clone())
            .collect();
        mine.sort();
        mine
    }

    async fn step(&mut self, n: usize) {
        let roll = self.rng.random_range(0..100);
        let connected = self.connected();
        let disconnected: Vec<usize> = (0..self.clients.len())
            .filter(|i| !connected.contains(i))
            .collect();
        match roll {
            0..=34 => {
                let Some(i) = self.pick(&connected) else {
                    return;
                };
                let user = self.clients[i].user.clone();
                let theirs = self.conversations_of(&user);
                let Some(c) = self.pick(&theirs) else { return };
                let content = format!("m{n} from {user}");
                let ack = self
                    .d
                    .emit(&user, "send-message", json!({"conversationId": c, "content": content, "clientMessageId": format!("c{n}")}))
                    .await;
                if ack["ok"] == true {
                    let id = ack["data"]["id"].as_str().expect("an id").to_owned();
                    self.truth.sent.insert(id, (c.clone(), user.clone()));
                }
                self.note(format!("{n}: {user} sends in {c}: {}", ack["ok"]));
            }
            35..=44 => {
                let Some(i) = self.pick(&connected) else {
                    return;
                };
                let user = self.clients[i].user.clone();
                let mine: Vec<String> = self
                    .truth
                    .sent
                    .iter()
                    .filter(|(id, (_, sender))| {
                        *sender == user && !self.truth.deleted.contains(*id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                let mut mine = mine;
                mine.sort();
                let Some(id) = self.pick(&mine) else { return };
                let node = self.live_node();
                let url = format!("{}/api/v1/messages/{id}", self.nodes.url(node));
                let (status, body) = self.d.http("DELETE", &url, &token(&user), None).await;
                assert_eq!(status, 204, "{user} deletes {id}: {body}");
                self.truth.deleted.insert(id.clone());
                self.note(format!("{n}: {user} deletes {id}"));
            }
            45..=59 => {
                let Some(i) = self.pick(&connected) else {
                    return;
                };
                let user = self.clients[i].user.clone();
                let theirs = self.conversations_of(&user);
                let Some(c) = self.pick(&theirs) else { return };
                let ack = self
                    .d
                    .emit(
                        &user,
                        "mark-conversation-as-read",
                        json!({"conversationId": c}),
                    )
                    .await;
                if ack["ok"] == true
                    && let Some(m) = ack["data"]["messageId"].as_str()
                {
                    self.truth
                        .reads
                        .entry(c.clone())
                        .or_default()
                        .insert(user.clone(), m.to_owned());
                }
                self.note(format!("{n}: {user} reads {c}: {}", ack["ok"]));
            }
            60..=67 => {
                let everyone: Vec<usize> = (0..self.clients.len()).collect();
                let Some(i) = self.pick(&everyone) else {
                    return;
                };
                let creator = self.clients[i].user.clone();
                let users: Vec<String> = self.clients.iter().map(|c| c.user.clone()).collect();
                let mut others = Vec::new();
                for u in users {
                    if u != creator && self.rng.random_bool(0.5) {
                        others.push(u);
                    }
                }
                let Some(first) = others.first().cloned() else {
                    return;
                };
                let others = if others.len() > 2 {
                    others
                } else {
                    vec![first]
                };
                let node = self.live_node();
                let url = format!("{}/api/v1/conversations", self.nodes.url(node));
                let (status, body) = self
                    .d
                    .http(
                        "POST",
                        &url,
                        &token(&creator),
                        Some(json!({"participantIds": others, "title": format!("t{n}")})),
                    )
                    .await;
                assert!(status == 201 || status == 200, "{body}");
                let id = body["id"].as_str().expect("an id").to_owned();
                let mut participants: Vec<String> = body["participantIds"]
                    .as_array()
                    .expect("participants")
                    .iter()
                    .map(|p| p.as_str().unwrap_or_default().to_owned())
                    .collect();
                participants.sort();
                self.truth
                    .conversations
                    .insert(id.clone(), participants.clone());
                self.note(format!("{n}: {creator} creates {id} with {participants:?}"));
                // Participants connected now join its room, as an app would.
                for j in 0..self.clients.len() {
                    if self.clients[j].node.is_some()
                        && participants.contains(&self.clients[j].user)
                    {
                        self.clients[j].conversations.entry(id.clone()).or_default();
                        self.join(j, &id).await;
                    }
                }
            }
            68..=75 => {
                let Some(i) = self.pick(&connected) else {
                    return;
                };
                let user = self.clients[i].user.clone();
                if self.rng.random_bool(0.5) {
                    self.d.close(&user).await;
                    self.note(format!("{n}: {user} closes its socket"));
                } else {
                    self.d.call(json!({"op": "drop", "name": user})).await;
                    self.note(format!("{n}: {user}'s connection drops"));
                }
                self.clients[i].node = None;
            }
            76..=87 => {
                let Some(i) = self.pick(&disconnected) else {
                    return;
                };
                let user = self.clients[i].user.clone();
                self.connect(i).await;
                self.note(format!("{n}: {user} reconnects"));
            }
            88..=93 => {
                let live = self.nodes.live();
                let Some(node) = self.pick(&live) else { return };
                if let Some(process) = self.nodes.running[node].take() {
                    process.kill().await;
                }
                for c in &mut self.clients {
                    if c.node == Some(node) {
                        c.node = None;
                    }
                }
                for c in self
                    .clients
                    .iter()
                    .filter(|c| c.node.is_none())
                    .map(|c| c.user.clone())
                    .collect::<Vec<_>>()
                {
                    self.d.close(&c).await;
                }
                self.note(format!("{n}: node {node} SIGKILLed"));
                self.nodes.running[node] = Some(NodeProcess::start(&self.nodes.env[node]).await);
                self.note(format!("{n}: node {node} started again"));
            }
            _ => {
                // Every node restarts, one after the other (a rolling deploy).
                for node in 0..self.nodes.running.len() {
                    if let Some(process) = self.nodes.running[node].take() {
                        process.terminate().await;
                    }
                    for c in &mut self.clients {
                        if c.node == Some(node) {
                            c.node = None;
                        }
                    }
                    self.nodes.running[node] =
                        Some(NodeProcess::start(&self.nodes.env[node]).await);
                }
                for c in self
                    .clients
                    .iter()
                    .filter(|c| c.node.is_none())
                    .map(|c| c.user.clone())
                    .collect::<Vec<_>>()
                {
                    self.d.close(&c).await;
                }
                self.note(format!("{n}: every node restarted in turn"));
            }
        }
        self.absorb().await;
        self.fill_gaps().await;
    }

    /// Everyone connected and caught up with the store's latest numbers.
    async fn settle(&mut self) {
        for i in 0..self.clients.len() {
            if self.clients[i].node.is_none() {
                self.connect(i).await;
            }
        }
        let deadline = tokio::time::Instant::now() + EVENT;
        loop {
            self.absorb().await;
            for i in 0..self.clients.len() {
                let mine = self.conversations_of(&self.clients[i].user.clone());
                self.sync(i, mine).await;
            }
            let behind = self
                .clients
                .iter()
                .any(|c| c.conversations.values().any(|v| !v.pending.is_empty()));
            if !behind {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "views never settle");
        }
    }

    /// Every view equals the store's, and each other's.
    async fn check(&mut self) {
        let url = self.nodes.url(self.nodes.live()[0]);
        for i in 0..self.clients.len() {
            let user = self.clients[i].user.clone();
            let mine = self.conversations_of(&user);
            let mut known: Vec<String> = self.clients[i].conversations.keys().cloned().collect();
            known.sort();
            assert_eq!(known, mine, "{user}'s conversations");
            let (_, listed) = self
                .d
                .http(
                    "GET",
                    &format!("{url}/api/v1/conversations?limit=100"),
                    &token(&user),
                    None,
                )
                .await;
            let mut listed: Vec<String> = listed["conversations"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            listed.sort();
            assert_eq!(listed, mine, "{user}'s conversation list");
            let mut unread_from_view = 0u64;
            for c in &mine {
                let view = self.clients[i].conversations[c].clone();
                let (_, history) = self
                    .d
                    .http(
                        "GET",
                        &format!("{url}/api/v1/conversations/{c}/messages?limit=100"),
                        &token(&user),
                        None,
                    )
                    .await;
                let stored: Vec<(String, String)> = history["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .map(|m| {
                        (
                            m["id"].as_str().unwrap_or_default().to_owned(),
                            m["content"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let mut stored = stored;
                stored.sort();
                assert_eq!(view.visible(), stored, "{user}'s messages of {c}");
                for (id, (_, deleted)) in &view.messages {
                    assert_eq!(
                        *deleted,
                        self.truth.deleted.contains(id),
                        "{user} sees {id} deleted={deleted}"
                    );
                }
                let reads = self.truth.reads.get(c).cloned().unwrap_or_default();
                assert_eq!(view.reads, reads, "{user}'s read receipts of {c}");
                // Unread: messages of others after the user's own cursor.
                let cursor = view.reads.get(&user).cloned();
                unread_from_view += view
                    .messages
                    .iter()
                    .filter(|(id, (_, deleted))| {
                        !deleted
                            && self
                                .truth
                                .sent
                                .get(*id)
                                .is_some_and(|(_, sender)| *sender != user)
                            && cursor.as_ref().is_none_or(|cur| *id > cur)
                    })
                    .count() as u64;
                // Every participant's view of a shared conversation is the same.
                for j in 0..self.clients.len() {
                    if let Some(other) = self.clients[j].conversations.get(c) {
                        assert_eq!(
                            other.latest, view.latest,
                            "{user} and {} on {c}'s number",
                            self.clients[j].user
                        );
                        assert_eq!(
                            other.messages, view.messages,
                            "{user} and {} on {c}",
                            self.clients[j].user
                        );
                        assert_eq!(
                            other.reads, view.reads,
                            "{user} and {} on {c}'s reads",
                            self.clients[j].user
                        );
                    }
                }
            }
            let (_, unread) = self
                .d
                .http("GET", &format!("{url}/api/v1/unread"), &token(&user), None)
                .await;
            assert_eq!(
                unread["totalUnread"].as_u64(),
                Some(unread_from_view),
                "{user}'s unread total"
            );
        }
    }
}

async fn run(variant: Variant) {
    common::init_logs();
    let seed: u64 = std::env::var("PARLOIR_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ops: usize = std::env::var("PARLOIR_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    println!("model seed {seed} ({ops} steps); replay with PARLOIR_MODEL_SEED={seed}");
    let data = tempfile::tempdir().expect("a data directory");
    let database = PostgresDatabase::create().await;
    let base = |id: &str| -> Vec<(&'static str, String)> {
        vec![
            ("JWT_SECRET", SECRET.to_owned()),
            ("PARLOIR_NODE_ID", id.to_owned()),
            ("PARLOIR_DRAIN_GRACE_SECS", "1".to_owned()),
            ("PARLOIR_SEND_RATE_PER_SEC", "1000".to_owned()),
            ("PARLOIR_SEND_BURST", "1000".to_owned()),
        ]
    };
    let (env, _redis) = match variant {
        Variant::Sqlite => {
            let mut e = base("solo");
            e.push(("PARLOIR_DATA_DIR", data.path().display().to_string()));
            (vec![e], None)
        }
        Variant::Postgres => {
            let mut e = base("solo");
            e.push(("DATABASE_URL", database.url().to_owned()));
            (vec![e], None)
        }
        Variant::TwoNodes(kind) => {
            let redis = TestRedis::start(kind).await;
            let prefix = format!("model-{}:", uuid::Uuid::new_v4().simple());
            let env = ["node-a", "node-b"]
                .iter()
                .map(|id| {
                    let mut e = base(id);
                    e.extend([
                        ("DATABASE_URL", database.url().to_owned()),
                        ("REDIS_URL", redis.url()),
                        ("PARLOIR_REDIS_PREFIX", prefix.clone()),
                        ("PARLOIR_HEARTBEAT_MS", "200".to_owned()),
                        ("PARLOIR_NODE_TTL_MS", "1000".to_owned()),
                    ]);
                    e
                })
                .collect();
            (env, Some(redis))
        }
    };
    let nodes = Nodes::start(env).await;
    let clients = (0..USERS)
        .map(|i| Client {
            user: common::unique_user(&format!("u{i}")),
            node: None,
            conversations: HashMap::new(),
            since: None,
            duplicates: 0,
        })
        .collect();
    let mut run = Run {
        d: Driver::start().await,
        nodes,
        clients,
        truth: Truth::default(),
        rng: StdRng::seed_from_u64(seed),
        log: Vec::new(),
    };
    for i in 0..USERS {
        run.connect(i).await;
    }
    // Two conversations to begin with: a pair and a group of everyone.
    let users: Vec<String> = run.clients.iter().map(|c| c.user.clone()).collect();
    for (creator, others) in [
        (&users[0], vec![users[1].clone()]),
        (&users[1], users[2..].to_vec()),
    ] {
        let url = format!("{}/api/v1/conversations", run.nodes.url(0));
        let (_, body) = run
            .d
            .http(
                "POST",
                &url,
                &token(creator),
                Some(json!({"participantIds": others})),
            )
            .await;
        let id = body["id"].as_str().expect("an id").to_owned();
        let mut participants: Vec<String> = others.clone();
        participants.push(creator.clone());
        participants.sort();
        run.truth
            .conversations
            .insert(id.clone(), participants.clone());
        for j in 0..USERS {
            if participants.contains(&run.clients[j].user) {
                run.clients[j].conversations.entry(id.clone()).or_default();
                run.join(j, &id).await;
            }
        }
    }
    let outcome = tokio::time::timeout(Duration::from_secs(300), async {
        for n in 0..ops {
            run.step(n).await;
        }
        run.settle().await;
        run.check().await;
    });
    match outcome.await {
        Ok(()) => {
            let duplicates: u64 = run.clients.iter().map(|c| c.duplicates).sum();
            println!(
                "model seed {seed}: views equal; {duplicates} duplicate deliveries dropped by number"
            );
        }
        Err(_) => panic!(
            "model seed {seed} did not finish; steps:\n{}",
            run.log.join("\n")
        ),
    }
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_the_store_after_any_schedule_on_sqlite() {
    run(Variant::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_the_store_after_any_schedule_on_postgres() {
    run(Variant::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_the_store_after_any_schedule_on_two_nodes_over_redis() {
    run(Variant::TwoNodes(RedisKind::Single)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_the_store_after_any_schedule_on_two_nodes_over_a_redis_cluster() {
    run(Variant::TwoNodes(RedisKind::Cluster)).await;
}
