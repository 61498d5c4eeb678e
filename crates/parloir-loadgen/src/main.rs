//! `parloir-loadgen`: an open-loop load generator for parloir nodes.
//!
//! It speaks Engine.IO v4 / Socket.IO v4 over websocket directly (no
//! browser client in the loop), signs its own HS256 tokens, creates
//! conversations through the HTTP API, and runs one scenario:
//!
//! - `pairs`: P two-person conversations, D devices per user, an aggregate
//!   open-loop `send-message` rate R for S seconds. Sends follow a timetable
//!   (message k is due at t0 + k/R) and every latency is measured from the
//!   scheduled time, so a stalled server cannot hide its queueing.
//! - `group`: one conversation of M members, a few senders, fan-out.
//! - `idle`: N authenticated idle sockets opened at a ramp and held; the
//!   node's RSS before and after gives KB per socket.
//! - `reconnect`: a node SIGKILLed under traffic; its sockets resume on the
//!   survivor from the conversation log (`reconnect.rs`).
//!
//! Loopback targets only; every run is bounded in time and count. The output
//! is a readable summary followed by one JSON line (the last line).

// The workspace bans std's Instant and thread sleeps for the node, whose
// tests run on paused time; a load generator measures real time.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod reconnect;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parloir::auth::{Role, mint_hs256};
use parloir::domain::UserId;
use parloir::protocol::{NAMESPACE as NS, ev};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Deliveries and acks still missing this long after the last scheduled
/// send are reported as lost.
const GRACE: Duration = Duration::from_secs(5);
/// Source addresses used per 127.0.0.x when sockets are spread (the
/// ephemeral port range allows ~28k per source address).
const SOCKETS_PER_SOURCE: usize = 20_000;
const MAX_SOCKETS: usize = 60_000;
const MAX_DURATION_SECS: f64 = 3600.0;
const MAX_MESSAGES: u64 = 5_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "parloir-loadgen",
    about = "Open-loop Socket.IO load generator for parloir (loopback only)"
)]
struct Cli {
    /// Node base URL (http://127.0.0.1:3000); repeat to spread users
    /// round-robin over several nodes. Loopback addresses only.
    #[arg(long = "url", global = true, default_value = "http://127.0.0.1:3000")]
    urls: Vec<String>,
    /// HS256 secret the nodes verify tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    secret: Option<String>,
    /// Node process ids: their CPU time and RSS are reported (required by `idle`).
    #[arg(long = "pid", global = true)]
    pids: Vec<u32>,
    /// Generator worker threads.
    #[arg(long, default_value_t = 2, global = true)]
    threads: usize,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 128, global = true)]
    connect_concurrency: usize,
    /// A label copied into the JSON line (e.g. "pg", "sqlite", "cluster").
    #[arg(long, default_value = "", global = true)]
    label: String,
    /// Node base URL whose Redis adapter counters (`/metrics`) are read just
    /// before the schedule starts and after it drains; repeat for every node
    /// to report (it need not be a `--url` target).
    #[arg(long = "scrape", global = true)]
    scrape: Vec<String>,
    /// A Redis (`host:port`, loopback) whose command counts and CPU time are
    /// read before and after the schedule: Redis commands and Redis CPU per
    /// message.
    #[arg(long, global = true)]
    redis: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Two-person conversations at an open-loop aggregate send rate.
    Pairs(PairsArgs),
    /// One conversation of M members, a few senders: broadcast fan-out.
    Group(GroupArgs),
    /// N authenticated idle sockets: node RSS per socket.
    Idle(IdleArgs),
    /// A node SIGKILLed under traffic; its clients resume on the survivor.
    Reconnect(reconnect::ReconnectArgs),
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Aggregate send-message rate (messages per second, open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Extra bytes of content per message (beyond the sequence number).
    #[arg(long, default_value_t = 0)]
    size: usize,
}

#[derive(Args, Debug)]
struct PairsArgs {
    /// Two-person conversations.
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Devices (sockets) per user.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Only the first participant of each pair sends (with two --url: all
    /// senders on the first node, all receivers on the second).
    #[arg(long)]
    one_way: bool,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct GroupArgs {
    /// Members of the one conversation.
    #[arg(long, default_value_t = 500)]
    members: usize,
    /// Members that send (the first ones).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Devices (sockets) per member.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args, Debug)]
struct IdleArgs {
    /// Sockets to open.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Sockets opened per second.
    #[arg(long, default_value_t = 2000.0)]
    ramp: f64,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Open each websocket with the headers a browser adds to its upgrade
    /// request (user agent, origin, languages, extensions, a 512-byte
    /// cookie), not only the protocol's own.
    #[arg(long)]
    browser_headers: bool,
}

/// What Chromium sends with a websocket upgrade besides Host, Upgrade,
/// Connection and the Sec-WebSocket key and version.
fn browser_headers() -> Result<HeaderMap> {
    let cookie = format!("session={}", "c".repeat(504));
    let user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("origin", "https://app.parloir.example"),
        ("user-agent", user_agent),
        ("pragma", "no-cache"),
        ("cache-control", "no-cache"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"),
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
        ("cookie", &cookie),
    ] {
        headers.insert(name, value.parse()?);
    }
    Ok(headers)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = cli.threads.clamp(1, 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let targets = cli
        .urls
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>>>()?;
    let secret = cli
        .secret
        .clone()
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| anyhow!("--secret (or JWT_SECRET) is required"))?;
    let scrape = cli
        .scrape
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>>>()?;
    let redis = cli.redis.as_deref().map(Target::parse).transpose()?;
    let ctx = Ctx {
        targets,
        scrape,
        redis,
        secret,
        pids: cli.pids.clone(),
        connect_concurrency: cli.connect_concurrency.clamp(1, 4096),
        label: cli.label.clone(),
        run_id: format!(
            "lg{}x{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() % 100_000_000)
                .unwrap_or(0)
        ),
    };
    match cli.scenario {
        Scenario::Pairs(a) => run_load(&ctx, Plan::pairs(&a)?, &a.load).await,
        Scenario::Group(a) => run_load(&ctx, Plan::group(&a)?, &a.load).await,
        Scenario::Idle(a) => run_idle(&ctx, &a).await,
        Scenario::Reconnect(a) => reconnect::run_reconnect(&ctx, &a).await,
    }
}

struct Ctx {
    targets: Vec<Target>,
    /// Nodes whose adapter counters are reported (`--scrape`).
    scrape: Vec<Target>,
    /// The Redis whose commands and CPU are reported (`--redis`).
    redis: Option<Target>,
    secret: SecretString,
    pids: Vec<u32>,
    connect_concurrency: usize,
    label: String,
    run_id: String,
}

// --- targets -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
}

impl Target {
    /// Accepts `http://`, `ws://` or a bare `host:port`; the host must be a
    /// loopback address (or `localhost`).
    fn parse(raw: &str) -> Result<Self> {
        let rest = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("ws://"))
            .unwrap_or(raw);
        if rest.contains("://") {
            bail!("{raw}: only http:// or ws:// loopback URLs are accepted");
        }
        let hostport = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("{raw}: bad port"))?,
            ),
            None => (hostport, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .with_context(|| format!("{raw}: the host must be a loopback IP address"))?
        };
        if !ip.is_loopback() {
            bail!("{raw}: refusing a non-loopback target ({ip})");
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port),
        })
    }
}

