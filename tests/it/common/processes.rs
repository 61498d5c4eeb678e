//! Real processes for failure tests: parloir nodes (the built binary), a
//! private Redis and a private Postgres that a test may kill and restart,
//! and the official Socket.IO client driven line by line
//! (`tests/js/bin/sio-driver.mjs`). Readiness is read from the processes'
//! own output ("serving", "ready to accept connections"), never guessed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const START_DEADLINE: Duration = Duration::from_secs(20);

/// Reads lines of `stream` until one contains `needle`; returns that line.
/// Keeps draining the stream afterwards so the process never blocks on a full pipe.
async fn wait_for_line<R>(stream: R, needle: &'static str, what: &str) -> String
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut tx = Some(tx);
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            match tx.take() {
                Some(found) if line.contains(needle) => {
                    let _ = found.send(Ok(line));
                }
                Some(waiting) => {
                    seen.push(line);
                    tx = Some(waiting);
                }
                None => {} // found already: keep draining the pipe
            }
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(Err(seen.join("\n")));
        }
    });
    match tokio::time::timeout(START_DEADLINE, rx).await {
        Ok(Ok(Ok(line))) => line,
        Ok(Ok(Err(output))) => panic!("{what} exited before printing {needle:?}:\n{output}"),
        Ok(Err(_)) => panic!("{what}: output reader vanished"),
        Err(_) => panic!("{what} did not print {needle:?} within {START_DEADLINE:?}"),
    }
}

/// A port free right now for a server this test starts, chosen below the
/// kernel's ephemeral range (32768-60999 here). A port from `bind(:0)` is
/// in that range, so between its release and the server's bind any outgoing
/// connection could take it: a Redis Cluster bus port was lost that way.
fn free_port() -> u16 {
    const PORTS: std::ops::Range<u16> = 20_000..32_000;
    for _ in 0..1_000 {
        let port = rand::random_range(PORTS);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?} after 1,000 tries");
}

/// A Redis server of this test only, on a free port, restartable on the same port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty: it keeps nothing on disk.
    pub async fn restart(&mut self) {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (scripts/test installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        wait_for_line(stdout, "Ready to accept connections", "redis-server").await;
        self.child = Some(child);
    }

    /// SIGSTOP: connections stay open, nothing is answered until `resume`.
    pub async fn pause(&self) {
        signal(self.child.as_ref(), "-STOP").await;
    }

    /// SIGCONT after `pause`: the queued commands are answered.
    pub async fn resume(&self) {
        signal(self.child.as_ref(), "-CONT").await;
    }

    /// SIGKILL: every key is lost.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server killed");
        }
    }
}

/// A Redis Cluster of this test only: three masters without replicas on free
/// ports (client and cluster-bus ports both chosen). Killed masters restart
/// on the same ports with their `nodes.conf`, so the cluster re-forms with
/// the same slots, empty.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    masters: Vec<ClusterMaster>,
}

