//! `reconnect`: a node dies under traffic and its clients resume on a survivor.
//!
//! Two nodes. Each of C conversations has a sender (one socket, on the
//! first node, which survives) and a receiver with D devices (on the
//! second node, which is SIGKILLed `--kill-after` seconds into the
//! schedule). Every receiver socket follows its conversation's log the way
//! `@parloir/client` does: it applies numbered events by `seq`, drops what
//! it already has, and when its socket drops it waits a random moment (as
//! socket.io-client's randomized reconnection delay does), connects to the
//! survivor, and resumes with `join-conversation {afterSeq}`, continuing
//! with `sync` while the ack says `hasMore`.
//!
//! Reported: how long until every dropped socket has resumed (from the
//! kill), each socket's resume latency (from noticing the drop to the last
//! resume answer), the survivor's store calls per resumed socket above the
//! traffic's own rate, and, per receiver socket, the numbered events lost
//! (a number up to its conversation's last acked send never seen) and
//! those that arrived more than once on the wire (dropped by number, as a
//! client does).

use super::*;

#[derive(Args, Debug)]
pub(crate) struct ReconnectArgs {
    /// Two-person conversations (one sender and one receiver each).
    #[arg(long, default_value_t = 2000)]
    conversations: usize,
    /// Devices (sockets) per receiver.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Aggregate send rate, open loop, on the first node.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// The second node's process id: it is SIGKILLed.
    #[arg(long)]
    kill_pid: u32,
    /// Seconds into the schedule at which it is killed.
    #[arg(long, default_value_t = 5.0)]
    kill_after: f64,
    /// The longest random wait before a dropped socket reconnects (seconds).
    #[arg(long, default_value_t = 1.0)]
    reconnect_jitter: f64,
}

/// Numbered events: each carries its conversation's `seq` at the top of its payload.
const NUMBERED: [&str; 5] = [
    ev::NEW_MESSAGE,
    ev::MESSAGE_READ,
    ev::MESSAGE_DELETED,
    ev::CONVERSATION_CREATED,
    ev::SEQ_SKIPPED,
];

/// What one receiver socket saw of its conversation's log.
#[derive(Default)]
struct Seen {
    /// How many times each number arrived (replayed or live).
    counts: BTreeMap<u64, u32>,
}

impl Seen {
    fn add(&mut self, seq: u64) {
        *self.counts.entry(seq).or_insert(0) += 1;
    }

    /// The highest number below which nothing is missing: what a client
    /// asks to resume after.
    fn contiguous(&self) -> u64 {
        let mut n = 0;
        for &s in self.counts.keys() {
            if s != n + 1 {
                break;
            }
            n = s;
        }
        n
    }
}

#[derive(Default)]
struct Totals {
    resumed: AtomicUsize,
    dropped: AtomicUsize,
    reconnect_attempts: AtomicUsize,
    failed: Mutex<BTreeMap<String, usize>>,
    resume_us: Mutex<Vec<u64>>,
    /// From noticing the drop to the survivor's CONNECT answer.
    connected_us: Mutex<Vec<u64>>,
    /// When the last socket resumed, in µs since the kill.
    last_resumed_us: AtomicU64,
    syncs: AtomicUsize,
    not_recovered: AtomicUsize,
}

struct Receiver {
    conv: Arc<str>,
    token: String,
    first: SocketAddr,
    survivor: SocketAddr,
    source: Option<Ipv4Addr>,
    jitter: f64,
    seed: u64,
}

/// One socket's numbered frame or answer, as the receiver loop needs it.
enum Frame {
    Numbered(u64),
    /// `conversation-latest`: a hint that the log reached this number.
    Latest(u64),
    Ack(u64, Value),
    Ping,
    Closed,
    Other,
}