// --- tokens ----------------------------------------------------------------------------------

/// A one-hour token for `user`, signed as the server's own dev sign-in signs them.
fn mint(secret: &SecretString, user: &str, role: Role) -> Result<String> {
    let id = UserId::parse("user", user).map_err(|e| anyhow!("generated user id {user:?}: {e}"))?;
    mint_hs256(
        secret,
        &id,
        Some(role),
        Some(user),
        None,
        chrono::Duration::hours(1),
    )
    .context("cannot sign a token")
}

// --- a minimal HTTP/1.1 client (keep-alive, loopback) ----------------------------------------

struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// POSTs JSON; returns the status and the body.
    async fn post_json(&mut self, path: &str, token: &str, body: &str) -> Result<(u16, String)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.request(&head, body).await
    }

    /// GETs `path`; returns the status and the body.
    async fn get(&mut self, path: &str) -> Result<(u16, String)> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.request(&head, "").await
    }

    /// Sends a request; retries once on a fresh connection when a kept-alive
    /// one turns out to be closed.
    async fn request(&mut self, head: &str, body: &str) -> Result<(u16, String)> {
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            match self.try_request(head, body).await {
                Ok(r) => return Ok(r),
                Err(e) if reused && attempt == 0 => {
                    self.conn = None;
                    let _ = e;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
        Err(anyhow!(
            "{}: no answer",
            head.lines().next().unwrap_or_default()
        ))
    }

    async fn try_request(&mut self, head: &str, body: &str) -> Result<(u16, String)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect {}", self.addr))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| anyhow!("no HTTP connection"))?;
        let stream = conn.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                bail!("connection closed in headers");
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.parse().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| anyhow!("bad chunk size {line:?}"))?;
                let mut chunk = vec![0; size + 2];
                conn.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body).await?;
        } else {
            conn.read_to_end(&mut body).await?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The Redis adapter counters of one node: (received, published).
async fn adapter_counters(target: &Target) -> Result<(u64, u64)> {
    let (status, text) = Http::new(target.addr).get("/metrics").await?;
    if status != 200 {
        bail!("GET {}/metrics: HTTP {status}", target.addr);
    }
    let counter = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Ok((
        counter("parloir_adapter_messages_received_total"),
        counter("parloir_adapter_messages_published_total"),
    ))
}

/// What a Redis server reports of itself: calls per command, CPU seconds.
#[derive(Debug, Default, Clone)]
struct RedisUsage {
    calls: BTreeMap<String, u64>,
    cpu_secs: f64,
}

impl RedisUsage {
    async fn read(target: Option<&Target>) -> Result<Option<Self>> {
        let Some(target) = target else {
            return Ok(None);
        };
        let mut conn = BufReader::new(
            TcpStream::connect(target.addr)
                .await
                .with_context(|| format!("connect to Redis at {}", target.addr))?,
        );
        conn.get_mut()
            .write_all(b"*3\r\n$4\r\nINFO\r\n$3\r\ncpu\r\n$12\r\ncommandstats\r\n")
            .await?;
        let mut head = String::new();
        conn.read_line(&mut head).await?;
        let len: usize = head
            .trim()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("unexpected INFO reply {head:?}"))?;
        let mut body = vec![0; len + 2];
        conn.read_exact(&mut body).await?;
        let mut usage = Self::default();
        for line in String::from_utf8_lossy(&body).lines() {
            if let Some(rest) = line.strip_prefix("cmdstat_") {
                let (command, stats) = rest.split_once(':').unwrap_or((rest, ""));
                let calls = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                usage.calls.insert(command.to_owned(), calls);
            } else if let Some(v) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                usage.cpu_secs += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        Ok(Some(usage))
    }

    /// Calls per command and CPU seconds from `before` to `self`.
    fn since(&self, before: &Self) -> (BTreeMap<String, u64>, f64) {
        let calls = self
            .calls
            .iter()
            .map(|(c, n)| {
                (
                    c.clone(),
                    n.saturating_sub(before.calls.get(c).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        (calls, self.cpu_secs - before.cpu_secs)
    }
}

async fn all_adapter_counters(targets: &[Target]) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        out.push(adapter_counters(t).await?);
    }
    Ok(out)
}

/// Creates conversations (each `(creator, others)`) with a few concurrent
/// keep-alive connections; returns their ids in order.
async fn create_conversations(
    target: &Target,
    specs: Vec<(String, Vec<String>)>,
) -> Result<Vec<Arc<str>>> {
    let n = specs.len();
    let specs = Arc::new(specs);
    let next = Arc::new(AtomicUsize::new(0));
    let ids: Arc<Mutex<Vec<Option<Arc<str>>>>> = Arc::new(Mutex::new(vec![None; n]));
    let mut workers = Vec::new();
    for _ in 0..8.min(n.max(1)) {
        let (specs, next, ids) = (specs.clone(), next.clone(), ids.clone());
        let addr = target.addr;
        workers.push(tokio::spawn(async move {
            let mut http = Http::new(addr);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((token, others)) = specs.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let body = json!({ "participantIds": others }).to_string();
                let (status, text) = http
                    .post_json("/api/v1/conversations", token, &body)
                    .await?;
                if status != 200 && status != 201 {
                    bail!("POST /api/v1/conversations: HTTP {status}: {text}");
                }
                let v: Value = serde_json::from_str(&text).context("conversation body")?;
                let id = v["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("conversation without id: {text}"))?;
                lock(&ids)[i] = Some(Arc::from(id));
            }
        }));
    }
    for w in workers {
        w.await.context("conversation worker panicked")??;
    }
    let ids = std::mem::take(&mut *lock(&ids));
    ids.into_iter()
        .map(|o| o.ok_or_else(|| anyhow!("a conversation was not created")))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// --- the plan: who is where, who sends what ------------------------------------------------

#[derive(Debug, Clone)]
enum Plan {
    Pairs {
        pairs: usize,
        devices: usize,
        one_way: bool,
    },
    Group {
        members: usize,
        senders: usize,
        devices: usize,
    },
}

impl Plan {
    fn pairs(a: &PairsArgs) -> Result<Self> {
        if a.pairs == 0 || a.devices == 0 || a.devices > 16 {
            bail!("--pairs must be > 0 and --devices 1 to 16");
        }
        if a.pairs * 2 * a.devices > MAX_SOCKETS {
            bail!("at most {MAX_SOCKETS} sockets per run");
        }
        Ok(Plan::Pairs {
            pairs: a.pairs,
            devices: a.devices,
            one_way: a.one_way,
        })
    }

    fn group(a: &GroupArgs) -> Result<Self> {
        if a.members < 2 || a.senders == 0 || a.senders > a.members {
            bail!("--members must be >= 2 and --senders 1 to members");
        }
        if a.devices == 0 || a.devices > 16 || a.members * a.devices > MAX_SOCKETS {
            bail!("--devices 1 to 16, at most {MAX_SOCKETS} sockets");
        }
        Ok(Plan::Group {
            members: a.members,
            senders: a.senders,
            devices: a.devices,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Plan::Pairs { .. } => "pairs",
            Plan::Group { .. } => "group",
        }
    }

    fn users(&self) -> usize {
        match *self {
            Plan::Pairs { pairs, .. } => pairs * 2,
            Plan::Group { members, .. } => members,
        }
    }

    fn devices(&self) -> usize {
        match *self {
            Plan::Pairs { devices, .. } | Plan::Group { devices, .. } => devices,
        }
    }

    /// The conversation a user joins.
    fn conversation_of(&self, user: usize) -> usize {
        match self {
            Plan::Pairs { .. } => user / 2,
            Plan::Group { .. } => 0,
        }
    }

    /// Message k: (conversation, sending user, sending device).
    fn sender(&self, k: u64) -> (usize, usize, usize) {
        match *self {
            Plan::Pairs {
                pairs,
                devices,
                one_way,
            } => {
                let p = pairs as u64;
                let conv = (k % p) as usize;
                let round = k / p;
                let (side, dev) = if one_way {
                    (0, round % devices as u64)
                } else {
                    (round % 2, (round / 2) % devices as u64)
                };
                (conv, conv * 2 + side as usize, dev as usize)
            }
            Plan::Group {
                senders, devices, ..
            } => {
                let s = senders as u64;
                (0, (k % s) as usize, ((k / s) % devices as u64) as usize)
            }
        }
    }

    fn sender_user(&self, k: u64) -> usize {
        self.sender(k).1
    }

    /// Deliveries expected for one stored message (devices of the others).
    fn expected_per_message(&self) -> u64 {
        match *self {
            Plan::Pairs { devices, .. } => devices as u64,
            Plan::Group {
                members, devices, ..
            } => ((members - 1) * devices) as u64,
        }
    }

    fn describe(&self) -> Value {
        match *self {
            Plan::Pairs {
                pairs,
                devices,
                one_way,
            } => json!({"pairs": pairs, "devices": devices, "oneWay": one_way}),
            Plan::Group {
                members,
                senders,
                devices,
            } => json!({"members": members, "senders": senders, "devices": devices}),
        }
    }
}

// --- shared measurements ---------------------------------------------------------------------

struct Stats {
    plan: Plan,
    rate: f64,
    t0: OnceLock<Instant>,
    stopping: AtomicBool,
    /// Per message: counted deliveries (devices of the other participants).
    seen: Vec<AtomicU16>,
    /// Per message: 0 = no ack yet, 1 = ok, 2 = error.
    acked: Vec<AtomicU8>,
    ack_hist: Mutex<Histogram<u64>>,
    del_hist: Mutex<Histogram<u64>>,
    acks_ok: AtomicU64,
    acks_err: AtomicU64,
    deliveries: AtomicU64,
    duplicates: AtomicU64,
    echoes: AtomicU64,
    other_events: AtomicU64,
    last_ack_ns: AtomicU64,
    last_delivery_ns: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    joined: AtomicUsize,
}

impl Stats {
    fn new(plan: Plan, rate: f64, total: u64) -> Result<Self> {
        let hist = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
        Ok(Self {
            plan,
            rate,
            t0: OnceLock::new(),
            stopping: AtomicBool::new(false),
            seen: (0..total).map(|_| AtomicU16::new(0)).collect(),
            acked: (0..total).map(|_| AtomicU8::new(0)).collect(),
            ack_hist: Mutex::new(hist()?),
            del_hist: Mutex::new(hist()?),
            acks_ok: AtomicU64::new(0),
            acks_err: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            echoes: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            joined: AtomicUsize::new(0),
        })
    }

    fn error(&self, code: &str) {
        *lock(&self.errors).entry(code.to_owned()).or_insert(0) += 1;
    }

    /// Nanoseconds from t0 to message k's scheduled send time.
    fn scheduled_ns(&self, k: u64) -> u64 {
        (k as f64 * 1e9 / self.rate) as u64
    }

    /// (nanoseconds since t0, latency in µs from k's scheduled time).
    fn latency(&self, k: u64) -> Option<(u64, u64)> {
        let t0 = self.t0.get()?;
        let now = t0.elapsed().as_nanos() as u64;
        Some((now, now.saturating_sub(self.scheduled_ns(k)) / 1000))
    }

    fn on_ack(&self, k: u64, ok: Result<(), String>) {
        let Some(slot) = self.acked.get(k as usize) else {
            return;
        };
        let Some((now, us)) = self.latency(k) else {
            return;
        };
        match ok {
            Ok(()) => {
                slot.store(1, Ordering::Relaxed);
                self.acks_ok.fetch_add(1, Ordering::Relaxed);
                lock(&self.ack_hist).saturating_record(us.max(1));
            }
            Err(code) => {
                slot.store(2, Ordering::Relaxed);
                self.acks_err.fetch_add(1, Ordering::Relaxed);
                self.error(&code);
            }
        }
        self.last_ack_ns.fetch_max(now, Ordering::Relaxed);
    }

    fn on_delivery(&self, k: u64, receiver_user: usize) {
        let Some(slot) = self.seen.get(k as usize) else {
            self.other_events.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.plan.sender_user(k) == receiver_user {
            self.echoes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some((now, us)) = self.latency(k) else {
            return;
        };
        let before = slot.fetch_add(1, Ordering::Relaxed);
        if u64::from(before) >= self.plan.expected_per_message() {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        lock(&self.del_hist).saturating_record(us.max(1));
        self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }
}

// --- one socket ------------------------------------------------------------------------------

enum Cmd {
    Join(Arc<str>),
    Send { k: u64, conv: Arc<str> },
}

enum Pending {
    Join,
    Send(u64),
}

struct ConnSpec {
    user: usize,
    token: String,
    target: SocketAddr,
    source: Option<Ipv4Addr>,
    config: WebSocketConfig,
    pad: Arc<str>,
    /// Headers added to the websocket upgrade request.
    headers: Arc<HeaderMap>,
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens the websocket and completes the Socket.IO namespace CONNECT.
async fn open(spec: &ConnSpec) -> Result<Ws> {
    let socket = match spec.target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(src) = spec.source {
        socket
            .bind(SocketAddr::new(IpAddr::V4(src), 0))
            .with_context(|| format!("bind {src}"))?;
    }
    let stream = socket.connect(spec.target).await.context("connect")?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", spec.target);
    let mut request = url.into_client_request()?;
    request.headers_mut().extend(spec.headers.as_ref().clone());
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(spec.config))
            .await
            .context("websocket handshake")?;
    // Engine.IO OPEN, then our namespace CONNECT with the token.
    let mut sent_connect = false;
    loop {
        let msg = ws
            .next()
            .await
            .ok_or_else(|| anyhow!("closed during the handshake"))?
            .context("read during the handshake")?;
        let Message::Text(t) = msg else { continue };
        let t = t.as_str();
        if t.starts_with('0') && !sent_connect {
            let frame = format!("40{NS},{}", json!({ "token": spec.token }));
            ws.send(Message::text(frame)).await?;
            sent_connect = true;
        } else if t == "2" {
            ws.send(Message::text("3")).await?;
        } else if t.starts_with(&format!("40{NS},")) {
            return Ok(ws);
        } else if let Some(err) = t.strip_prefix(&format!("44{NS},")) {
            bail!("connect_error {err}");
        }
    }
}

/// Opens the socket within the handshake deadline (20 s); the error says why,
/// as a socket's `ready` channel reports it.
async fn open_in_time(spec: &ConnSpec) -> Result<Ws, String> {
    match tokio::time::timeout(Duration::from_secs(20), open(spec)).await {
        Ok(Ok(ws)) => Ok(ws),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("handshake timeout".into()),
    }
}

/// Runs one socket: executes commands, answers pings, parses acks and
/// `new-message` events into `stats`.
async fn run_conn(
    spec: ConnSpec,
    stats: Option<Arc<Stats>>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    ready: oneshot::Sender<Result<(), String>>,
    disconnects: Arc<AtomicUsize>,
) {
    let mut ws = match open_in_time(&spec).await {
        Ok(ws) => ws,
        Err(why) => {
            let _ = ready.send(Err(why));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_ack: u64 = 0;
    let mut frame = String::with_capacity(128);
    let ack_prefix = format!("43{NS},");
    let event_prefix = format!("42{NS},");
    let new_message_prefix = format!("[\"{}\",", ev::NEW_MESSAGE);
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(mut cmd) = cmd else { break };
                // Feed every queued command, then flush once.
                loop {
                    frame.clear();
                    let id = next_ack;
                    next_ack += 1;
                    match &cmd {
                        Cmd::Join(conv) => {
                            pending.insert(id, Pending::Join);
                            let _ = write!(frame, "42{NS},{id}[\"{}\",{{\"conversationId\":\"{conv}\",\"limit\":1}}]", ev::JOIN_CONVERSATION);
                        }
                        Cmd::Send { k, conv } => {
                            pending.insert(id, Pending::Send(*k));
                            let _ = write!(frame, "42{NS},{id}[\"{}\",{{\"conversationId\":\"{conv}\",\"content\":\"{k}{}\"}}]", ev::SEND_MESSAGE, spec.pad);
                        }
                    }
                    if ws.feed(Message::text(frame.clone())).await.is_err() {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(c) => cmd = c,
                        Err(_) => break,
                    }
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(t) = msg else {
                    if let Message::Close(_) = msg { break }
                    continue;
                };
                let t = t.as_str();
                if t == "2" {
                    if ws.send(Message::text("3")).await.is_err() {
                        break;
                    }
                } else if let Some(rest) = t.strip_prefix(event_prefix.as_str()) {
                    if let Some(st) = &stats {
                        if let Some(body) = rest.strip_prefix(new_message_prefix.as_str()) {
                            match content_seq(body) {
                                Some(k) => st.on_delivery(k, spec.user),
                                None => { st.other_events.fetch_add(1, Ordering::Relaxed); }
                            }
                        } else {
                            st.other_events.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if let Some(rest) = t.strip_prefix(ack_prefix.as_str()) {
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    let Ok(id) = rest[..digits].parse::<u64>() else { continue };
                    let body = &rest[digits..];
                    match (pending.remove(&id), &stats) {
                        (Some(Pending::Join), Some(st)) => {
                            if ack_ok(body).is_err() {
                                st.error("JOIN_FAILED");
                            }
                            st.joined.fetch_add(1, Ordering::Relaxed);
                        }
                        (Some(Pending::Send(k)), Some(st)) => st.on_ack(k, ack_ok(body)),
                        _ => {}
                    }
                } else if t.starts_with(&format!("41{NS}")) || t.starts_with('1') {
                    break;
                }
            }
        }
    }
    let stopping = stats
        .as_ref()
        .is_some_and(|s| s.stopping.load(Ordering::Relaxed));
    if !stopping && !rx.is_closed() {
        disconnects.fetch_add(1, Ordering::Relaxed);
        if let Some(st) = &stats {
            st.error("DISCONNECTED");
        }
    }
    let _ = ws.close(None).await;
}

/// The sequence number at the start of a `new-message`'s content.
fn content_seq(body: &str) -> Option<u64> {
    let i = body.find("\"content\":\"")? + "\"content\":\"".len();
    let digits = body[i..].bytes().take_while(u8::is_ascii_digit).count();
    body[i..i + digits].parse().ok()
}

/// `[{"ok":true,...}]` → Ok; otherwise the error code.
fn ack_ok(body: &str) -> Result<(), String> {
    if body.starts_with("[{\"ok\":true") {
        return Ok(());
    }
    let v: Value = serde_json::from_str(body).map_err(|_| "BAD_ACK".to_owned())?;
    if v[0]["ok"] == Value::Bool(true) {
        return Ok(());
    }
    Err(v[0]["error"]["code"]
        .as_str()
        .unwrap_or("BAD_ACK")
        .to_owned())
}

// --- process figures -------------------------------------------------------------------------

/// (user + system) CPU seconds of this process.
fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn own_rss_kb() -> Option<u64> {
    procfs::process::Process::myself()
        .ok()?
        .status()
        .ok()?
        .vmrss
}

fn rss_kb_of(pid: u32) -> Option<u64> {
    procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .status()
        .ok()?
        .vmrss
}

/// (user + system) CPU seconds of another process.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .stat()
        .ok()?;
    let hz = procfs::ticks_per_second() as f64;
    Some((stat.utime + stat.stime) as f64 / if hz > 0.0 { hz } else { 100.0 })
}

struct Usage {
    at: Instant,
    own: f64,
    nodes: Vec<Option<f64>>,
}

impl Usage {
    fn now(pids: &[u32]) -> Self {
        Self {
            at: Instant::now(),
            own: own_cpu_secs(),
            nodes: pids.iter().map(|p| proc_cpu_secs(*p)).collect(),
        }
    }

    /// (wall s, generator CPU s, per-node CPU s)
    fn since(&self, before: &Usage) -> (f64, f64, Vec<Option<f64>>) {
        (
            self.at.duration_since(before.at).as_secs_f64(),
            self.own - before.own,
            self.nodes
                .iter()
                .zip(&before.nodes)
                .map(|(a, b)| Some((*a)? - (*b)?))
                .collect(),
        )
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit.
fn raise_nofile() -> u64 {
    // SAFETY: get/setrlimit only read/write the struct we pass.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        rl.rlim_cur
    }
}

fn source_for(i: usize, total: usize) -> Option<Ipv4Addr> {
    (total > SOCKETS_PER_SOURCE)
        .then(|| Ipv4Addr::new(127, 0, 0, 2 + (i / SOCKETS_PER_SOURCE) as u8))
}

fn ws_config(read_buf: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buf)
        .write_buffer_size(0)
        .max_write_buffer_size(4 << 20)
}

struct Opened {
    senders: Vec<mpsc::UnboundedSender<Cmd>>,
    failed: BTreeMap<String, usize>,
    disconnects: Arc<AtomicUsize>,
    /// Each successful handshake's time, in µs, from when it was due (open
    /// loop: waiting for a free handshake slot counts) to the namespace's
    /// CONNECT answer.
    handshake_us: Histogram<u64>,
}

/// Opens one socket per spec, with at most `concurrency` handshakes in flight, at most `ramp`/s.
async fn open_all(
    specs: Vec<ConnSpec>,
    stats: Option<Arc<Stats>>,
    concurrency: usize,
    ramp: Option<f64>,
) -> Opened {
    let sem = Arc::new(Semaphore::new(concurrency));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(specs.len());
    let mut waits = Vec::with_capacity(specs.len());
    let started = Instant::now();
    for (i, spec) in specs.into_iter().enumerate() {
        let due = match ramp {
            Some(r) => {
                let due = started + Duration::from_secs_f64(i as f64 / r);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (ftx, frx) = oneshot::channel();
        senders.push(tx);
        let sem = sem.clone();
        let stats = stats.clone();
        let disconnects = disconnects.clone();
        tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                let _ = ftx.send(Err("semaphore closed".into()));
                return;
            };
            let (itx, irx) = oneshot::channel();
            tokio::spawn(run_conn(spec, stats, rx, itx, disconnects));
            let r = irx.await.unwrap_or_else(|_| Err("task ended".into()));
            drop(permit);
            let took = due.elapsed();
            let _ = ftx.send(r.map(|()| took));
        });
        waits.push(frx);
    }
    let mut failed = BTreeMap::new();
    let mut handshake_us = Histogram::<u64>::new(3).expect("3 significant figures is valid");
    for w in waits {
        match w.await.unwrap_or_else(|_| Err("task ended".into())) {
            Ok(took) => {
                let _ = handshake_us.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            Err(e) => {
                let key = e.chars().take(80).collect::<String>();
                *failed.entry(key).or_insert(0) += 1;
            }
        }
    }
    Opened {
        senders,
        failed,
        disconnects,
        handshake_us,
    }
}

// --- pairs / group ---------------------------------------------------------------------------

async fn run_load(ctx: &Ctx, plan: Plan, load: &LoadArgs) -> Result<()> {
    if !(load.rate > 0.0 && load.rate <= 500_000.0) {
        bail!("--rate must be in (0, 500000]");
    }
    if !(load.duration > 0.0 && load.duration <= MAX_DURATION_SECS) {
        bail!("--duration must be in (0, {MAX_DURATION_SECS}]");
    }
    if load.size > 3900 {
        bail!("--size must be at most 3900");
    }
    let total = (load.rate * load.duration).round() as u64;
    if total == 0 || total > MAX_MESSAGES {
        bail!("rate × duration must be 1 to {MAX_MESSAGES} messages");
    }
    let nofile = raise_nofile();
    let users = plan.users();
    let devices = plan.devices();
    let sockets = users * devices;
    if sockets as u64 + 64 > nofile {
        bail!("{sockets} sockets need a higher RLIMIT_NOFILE (soft limit {nofile})");
    }
    let n_targets = ctx.targets.len();
    let user_ids: Vec<String> = (0..users)
        .map(|u| {
            format!(
                "{}-{}{u}",
                ctx.run_id,
                if u.is_multiple_of(2) { "c" } else { "s" }
            )
        })
        .collect();
    let tokens: Vec<String> = user_ids
        .iter()
        .enumerate()
        .map(|(u, id)| {
            mint(
                &ctx.secret,
                id,
                if u.is_multiple_of(2) {
                    Role::Client
                } else {
                    Role::Salon
                },
            )
        })
        .collect::<Result<_>>()?;

    eprintln!(
        "[loadgen] {}: {users} users × {devices} devices = {sockets} sockets on {n_targets} node(s); {} msg/s for {} s ({total} messages)",
        plan.name(),
        load.rate,
        load.duration
    );
    let setup = Instant::now();
    let specs: Vec<(String, Vec<String>)> = match plan {
        Plan::Pairs { pairs, .. } => (0..pairs)
            .map(|c| (tokens[2 * c].clone(), vec![user_ids[2 * c + 1].clone()]))
            .collect(),
        Plan::Group { members, .. } => vec![(tokens[0].clone(), user_ids[1..members].to_vec())],
    };
    let convs = create_conversations(&ctx.targets[0], specs).await?;
    eprintln!(
        "[loadgen] {} conversation(s) created in {:.1} s",
        convs.len(),
        setup.elapsed().as_secs_f64()
    );

    let stats = Arc::new(Stats::new(plan.clone(), load.rate, total)?);
    let pad: Arc<str> = if load.size == 0 {
        Arc::from("")
    } else {
        Arc::from(format!(" {}", "x".repeat(load.size)))
    };
    let mut conn_specs = Vec::with_capacity(sockets);
    for (u, token) in tokens.iter().enumerate() {
        for _ in 0..devices {
            let i = conn_specs.len();
            conn_specs.push(ConnSpec {
                user: u,
                token: token.clone(),
                target: ctx.targets[u % n_targets].addr,
                source: source_for(i, sockets),
                config: ws_config(16 * 1024),
                pad: pad.clone(),
                headers: Arc::default(),
            });
        }
    }
    let t_connect = Instant::now();
    let opened = open_all(
        conn_specs,
        Some(stats.clone()),
        ctx.connect_concurrency,
        None,
    )
    .await;
    if !opened.failed.is_empty() {
        bail!("sockets failed to connect: {:?}", opened.failed);
    }
    eprintln!(
        "[loadgen] {sockets} sockets connected in {:.1} s",
        t_connect.elapsed().as_secs_f64()
    );
    // Every device joins its conversation's room.
    for u in 0..users {
        let conv = &convs[plan.conversation_of(u)];
        for d in 0..devices {
            let _ = opened.senders[u * devices + d].send(Cmd::Join(conv.clone()));
        }
    }
    let join_deadline = Instant::now() + Duration::from_secs(60);
    while stats.joined.load(Ordering::Relaxed) < sockets {
        if Instant::now() > join_deadline {
            bail!(
                "only {} of {sockets} joins were acked within 60 s",
                stats.joined.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(n) = lock(&stats.errors).get("JOIN_FAILED") {
        bail!("{n} join-conversation acks failed");
    }
    eprintln!(
        "[loadgen] all joined after {:.1} s of setup; sending",
        setup.elapsed().as_secs_f64()
    );
    // Let the join broadcasts drain before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let node_rss_before: Vec<Option<u64>> = ctx.pids.iter().map(|p| rss_kb_of(*p)).collect();

    let counters_before = all_adapter_counters(&ctx.scrape).await?;
    let redis_before = RedisUsage::read(ctx.redis.as_ref()).await?;
    // The timetable: message k is due at t0 + k/R.
    let before = Usage::now(&ctx.pids);
    let t0 = Instant::now();
    let _ = stats.t0.set(t0);
    let mut next: u64 = 0;
    let mut max_lag_ns: u64 = 0;
    while next < total {
        let now_ns = t0.elapsed().as_nanos() as u64;
        let due = (((now_ns as f64) * load.rate / 1e9) as u64 + 1).min(total);
        if due > next {
            max_lag_ns = max_lag_ns.max(now_ns.saturating_sub(stats.scheduled_ns(next)));
        }
        while next < due {
            let (conv, user, dev) = plan.sender(next);
            let tx = &opened.senders[user * devices + dev];
            if tx
                .send(Cmd::Send {
                    k: next,
                    conv: convs[conv].clone(),
                })
                .is_err()
            {
                stats.on_ack(next, Err("NOT_CONNECTED".into()));
            }
            next += 1;
        }
        if next < total {
            let wake = t0 + Duration::from_nanos(stats.scheduled_ns(next));
            tokio::time::sleep_until(wake.into()).await;
        }
    }
    let send_end = Instant::now();
    let expected_per = plan.expected_per_message();
    // Wait for every ack and every expected delivery, at most GRACE after
    // the last scheduled send.
    let deadline = t0 + Duration::from_nanos(stats.scheduled_ns(total)) + GRACE;
    loop {
        let ok = stats.acks_ok.load(Ordering::Relaxed);
        let err = stats.acks_err.load(Ordering::Relaxed);
        let del = stats.deliveries.load(Ordering::Relaxed);
        if ok + err == total && del >= ok * expected_per {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = Usage::now(&ctx.pids);
    let counters_after = all_adapter_counters(&ctx.scrape).await?;
    let redis_after = RedisUsage::read(ctx.redis.as_ref()).await?;
    stats.stopping.store(true, Ordering::Relaxed);
    let node_rss_after: Vec<Option<u64>> = ctx.pids.iter().map(|p| rss_kb_of(*p)).collect();

    // --- figures ---
    let ok = stats.acks_ok.load(Ordering::Relaxed);
    let err = stats.acks_err.load(Ordering::Relaxed);
    let mut unacked = 0u64;
    let mut lost = 0u64;
    for k in 0..total as usize {
        match stats.acked[k].load(Ordering::Relaxed) {
            0 => unacked += 1,
            1 => {
                let seen = u64::from(stats.seen[k].load(Ordering::Relaxed));
                lost += expected_per.saturating_sub(seen);
            }
            _ => {}
        }
    }
    if unacked > 0 {
        *lock(&stats.errors).entry("ACK_TIMEOUT".into()).or_insert(0) += unacked;
    }
    let deliveries = stats.deliveries.load(Ordering::Relaxed);
    let last_ack = stats.last_ack_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let last_del = stats.last_delivery_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let window = load.duration;
    // Throughput over the send window or until the last arrival, whichever is longer.
    let acks_per_s = ok as f64 / last_ack.max(window);
    let del_per_s = deliveries as f64 / last_del.max(window);
    let (wall, gen_cpu, node_cpu) = after.since(&before);
    let ack_h = lock(&stats.ack_hist).clone();
    let del_h = lock(&stats.del_hist).clone();
    let errors = lock(&stats.errors).clone();
    let pct = |h: &Histogram<u64>| {
        json!({
            "p50": h.value_at_quantile(0.50) as f64 / 1000.0,
            "p90": h.value_at_quantile(0.90) as f64 / 1000.0,
            "p99": h.value_at_quantile(0.99) as f64 / 1000.0,
            "max": h.max() as f64 / 1000.0,
            "count": h.len(),
        })
    };
    let fmt = |h: &Histogram<u64>| {
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms",
            h.value_at_quantile(0.50) as f64 / 1000.0,
            h.value_at_quantile(0.90) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        )
    };
    let gen_cores = gen_cpu / wall;
    println!("== parloir-loadgen {} {}", plan.name(), ctx.label);
    println!(
        "  plan            {} ; {} msg/s × {} s = {total} messages ; {} node(s)",
        plan.describe(),
        load.rate,
        load.duration,
        n_targets
    );
    println!(
        "  sent            {total} (schedule done {:.2} s after t0, max generator lag {:.2} ms)",
        send_end.duration_since(t0).as_secs_f64(),
        max_lag_ns as f64 / 1e6
    );
    println!("  acks            {ok} ok, {err} errors, {unacked} missing ; {acks_per_s:.0} acks/s");
    println!("  ack latency     {}", fmt(&ack_h));
    println!(
        "  deliveries      {deliveries} of {} expected ; {del_per_s:.0} deliveries/s ; lost {lost} ; duplicates {}",
        ok * expected_per,
        stats.duplicates.load(Ordering::Relaxed)
    );
    println!("  delivery lat.   {}", fmt(&del_h));
    println!("  errors          {errors:?}");
    println!(
        "  generator CPU   {gen_cpu:.2} s over {wall:.2} s = {gen_cores:.2} cores ; RSS {} MB",
        own_rss_kb().unwrap_or(0) / 1024
    );
    for (i, p) in ctx.pids.iter().enumerate() {
        println!(
            "  node pid {p}    CPU {} ; RSS {} → {} MB",
            node_cpu[i]
                .map(|c| format!("{c:.2} s = {:.2} cores", c / wall))
                .unwrap_or_else(|| "?".into()),
            node_rss_before[i].map(|r| r / 1024).unwrap_or(0),
            node_rss_after[i].map(|r| r / 1024).unwrap_or(0)
        );
    }
    let adapter: Vec<Value> = ctx
        .scrape
        .iter()
        .zip(counters_before.iter().zip(&counters_after))
        .map(|(t, (b, a))| {
            let received = a.0.saturating_sub(b.0);
            let published = a.1.saturating_sub(b.1);
            json!({
                "node": t.addr.to_string(),
                "received": received,
                "published": published,
                "receivedPerSec": (received as f64 / wall).round(),
                "receivedPerMessage": received as f64 / total.max(1) as f64,
            })
        })
        .collect();
    for a in &adapter {
        println!(
            "  adapter {:21} received {} ({}/s, {:.2} per message) ; published {}",
            a["node"].as_str().unwrap_or_default(),
            a["received"],
            a["receivedPerSec"],
            a["receivedPerMessage"].as_f64().unwrap_or_default(),
            a["published"]
        );
    }
    let redis = match (&redis_before, &redis_after) {
        (Some(b), Some(a)) => {
            let (calls, cpu) = a.since(b);
            let commands: u64 = calls.values().sum();
            let per_message = |n: u64| n as f64 / total.max(1) as f64;
            println!(
                "  redis           {commands} commands ({:.2} per message) ; CPU {cpu:.2} s = {:.2} cores ({:.1} µs per message)",
                per_message(commands),
                cpu / wall,
                cpu * 1e6 / total.max(1) as f64
            );
            let by_command: Vec<String> = calls
                .iter()
                .map(|(c, n)| format!("{c} {:.2}", per_message(*n)))
                .collect();
            println!("  redis/message   {}", by_command.join(" ; "));
            json!({
                "commands": commands,
                "commandsPerMessage": per_message(commands),
                "callsPerMessage": calls.iter().map(|(c, n)| (c.clone(), per_message(*n))).collect::<BTreeMap<_, _>>(),
                "cpuSecs": cpu,
                "cores": cpu / wall,
            })
        }
        _ => Value::Null,
    };
    let line = json!({
        "adapter": adapter,
        "redis": redis,
        "scenario": plan.name(),
        "label": ctx.label,
        "plan": plan.describe(),
        "nodes": n_targets,
        "rate": load.rate,
        "durationSecs": load.duration,
        "messages": total,
        "acksOk": ok,
        "ackErrors": err,
        "acksMissing": unacked,
        "acksPerSec": acks_per_s.round(),
        "ackLatencyMs": pct(&ack_h),
        "deliveriesExpected": ok * expected_per,
        "deliveries": deliveries,
        "deliveriesPerSec": del_per_s.round(),
        "deliveryLatencyMs": pct(&del_h),
        "lostDeliveries": lost,
        "duplicates": stats.duplicates.load(Ordering::Relaxed),
        "errors": errors,
        "maxGeneratorLagMs": max_lag_ns as f64 / 1e6,
        "wallSecs": wall,
        "generatorCpuSecs": gen_cpu,
        "generatorCores": gen_cores,
        "nodeCpuSecs": node_cpu,
        "nodeCores": node_cpu.iter().map(|c| c.map(|c| c / wall)).collect::<Vec<_>>(),
        "nodeRssKbBefore": node_rss_before,
        "nodeRssKbAfter": node_rss_after,
    });
    println!("{line}");
    drop(opened.senders);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

// --- idle ------------------------------------------------------------------------------------

async fn run_idle(ctx: &Ctx, a: &IdleArgs) -> Result<()> {
    if a.sockets == 0 || a.sockets > MAX_SOCKETS {
        bail!("--sockets must be 1 to {MAX_SOCKETS}");
    }
    if !(a.ramp > 0.0 && a.ramp <= 50_000.0 && (0.0..=600.0).contains(&a.hold)) {
        bail!("--ramp must be in (0, 50000] and --hold in [0, 600]");
    }
    let nofile = raise_nofile();
    if a.sockets as u64 + 64 > nofile {
        bail!(
            "{} sockets need RLIMIT_NOFILE > {} (soft limit now {nofile}; raise the hard limit with `ulimit -Hn`)",
            a.sockets,
            a.sockets + 64
        );
    }
    let n_targets = ctx.targets.len();
    let users = a.sockets.div_ceil(2);
    let tokens: Vec<String> = (0..users)
        .map(|u| mint(&ctx.secret, &format!("{}-i{u}", ctx.run_id), Role::Client))
        .collect::<Result<_>>()?;
    let rss = |ctx: &Ctx| -> Vec<Option<u64>> { ctx.pids.iter().map(|p| rss_kb_of(*p)).collect() };
    let rss_before = rss(ctx);
    let before = Usage::now(&ctx.pids);
    let headers = Arc::new(if a.browser_headers {
        browser_headers()?
    } else {
        HeaderMap::new()
    });
    let specs: Vec<ConnSpec> = (0..a.sockets)
        .map(|i| ConnSpec {
            user: i / 2,
            token: tokens[i / 2].clone(),
            target: ctx.targets[i % n_targets].addr,
            source: source_for(i, a.sockets),
            config: ws_config(4096),
            pad: Arc::from(""),
            headers: headers.clone(),
        })
        .collect();
    eprintln!(
        "[loadgen] idle: opening {} sockets at {}/s on {n_targets} node(s)",
        a.sockets, a.ramp
    );
    let t_open = Instant::now();
    let opened = open_all(specs, None, ctx.connect_concurrency, Some(a.ramp)).await;
    let open_secs = t_open.elapsed().as_secs_f64();
    let failed: usize = opened.failed.values().sum();
    let connected = a.sockets - failed;
    eprintln!("[loadgen] {connected} connected ({failed} failed) in {open_secs:.1} s; holding");
    let ramp_done = Usage::now(&ctx.pids);
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss_after = rss(ctx);
    let held = Usage::now(&ctx.pids);
    let disconnects = opened.disconnects.load(Ordering::Relaxed);
    let (open_wall, open_gen_cpu, open_node_cpu) = ramp_done.since(&before);
    let (hold_wall, hold_gen_cpu, hold_node_cpu) = held.since(&ramp_done);
    // Handshakes (token check, user room, presence) completed per second of
    // the ramp, and the node CPU each cost.
    let handshakes_per_sec = connected as f64 / open_secs.max(1e-9);
    let cpu_us_per_handshake: Vec<Option<f64>> = open_node_cpu
        .iter()
        .map(|c| c.map(|c| c * 1e6 / (connected as f64 / n_targets as f64).max(1.0)))
        .collect();
    let per_socket: Vec<Option<f64>> = rss_before
        .iter()
        .zip(&rss_after)
        .map(|(b, a)| {
            let per_node = connected as f64 / n_targets as f64;
            Some(((*a)? as f64 - (*b)? as f64) / per_node.max(1.0))
        })
        .collect();
    println!("== parloir-loadgen idle {}", ctx.label);
    println!(
        "  sockets         {connected} connected of {} ({:?}) in {open_secs:.1} s ; {disconnects} dropped while held {} s",
        a.sockets, opened.failed, a.hold
    );
    let h = &opened.handshake_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  handshake time  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1} ms (from when due, open loop)",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    println!(
        "  handshakes      {handshakes_per_sec:.0}/s over the ramp (asked {}/s) ; node CPU per handshake {} µs",
        a.ramp,
        cpu_us_per_handshake
            .iter()
            .map(|c| c.map(|c| format!("{c:.0}")).unwrap_or_else(|| "?".into()))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    for (i, p) in ctx.pids.iter().enumerate() {
        println!(
            "  node pid {p}    RSS {} → {} MB ; {} KB per socket ; CPU during ramp {} s, while idle {} s",
            rss_before[i].map(|r| r / 1024).unwrap_or(0),
            rss_after[i].map(|r| r / 1024).unwrap_or(0),
            per_socket[i]
                .map(|k| format!("{k:.1}"))
                .unwrap_or_else(|| "?".into()),
            open_node_cpu[i]
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "?".into()),
            hold_node_cpu[i]
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "?".into()),
        );
    }
    println!(
        "  generator CPU   {open_gen_cpu:.2} s over the {open_wall:.1} s ramp, {hold_gen_cpu:.2} s over the {hold_wall:.1} s hold ; RSS {} MB",
        own_rss_kb().unwrap_or(0) / 1024
    );
    let line = json!({
        "scenario": "idle",
        "label": ctx.label,
        "nodes": n_targets,
        "sockets": a.sockets,
        "connected": connected,
        "failed": opened.failed,
        "disconnectsWhileHeld": disconnects,
        "rampPerSec": a.ramp,
        "openSecs": open_secs,
        "handshakesPerSec": handshakes_per_sec,
        "handshakeMs": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": h.max() as f64 / 1000.0},
        "nodeCpuUsPerHandshake": cpu_us_per_handshake,
        "holdSecs": a.hold,
        "nodeRssKbBefore": rss_before,
        "nodeRssKbAfter": rss_after,
        "nodeKbPerSocket": per_socket,
        "nodeCpuSecsRamp": open_node_cpu,
        "nodeCpuSecsHold": hold_node_cpu,
        "generatorCpuSecsRamp": open_gen_cpu,
        "generatorCpuSecsHold": hold_gen_cpu,
        "generatorRssKb": own_rss_kb(),
    });
    println!("{line}");
    drop(opened.senders);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_loopback_only() {
        assert!(Target::parse("http://127.0.0.1:3000").is_ok());
        assert!(Target::parse("ws://localhost:4000/").is_ok());
        assert!(Target::parse("http://[::1]:3000").is_ok());
        assert!(Target::parse("http://10.0.0.1:3000").is_err());
        assert!(Target::parse("https://127.0.0.1:3000").is_err());
        assert!(Target::parse("http://example.com:3000").is_err());
    }

    #[test]
    fn pairs_plan_alternates_sides_and_devices() {
        let plan = Plan::Pairs {
            pairs: 3,
            devices: 2,
            one_way: false,
        };
        assert_eq!(plan.sender(0), (0, 0, 0));
        assert_eq!(plan.sender(4), (1, 3, 0));
        assert_eq!(plan.sender(6), (0, 0, 1));
        let one_way = Plan::Pairs {
            pairs: 3,
            devices: 2,
            one_way: true,
        };
        assert!((0..60).all(|k| one_way.sender_user(k).is_multiple_of(2)));
    }

    #[test]
    fn parses_content_and_acks() {
        let body = r#"{"id":"x","conversationId":"c","senderId":"u","content":"1234 xx","attachments":[]}]"#;
        assert_eq!(content_seq(body), Some(1234));
        assert!(ack_ok(r#"[{"ok":true,"data":{}}]"#).is_ok());
        assert_eq!(
            ack_ok(r#"[{"ok":false,"error":{"code":"RATE_LIMITED","message":"m"}}]"#),
            Err("RATE_LIMITED".to_owned())
        );
    }
}
