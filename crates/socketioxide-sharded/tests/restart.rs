//! Subscriptions come back by themselves after Redis restarts empty.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Server, config, unique_prefix};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A redis-server of this test only, restartable on the same port.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "redis-server is ready");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server killed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_subscribed_again_after_redis_restarts() {
    let mut redis = Redis::start().await;
    let prefix = unique_prefix();
    let a = Server::start(&redis.url(), config(&prefix)).await;
    let b = Server::start(&redis.url(), config(&prefix)).await;
    let mut sender = a.connect(&[]).await;
    let mut member = b.connect(&["room"]).await;
    sender.to(&["room"], &[], "ev", json!("before")).await;
    assert_eq!(member.next_event().await, ("ev".into(), json!("before")));

    redis.kill().await;
    // Joining still works locally (the subscription waits for Redis), the
    // broadcast still reaches the local sockets, and the publish fails fast.
    let mut local = a.connect(&["room"]).await;
    let failed = sender
        .call(
            "to",
            json!({"rooms": ["room"], "event": "ev", "data": "during"}),
        )
        .await;
    assert_eq!(failed, json!(false), "the publish reports the outage");
    assert_eq!(local.next_event().await, ("ev".into(), json!("during")));

    redis.restart().await;
    let mut resumed = false;
    for attempt in 0..50 {
        sender
            .call(
                "to",
                json!({"rooms": ["room"], "event": "ev", "data": attempt}),
            )
            .await;
        if let Ok((_, data)) =
            tokio::time::timeout(Duration::from_millis(200), member.next_event()).await
        {
            assert_eq!(data, json!(attempt), "no message from the outage");
            resumed = true;
            break;
        }
    }
    assert!(resumed, "B re-subscribed its room after the restart");
    assert!(b.stats().subscribed_rooms >= 1);
}