fn parse(t: &str) -> Frame {
    if t == "2" {
        return Frame::Ping;
    }
    if t.starts_with('1') || packet_body(t, "41").is_some() {
        return Frame::Closed;
    }
    if let Some(rest) = packet_body(t, "42") {
        let Ok(v) = serde_json::from_str::<Value>(rest) else {
            return Frame::Other;
        };
        let name = v[0].as_str().unwrap_or_default();
        let seq = v[1]["seq"].as_u64();
        return match (name, seq) {
            (n, Some(s)) if n == ev::CONVERSATION_LATEST => Frame::Latest(s),
            (n, Some(s)) if NUMBERED.contains(&n) => Frame::Numbered(s),
            _ => Frame::Other,
        };
    }
    if let Some(rest) = packet_body(t, "43") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(id) = rest[..digits].parse::<u64>() else {
            return Frame::Other;
        };
        let body = serde_json::from_str::<Value>(&rest[digits..]).unwrap_or(Value::Null);
        return Frame::Ack(id, body);
    }
    Frame::Other
}

/// What follows `{kind}/messaging` (and its comma, if any) in a packet of
/// that kind (`41`, `42`, `43`): no allocation per frame.
fn packet_body<'a>(t: &'a str, kind: &str) -> Option<&'a str> {
    let rest = t.strip_prefix(kind)?.strip_prefix(NS)?;
    Some(rest.strip_prefix(',').unwrap_or(rest))
}

fn emit(id: u64, event: &str, payload: &Value) -> Message {
    Message::text(format!("42{NS},{id}{}", json!([event, payload])))
}

/// A small xorshift: jitter need not be good randomness, only spread.
fn next_rand(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Follows one conversation through one socket and its reconnections until
/// `stop` is set; returns what it saw.
async fn run_receiver(
    r: Receiver,
    ready: oneshot::Sender<Result<(), String>>,
    stop: Arc<AtomicBool>,
    killed_at: Arc<OnceLock<Instant>>,
    totals: Arc<Totals>,
) -> Seen {
    let mut seen = Seen::default();
    let mut ready = Some(ready);
    let mut target = r.first;
    let mut rand = r.seed | 1;
    let mut dropped_at: Option<Instant> = None;
    let mut next_id: u64 = 0;
    'connections: loop {
        if stop.load(Ordering::Relaxed) {
            return seen;
        }
        let spec = ConnSpec {
            user: 0,
            token: r.token.clone(),
            target,
            source: r.source,
            config: ws_config(16 * 1024),
            pad: Arc::from(""),
            headers: Arc::default(),
        };
        let mut ws = match open_in_time(&spec).await {
            Ok(ws) => ws,
            Err(why) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(why));
                    return seen;
                }
                *lock(&totals.failed)
                    .entry(why.chars().take(80).collect())
                    .or_insert(0) += 1;
                totals.reconnect_attempts.fetch_add(1, Ordering::Relaxed);
                let wait = 0.5 + next_rand(&mut rand) * r.jitter.max(0.5);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                continue 'connections;
            }
        };
        if let Some(at) = dropped_at {
            let took = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
            lock(&totals.connected_us).push(took);
        }
        // Resume: everything after the last number held without a gap.
        let after = seen.contiguous();
        let join_id = next_id;
        next_id += 1;
        let join = json!({ "conversationId": &*r.conv, "afterSeq": after });
        if ws
            .send(emit(join_id, ev::JOIN_CONVERSATION, &join))
            .await
            .is_err()
        {
            continue 'connections;
        }
        let mut sync_id: Option<u64> = None;
        let mut resuming = true;
        loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        let _ = ws.close(None).await;
                        return seen;
                    }
                    continue;
                }
            };
            let Some(Ok(Message::Text(t))) = msg else {
                if matches!(msg, Some(Ok(_))) {
                    continue;
                }
                break;
            };
            let mut want_sync = false;
            match parse(t.as_str()) {
                Frame::Ping => {
                    if ws.send(Message::text("3")).await.is_err() {
                        break;
                    }
                }
                Frame::Closed => break,
                Frame::Other => {}
                Frame::Numbered(seq) => seen.add(seq),
                Frame::Latest(seq) => want_sync = sync_id.is_none() && seq > seen.contiguous(),
                Frame::Ack(id, body) if id == join_id => {
                    if body[0]["ok"] != Value::Bool(true) {
                        // Refused (a budget, the store): come back as a client would.
                        *lock(&totals.failed)
                            .entry(format!("join: {}", body[0]["error"]["code"]))
                            .or_insert(0) += 1;
                        totals.reconnect_attempts.fetch_add(1, Ordering::Relaxed);
                        let _ = ws.close(None).await;
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Err(format!("join: {}", body[0]["error"]["code"])));
                            return seen;
                        }
                        tokio::time::sleep(Duration::from_secs_f64(0.5 + next_rand(&mut rand)))
                            .await;
                        continue 'connections;
                    }
                    let ack = &body[0]["data"];
                    if ack["recovered"] == Value::Bool(false) {
                        totals.not_recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    want_sync = ack["hasMore"] == Value::Bool(true);
                    if !want_sync {
                        resuming = false;
                    }
                }
                Frame::Ack(id, body) if Some(id) == sync_id => {
                    sync_id = None;
                    let c = &body[0]["data"]["conversations"][&*r.conv];
                    if c["recovered"] == Value::Bool(false) {
                        totals.not_recovered.fetch_add(1, Ordering::Relaxed);
                    }
                    for e in c["events"].as_array().into_iter().flatten() {
                        if e["type"].as_str() != Some(ev::CONVERSATION_LATEST)
                            && let Some(seq) = e["seq"].as_u64()
                        {
                            seen.add(seq);
                        }
                    }
                    want_sync = c["hasMore"] == Value::Bool(true);
                    if !want_sync {
                        resuming = false;
                    }
                }
                Frame::Ack(..) => {}
            }
            if want_sync {
                let id = next_id;
                next_id += 1;
                sync_id = Some(id);
                totals.syncs.fetch_add(1, Ordering::Relaxed);
                let body = json!({ "conversations": { &*r.conv: seen.contiguous() } });
                if ws.send(emit(id, ev::SYNC, &body)).await.is_err() {
                    break;
                }
            }
            if !resuming && let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
            if !resuming && let Some(at) = dropped_at.take() {
                let took = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                lock(&totals.resume_us).push(took);
                totals.resumed.fetch_add(1, Ordering::Relaxed);
                if let Some(k) = killed_at.get() {
                    let since = u64::try_from(k.elapsed().as_micros()).unwrap_or(u64::MAX);
                    totals.last_resumed_us.fetch_max(since, Ordering::Relaxed);
                }
            }
        }
        // The socket dropped (its node died): come back to the survivor.
        if stop.load(Ordering::Relaxed) {
            return seen;
        }
        if let Some(tx) = ready.take() {
            let _ = tx.send(Err("dropped during the first join".into()));
            return seen;
        }
        if dropped_at.is_none() {
            dropped_at = Some(Instant::now());
            totals.dropped.fetch_add(1, Ordering::Relaxed);
        }
        target = r.survivor;
        let wait = next_rand(&mut rand) * r.jitter;
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