struct ClusterMaster {
    port: u16,
    bus: u16,
    child: Option<Child>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().expect("a temp dir"),
            masters: (0..3)
                .map(|_| ClusterMaster {
                    port: free_port(),
                    bus: free_port(),
                    child: None,
                })
                .collect(),
        };
        for i in 0..cluster.masters.len() {
            cluster.start_master(i).await;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for m in &cluster.masters {
            create.arg(format!("127.0.0.1:{}", m.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_until_ok().await;
        cluster
    }

    /// fred's form: `redis-cluster://host:port?node=host:port&node=...`.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.masters[0].port);
        for (i, m) in self.masters.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", m.port));
        }
        url
    }

    async fn start_master(&mut self, i: usize) {
        let dir = self.dir.path().join(i.to_string());
        std::fs::create_dir_all(&dir).expect("the master's directory");
        let master = &mut self.masters[i];
        let mut child = Command::new("redis-server")
            .args(["--port", &master.port.to_string()])
            .args(["--cluster-port", &master.bus.to_string()])
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (scripts/test installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        wait_for_line(
            stdout,
            "Ready to accept connections",
            "redis-server (cluster)",
        )
        .await;
        master.child = Some(child);
    }

    /// Waits until every master reports `cluster_state:ok`.
    async fn wait_until_ok(&self) {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            let mut ok = true;
            for m in &self.masters {
                let out = Command::new("redis-cli")
                    .args(["-p", &m.port.to_string(), "cluster", "info"])
                    .output()
                    .await
                    .expect("redis-cli runs");
                ok &= String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok");
            }
            if ok {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Redis Cluster did not reach cluster_state:ok within {START_DEADLINE:?}"
            );
            tick.tick().await;
        }
    }

    /// The index of the master serving `key`'s slot (a channel name works too).
    pub async fn master_of(&self, key: &str) -> usize {
        let port = self.masters[0].port.to_string();
        let slot = Command::new("redis-cli")
            .args(["-p", &port, "cluster", "keyslot", key])
            .output()
            .await
            .expect("redis-cli runs");
        let slot: u16 = String::from_utf8_lossy(&slot.stdout)
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        // `CLUSTER SLOTS` prints, per range, one value a line: start, end,
        // master ip, master port, master id, then the master's (here empty)
        // networking metadata as an empty line.
        let slots = Command::new("redis-cli")
            .args(["-p", &port, "cluster", "slots"])
            .output()
            .await
            .expect("redis-cli runs");
        let lines: Vec<String> = String::from_utf8_lossy(&slots.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        for range in lines.chunks(5) {
            let [start, end, _ip, master_port, _id] = range else {
                continue;
            };
            let (Ok(start), Ok(end)) = (start.parse::<u16>(), end.parse::<u16>()) else {
                continue;
            };
            if (start..=end).contains(&slot) {
                return self
                    .masters
                    .iter()
                    .position(|m| m.port.to_string() == *master_port)
                    .expect("the slot's master is one of ours");
            }
        }
        panic!("no master serves slot {slot}: {lines:?}");
    }

    /// SIGKILL one master: its shard's keys and subscriptions are lost, the
    /// other shards keep serving.
    pub async fn kill_master(&mut self, i: usize) {
        if let Some(mut child) = self.masters[i].child.take() {
            child.kill().await.expect("redis-server killed");
        }
    }

    /// SIGKILL every master: every key and subscription is lost.
    pub async fn kill(&mut self) {
        for m in &mut self.masters {
            if let Some(mut child) = m.child.take() {
                child.kill().await.expect("redis-server killed");
            }
        }
    }

    /// Starts the killed masters again and waits for the cluster to be ok.
    pub async fn restart(&mut self) {
        for i in 0..self.masters.len() {
            if self.masters[i].child.is_none() {
                self.start_master(i).await;
            }
        }
        self.wait_until_ok().await;
    }

    /// SIGSTOP every master: connections stay open, nothing is answered.
    pub async fn pause(&self) {
        for m in &self.masters {
            signal(m.child.as_ref(), "-STOP").await;
        }
    }

    pub async fn resume(&self) {
        for m in &self.masters {
            signal(m.child.as_ref(), "-CONT").await;
        }
    }
}

async fn signal(child: Option<&Child>, signal: &str) {
    let pid = child.and_then(Child::id).expect("redis-server running");
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The Redis deployments parloir runs on, for tests that run on each.
#[derive(Debug, Clone, Copy)]
pub enum RedisKind {
    Single,
    Cluster,
}

/// A Redis of either kind, of this test only.
pub enum TestRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl TestRedis {
    pub async fn start(kind: RedisKind) -> Self {
        match kind {
            RedisKind::Single => Self::Single(RedisServer::start().await),
            RedisKind::Cluster => Self::Cluster(RedisCluster::start().await),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Single(r) => r.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// Every Redis process killed: all state is lost.
    pub async fn kill(&mut self) {
        match self {
            Self::Single(r) => r.kill().await,
            Self::Cluster(c) => c.kill().await,
        }
    }

    /// Back on the same ports, empty.
    pub async fn restart(&mut self) {
        match self {
            Self::Single(r) => r.restart().await,
            Self::Cluster(c) => c.restart().await,
        }
    }

    pub async fn pause(&self) {
        match self {
            Self::Single(r) => r.pause().await,
            Self::Cluster(c) => c.pause().await,
        }
    }

    pub async fn resume(&self) {
        match self {
            Self::Single(r) => r.resume().await,
            Self::Cluster(c) => c.resume().await,
        }
    }
}

/// A Postgres cluster of this test only (`initdb` in a temp dir, run as the
/// `postgres` user when we are root), stoppable and restartable.
pub struct PostgresServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn postgres_bin() -> PathBuf {
    for dir in [
        "/usr/lib/postgresql/17/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/15/bin",
    ] {
        if Path::new(dir).join("pg_ctl").exists() {
            return PathBuf::from(dir);
        }
    }
    PathBuf::from("/usr/local/bin")
}

fn as_postgres_user(program: &Path) -> Command {
    // initdb and the server refuse to run as root.
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl PostgresServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = postgres_bin();
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown of the Postgres temp dir"
            );
        }
        let data = dir.path().join("data");
        let out = as_postgres_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .output()
            .await
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = Self {
            port: free_port(),
            dir,
            bin,
        };
        server.start_again().await;
        server
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn start_again(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres_user(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .await
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn stop(&self) {
        let data = self.dir.path().join("data");
        let out = as_postgres_user(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .await
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A parloir node as its own process (so a test can SIGKILL it).
pub struct NodeProcess {
    pub url: String,
    child: Child,
}

impl NodeProcess {
    /// Starts the binary with `env` (on a port it picks) and returns once it serves.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parloir"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PARLOIR_BIND", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.arg("serve").spawn().expect("the parloir binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = wait_for_line(stdout, "\"message\":\"serving\"", "parloir").await;
        let log: Value = serde_json::from_str(&line).expect("a JSON log line");
        let addr = log["addr"]
            .as_str()
            .expect("the serving line names the address");
        Self {
            url: format!("http://{addr}"),
            child,
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("node killed");
    }

    /// SIGTERM, then waits for the process to exit; returns its exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM delivered to {pid}");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the node exits within 30 s of SIGTERM")
            .expect("waiting for the node");
        status.code()
    }

    /// `host:port` of the node, for a load balancer's server line.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running node has a pid")
    }
}

/// The official Socket.IO client, commanded from the test.
pub struct Driver {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    _child: Child,
}

impl Driver {
    pub async fn start() -> Self {
        let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
        let mut child = Command::new("node")
            .current_dir(&js)
            .arg("bin/sio-driver.mjs")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the driver");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self {
            stdin,
            lines,
            next_id: 0,
            _child: child,
        }
    }

    /// Sends one command and returns its answer.
    pub async fn call(&mut self, mut command: Value) -> Value {
        self.next_id += 1;
        command["id"] = json!(self.next_id);
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("driver stdin");
        // Every command answers within its own deadline (at most a minute).
        let answer = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the driver answers")
            .expect("driver stdout")
            .expect("the driver is alive");
        let answer: Value = serde_json::from_str(&answer).expect("one JSON line");
        assert_eq!(answer["id"], json!(self.next_id), "answers come in order");
        answer
    }

    pub async fn connect(&mut self, name: &str, url: &str, token: &str) {
        self.connect_with(name, url, token, json!({})).await;
    }

    /// `connect` with client options (`transports`, `reconnection`).
    pub async fn connect_with(&mut self, name: &str, url: &str, token: &str, options: Value) {
        let mut command = json!({"op": "connect", "name": name, "url": url, "token": token});
        if let (Some(c), Some(o)) = (command.as_object_mut(), options.as_object()) {
            c.extend(o.clone());
        }
        let a = self.call(command).await;
        assert_eq!(a["ok"], true, "{name} connects to {url}: {a}");
    }

    /// Emits `count` events at once and counts the ack outcomes (`ok`, an
    /// error code, or `noAck`).
    pub async fn burst(
        &mut self,
        name: &str,
        event: &str,
        payload: Value,
        count: usize,
    ) -> std::collections::HashMap<String, u64> {
        let a = self
            .call(json!({"op": "burst", "name": name, "event": event, "payload": payload, "count": count}))
            .await;
        assert!(a.get("error").is_none(), "{name} burst of {event}: {a}");
        serde_json::from_value(a["outcomes"].clone()).expect("outcome counts")
    }

    /// Connects and returns the refusal, if the handshake is refused.
    pub async fn try_connect(
        &mut self,
        name: &str,
        url: &str,
        token: &str,
        headers: Value,
    ) -> Result<(), String> {
        let a = self
            .call(json!({"op": "connect", "name": name, "url": url, "token": token, "headers": headers}))
            .await;
        match a.get("error").and_then(Value::as_str) {
            None => Ok(()),
            Some(e) => Err(e.trim_start_matches("connect_error: ").to_owned()),
        }
    }

    pub async fn emit(&mut self, name: &str, event: &str, payload: Value) -> Value {
        let a = self
            .call(json!({"op": "emit", "name": name, "event": event, "payload": payload}))
            .await;
        assert!(a.get("error").is_none(), "{name} {event}: {a}");
        a["ack"].clone()
    }

    /// The first unconsumed `event` on `name` whose first argument contains `matching`.
    pub async fn wait(
        &mut self,
        name: &str,
        event: &str,
        matching: Value,
        timeout: Duration,
    ) -> Value {
        let a = self
            .call(json!({"op": "wait", "name": name, "event": event, "match": matching, "timeoutMs": timeout.as_millis() as u64}))
            .await;
        assert!(
            a.get("error").is_none(),
            "{name} waited for {event} {matching}: {a:#}"
        );
        a["args"][0].clone()
    }

    /// Like `wait`, but a timeout is an answer (`None`), not a failure.
    pub async fn try_wait(
        &mut self,
        name: &str,
        event: &str,
        matching: Value,
        timeout: Duration,
    ) -> Option<Value> {
        let a = self
            .call(json!({"op": "wait", "name": name, "event": event, "match": matching, "timeoutMs": timeout.as_millis() as u64}))
            .await;
        a.get("error").is_none().then(|| a["args"][0].clone())
    }

    /// Every event `name` received and no `wait` consumed yet.
    pub async fn drain(&mut self, name: &str) -> Vec<Value> {
        let a = self.call(json!({"op": "drain", "name": name})).await;
        a["events"].as_array().cloned().unwrap_or_default()
    }

    /// An HTTP request through Node's `fetch`; returns `(status, body)`.
    pub async fn http(
        &mut self,
        method: &str,
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let a = self
            .call(json!({"op": "http", "method": method, "url": url, "token": token, "body": body}))
            .await;
        assert!(a.get("error").is_none(), "{method} {url}: {a}");
        (
            a["status"].as_u64().expect("a status") as u16,
            a["body"].clone(),
        )
    }

    pub async fn close(&mut self, name: &str) {
        self.call(json!({"op": "close", "name": name})).await;
    }
}

/// HAProxy in front of nodes with the repository's own configuration
/// (`deploy/haproxy.cfg.tmpl`: cookie affinity, /readyz health checks).
pub struct LoadBalancer {
    pub url: String,
    _config: tempfile::NamedTempFile,
    _child: Child,
}

impl LoadBalancer {
    pub async fn start(nodes: &[&NodeProcess]) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let port = free_port();
        let mut args = vec![
            root.join("deploy/render-haproxy.sh").display().to_string(),
            root.join("deploy/haproxy.cfg.tmpl").display().to_string(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| format!("n{}={}", i + 1, n.addr())),
        );
        let rendered = Command::new("sh")
            .args(&args)
            .output()
            .await
            .expect("render-haproxy.sh runs");
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let config = tempfile::NamedTempFile::new().expect("a temp file");
        std::fs::write(config.path(), &rendered.stdout).expect("config written");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(config.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy starts (scripts/test installs it)");
        let url = format!("http://127.0.0.1:{port}");
        // HAProxy announces nothing once it listens: try the port until it answers.
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy did not listen on {port}"
            );
            tokio::task::yield_now().await;
        }
        Self {
            url,
            _config: config,
            _child: child,
        }
    }
}