/// One sender socket: sends what it is told, records each ack's `seq`.
async fn run_sender(
    spec: ConnSpec,
    conv: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<u64>,
    last_acked: Arc<AtomicU64>,
    ready: oneshot::Sender<Result<(), String>>,
    acked: Arc<AtomicUsize>,
    refused: Arc<Mutex<BTreeMap<String, usize>>>,
) {
    let mut ws = match open_in_time(&spec).await {
        Ok(ws) => ws,
        Err(why) => {
            let _ = ready.send(Err(why));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        tokio::select! {
            k = rx.recv() => {
                let Some(k) = k else { break };
                let body = json!({ "conversationId": &*conv, "content": k.to_string() });
                if ws.send(emit(k, ev::SEND_MESSAGE, &body)).await.is_err() {
                    break;
                }
            }
            msg = ws.next() => {
                let Some(Ok(Message::Text(t))) = msg else {
                    if matches!(msg, Some(Ok(_))) { continue }
                    break;
                };
                match parse(t.as_str()) {
                    Frame::Ping => { let _ = ws.send(Message::text("3")).await; }
                    Frame::Closed => break,
                    Frame::Ack(_, body) => {
                        let ack = &body[0];
                        match ack["data"]["seq"].as_u64() {
                            Some(seq) => {
                                last_acked.fetch_max(seq, Ordering::Relaxed);
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {
                                let code = ack["error"]["code"].as_str().unwrap_or("BAD_ACK").to_owned();
                                *lock(&refused).entry(code).or_insert(0) += 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

/// The survivor's store calls so far, by operation (`/metrics`).
async fn store_calls(target: &Target) -> Result<BTreeMap<String, f64>> {
    let (status, text) = Http::new(target.addr).get("/metrics").await?;
    if status != 200 {
        bail!("GET {}/metrics: HTTP {status}", target.addr);
    }
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("parloir_store_call_duration_seconds_count{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let op = labels
            .split(',')
            .find_map(|l| l.strip_prefix("op=\""))
            .map(|o| o.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *out.entry(op).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

pub(crate) async fn run_reconnect(ctx: &Ctx, a: &ReconnectArgs) -> Result<()> {
    let [survivor, victim] = ctx.targets.as_slice() else {
        bail!(
            "reconnect needs two --url: the survivor (senders), then the node to kill (receivers)"
        );
    };
    if a.conversations == 0 || a.devices == 0 || a.devices > 16 {
        bail!("--conversations must be > 0 and --devices 1 to 16");
    }
    let sockets = a.conversations * (1 + a.devices);
    if sockets > MAX_SOCKETS || sockets as u64 + 64 > raise_nofile() {
        bail!("{sockets} sockets are more than this run may open");
    }
    if !(a.rate > 0.0 && a.duration > 0.0 && a.duration <= MAX_DURATION_SECS) {
        bail!("--rate must be > 0 and --duration in (0, {MAX_DURATION_SECS}]");
    }
    if !(a.kill_after >= 0.0 && a.kill_after < a.duration) {
        bail!("--kill-after must fall inside the schedule");
    }
    let total = (a.rate * a.duration).round() as u64;
    if total == 0 || total > MAX_MESSAGES {
        bail!("rate × duration must be 1 to {MAX_MESSAGES} messages");
    }
    let senders: Vec<String> = (0..a.conversations)
        .map(|c| format!("{}-rs{c}", ctx.run_id))
        .collect();
    let receivers: Vec<String> = (0..a.conversations)
        .map(|c| format!("{}-rc{c}", ctx.run_id))
        .collect();
    let sender_tokens: Vec<String> = senders
        .iter()
        .map(|u| mint(&ctx.secret, u, Role::Salon))
        .collect::<Result<_>>()?;
    let specs = (0..a.conversations)
        .map(|c| (sender_tokens[c].clone(), vec![receivers[c].clone()]))
        .collect();
    eprintln!(
        "[loadgen] reconnect: {} conversations; senders on {}, {} receiver sockets on {} (killed {} s in); {} msg/s for {} s",
        a.conversations,
        survivor.addr,
        a.conversations * a.devices,
        victim.addr,
        a.kill_after,
        a.rate,
        a.duration
    );
    let convs = create_conversations(survivor, specs).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let totals = Arc::new(Totals::default());
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency));
    let mut receiver_tasks = Vec::new();
    let mut readies = Vec::new();
    for (c, conv) in convs.iter().enumerate() {
        let token = mint(&ctx.secret, &receivers[c], Role::Client)?;
        for d in 0..a.devices {
            let i = c * a.devices + d;
            let r = Receiver {
                conv: conv.clone(),
                token: token.clone(),
                first: victim.addr,
                survivor: survivor.addr,
                source: source_for(i, sockets),
                jitter: a.reconnect_jitter.max(0.0),
                seed: 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
            };
            let (tx, rx) = oneshot::channel();
            let (stop, killed_at, totals) = (stop.clone(), killed_at.clone(), totals.clone());
            let permit = sem.clone().acquire_owned().await?;
            receiver_tasks.push(tokio::spawn(run_receiver(r, tx, stop, killed_at, totals)));
            readies.push(tokio::spawn(async move {
                let r = rx.await.unwrap_or_else(|_| Err("task ended".into()));
                drop(permit);
                r
            }));
        }
    }
    let last_acked: Vec<Arc<AtomicU64>> = convs.iter().map(|_| Arc::default()).collect();
    let acked = Arc::new(AtomicUsize::new(0));
    let refused: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut send_txs = Vec::new();
    for (c, conv) in convs.iter().enumerate() {
        let spec = ConnSpec {
            user: c,
            token: sender_tokens[c].clone(),
            target: survivor.addr,
            source: source_for(a.conversations * a.devices + c, sockets),
            config: ws_config(16 * 1024),
            pad: Arc::from(""),
            headers: Arc::default(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (rtx, rrx) = oneshot::channel();
        let permit = sem.clone().acquire_owned().await?;
        tokio::spawn(run_sender(
            spec,
            conv.clone(),
            rx,
            last_acked[c].clone(),
            rtx,
            acked.clone(),
            refused.clone(),
        ));
        send_txs.push(tx);
        readies.push(tokio::spawn(async move {
            let r = rrx.await.unwrap_or_else(|_| Err("task ended".into()));
            drop(permit);
            r
        }));
    }
    let mut failed = BTreeMap::new();
    for r in readies {
        if let Err(e) = r.await.unwrap_or_else(|_| Err("task panicked".into())) {
            *failed
                .entry(e.chars().take(80).collect::<String>())
                .or_insert(0) += 1;
        }
    }
    if !failed.is_empty() {
        stop.store(true, Ordering::Relaxed);
        bail!("sockets failed to connect: {failed:?}");
    }
    eprintln!("[loadgen] {sockets} sockets connected and joined");

    // The schedule: message k to conversation k mod C at t0 + k/R; the kill on time.
    let t0 = Instant::now();
    let kill_at = t0 + Duration::from_secs_f64(a.kill_after);
    let mut before_kill: Option<(Instant, BTreeMap<String, f64>)> = None;
    let at_start = store_calls(survivor).await.ok();
    for k in 0..total {
        let due = t0 + Duration::from_secs_f64(k as f64 / a.rate);
        if before_kill.is_none() && due >= kill_at {
            tokio::time::sleep_until(kill_at.into()).await;
            before_kill = Some((
                Instant::now(),
                store_calls(survivor).await.unwrap_or_default(),
            ));
            let status = std::process::Command::new("kill")
                .args(["-KILL", &a.kill_pid.to_string()])
                .status()
                .context("cannot run kill")?;
            if !status.success() {
                bail!("kill -KILL {} failed", a.kill_pid);
            }
            let _ = killed_at.set(Instant::now());
            eprintln!("[loadgen] killed {} at {:.1} s", a.kill_pid, a.kill_after);
        }
        tokio::time::sleep_until(due.into()).await;
        let c = (k % a.conversations as u64) as usize;
        let _ = send_txs[c].send(k);
    }
    let sent_until = Instant::now();
    // Let the last acks and deliveries arrive and every dropped socket resume.
    let grace_until = sent_until + GRACE;
    let dropped_all = a.conversations * a.devices;
    loop {
        let done = totals.resumed.load(Ordering::Relaxed) >= dropped_all
            && acked.load(Ordering::Relaxed) as u64 + lock(&refused).values().sum::<usize>() as u64
                >= total;
        if (done && Instant::now() >= sent_until + Duration::from_secs(2))
            || Instant::now() >= grace_until + Duration::from_secs(25)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_resumed_at = Instant::now();
    let at_end = store_calls(survivor).await.unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    drop(send_txs);
    let mut lost = 0u64;
    let mut duplicates = 0u64;
    let mut sockets_with_loss = 0usize;
    for (i, task) in receiver_tasks.into_iter().enumerate() {
        let seen = task.await.context("a receiver panicked")?;
        let last = last_acked[i / a.devices].load(Ordering::Relaxed);
        let missing = (1..=last).filter(|s| !seen.counts.contains_key(s)).count() as u64;
        lost += missing;
        sockets_with_loss += usize::from(missing > 0);
        duplicates += seen.counts.values().map(|&n| u64::from(n - 1)).sum::<u64>();
    }

    // Store calls per resumed socket: the survivor's calls between the kill
    // and the end, minus what the traffic alone cost at its rate before it.
    let resumed = totals.resumed.load(Ordering::Relaxed);
    let mut excess_by_op = BTreeMap::new();
    if let (Some(start), Some((killed, at_kill))) = (at_start, before_kill.as_ref()) {
        let before_secs = killed.duration_since(t0).as_secs_f64().max(0.001);
        let window = all_resumed_at.duration_since(*killed).as_secs_f64();
        for (op, end) in &at_end {
            let k = at_kill.get(op).copied().unwrap_or(0.0);
            let s = start.get(op).copied().unwrap_or(0.0);
            let steady = (k - s) / before_secs * window;
            let excess = (end - k - steady).max(0.0);
            if excess >= 1.0 {
                excess_by_op.insert(op.clone(), excess / resumed.max(1) as f64);
            }
        }
    }
    let store_per_socket: f64 = excess_by_op.values().sum();
    let mut resume_us = std::mem::take(&mut *lock(&totals.resume_us));
    resume_us.sort_unstable();
    let mut connected_us = std::mem::take(&mut *lock(&totals.connected_us));
    connected_us.sort_unstable();
    let pct_of = |v: &[u64], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i] as f64 / 1000.0
    };
    let pct = |p: f64| pct_of(&resume_us, p);
    let connected = |p: f64| pct_of(&connected_us, p);
    let all_resumed_ms = totals.last_resumed_us.load(Ordering::Relaxed) as f64 / 1000.0;
    let reconnect_failed = std::mem::take(&mut *lock(&totals.failed));
    let refused = std::mem::take(&mut *lock(&refused));
    println!(
        "reconnect: {} of {} dropped sockets resumed; all within {:.0} ms of the kill; resume p50 / p99 / max {:.0} / {:.0} / {:.0} ms",
        resumed,
        totals.dropped.load(Ordering::Relaxed),
        all_resumed_ms,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  of which reconnected (CONNECT answered, jitter included) p50 / p99 {:.0} / {:.0} ms",
        connected(0.5),
        connected(0.99)
    );
    println!(
        "  sends: {} of {} acked, refused {:?}; events lost {} (on {} sockets), arrived twice {} (dropped by seq); not recovered {}; syncs {}",
        acked.load(Ordering::Relaxed),
        total,
        refused,
        lost,
        sockets_with_loss,
        duplicates,
        totals.not_recovered.load(Ordering::Relaxed),
        totals.syncs.load(Ordering::Relaxed)
    );
    println!(
        "  reconnect attempts that failed: {} {:?}; store calls per resumed socket above the traffic's: {:.2} {:?}",
        totals.reconnect_attempts.load(Ordering::Relaxed),
        reconnect_failed,
        store_per_socket,
        excess_by_op
            .iter()
            .map(|(k, v)| format!("{k}={v:.2}"))
            .collect::<Vec<_>>()
    );
    let line = json!({
        "scenario": "reconnect",
        "label": ctx.label,
        "conversations": a.conversations,
        "receiver_sockets": dropped_all,
        "rate": a.rate,
        "duration": a.duration,
        "kill_after": a.kill_after,
        "dropped": totals.dropped.load(Ordering::Relaxed),
        "resumed": resumed,
        "all_resumed_ms": all_resumed_ms,
        "resume_ms": { "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0) },
        "reconnected_ms": { "p50": connected(0.5), "p99": connected(0.99) },
        "sent": total,
        "acked": acked.load(Ordering::Relaxed),
        "refused": refused,
        "lost": lost,
        "arrived_twice": duplicates,
        "not_recovered": totals.not_recovered.load(Ordering::Relaxed),
        "syncs": totals.syncs.load(Ordering::Relaxed),
        "reconnect_failures": reconnect_failed,
        "store_calls_per_resumed_socket": store_per_socket,
        "store_calls_by_op": excess_by_op,
    });
    println!("{line}");
    if lost > 0 || resumed < dropped_all {
        bail!(
            "{lost} events lost, {} of {dropped_all} sockets resumed",
            resumed
        );
    }
    Ok(())
}
