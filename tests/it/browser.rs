//! The demo page (`web/`, served by `src/http/devpage.rs`) in a real browser,
//! and the dev-mode-only rule around it.
//!
//! `two_users_talk_through_the_demo_page` starts a dev-mode node in process
//! and runs `tests/js/browser/demo.mjs` (playwright-core driving Debian's
//! Chromium): alice and bob sign in in two browser contexts and talk. It
//! needs `node`, `tests/js/node_modules` (`npm ci --prefix tests/js`) and
//! `/usr/bin/chromium` (`apt-get install chromium`); scripts/test provides
//! all three. A missing Chromium FAILS the test, it never skips. Screenshots
//! of both pages are saved under `target/browser-artifacts/`.
//! `CHROMIUM_PATH` points at another Chromium binary.
//!
//! To run the browser script by hand against any dev-mode node (the suffix
//! keeps its users apart from earlier runs):
//! `PARLOIR_URL=http://127.0.0.1:3000 PARLOIR_ARTIFACTS=$PWD/target/browser-artifacts
//! PARLOIR_USER_SUFFIX=-$RANDOM node tests/js/browser/demo.mjs`.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::TestNode;
use parloir::Config;
use parloir::config::{JwtKey, StoreConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// The whole browser run must finish within this.
const BROWSER_DEADLINE: Duration = Duration::from_secs(180);
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

/// `target/browser-artifacts`, wherever the target directory is.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("browser-artifacts")
}

/// A node in dev mode, as `cargo run` starts one: the HS256 secret counts as
/// generated, so the demo page and the dev sign-in exist.
fn dev_mode_config(dir: &Path) -> Config {
    let secret = format!("parloir-browser-{}", uuid::Uuid::new_v4().simple());
    let mut config = Config::for_tests(
        StoreConfig::Sqlite {
            path: dir.join("parloir.db"),
        },
        &secret,
    );
    config.dev_mode = true;
    // What `RawConfig::validate` derives from dev mode: `http://` attachments.
    config.limits.allow_http_attachments = true;
    config.jwt.key = JwtKey::Hs256 {
        secret: SecretString::from(secret),
        generated: true,
    };
    // As in production, so that the page's own idle stop (3 s) is what
    // clears the typing indicator, not the server's expiry.
    config.typing_ttl = Duration::from_secs(5);
    config
}

fn production_config(dir: &Path) -> Config {
    let secret = format!("parloir-browser-{}", uuid::Uuid::new_v4().simple());
    Config::for_tests(
        StoreConfig::Sqlite {
            path: dir.join("parloir.db"),
        },
        &secret,
    )
}

/// A response: status, headers (lower-cased names) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the node");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the node answers within 10 s")
        .expect("reading the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn production_mode_has_no_page_or_dev_sign_in() {
    common::init_logs();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = TestNode::spawn(production_config(dir.path())).await;
    for path in ["/", "/app.js", "/style.css", "/vendor/socket.io.min.js"] {
        let response = http(node.addr, "GET", path, &[], None).await;
        assert_eq!(response.status, 404, "GET {path} in production mode");
    }
    let origin = node.url();
    let response = http(
        node.addr,
        "POST",
        "/dev/token",
        &[("Origin", &origin)],
        Some(r#"{"userId":"mallory","role":"client","name":"Mallory"}"#),
    )
    .await;
    assert_eq!(response.status, 404, "POST /dev/token in production mode");
    assert!(
        !response.body.contains("token"),
        "no token in {}",
        response.body
    );
    node.shutdown().await.expect("the node drains cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_mode_serves_the_page_and_a_loopback_only_sign_in() {
    common::init_logs();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = TestNode::spawn(dev_mode_config(dir.path())).await;
    let addr = node.addr;

    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/vendor/socket.io.min.js", "text/javascript; charset=utf-8"),
    ] {
        let response = http(addr, "GET", path, &[], None).await;
        assert_eq!(response.status, 200, "GET {path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
    }
    let page = http(addr, "GET", "/", &[], None).await;
    assert!(page.body.contains("/vendor/socket.io.min.js"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|csp| csp.contains("script-src 'self'")),
        "the page has a CSP"
    );

    // The page's own origin gets a token the API accepts.
    let origin = node.url();
    let minted = http(
        addr,
        "POST",
        "/dev/token",
        &[("Origin", &origin)],
        Some(r#"{"userId":"alice","role":"salon","name":"Alice"}"#),
    )
    .await;
    assert_eq!(
        minted.status, 200,
        "POST /dev/token from the loopback page (the server must be served with \
         into_make_service_with_connect_info::<SocketAddr>()): {}",
        minted.body
    );
    assert_eq!(minted.header("cache-control"), Some("no-store"));
    let body = minted.json();
    assert_eq!(body["userId"], "alice");
    let token = body["token"].as_str().expect("a token");
    let bearer = format!("Bearer {token}");
    let unread = http(
        addr,
        "GET",
        "/api/v1/unread",
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(unread.status, 200, "the minted token is accepted");

    // Inputs are validated with the domain rules.
    for bad in [
        r#"{"userId":" alice","role":"client"}"#,
        r#"{"userId":"","role":"client"}"#,
        r#"{"userId":"alice","role":"admin"}"#,
        r#"{"userId":"alice"}"#,
        r#"not json"#,
    ] {
        let response = http(
            addr,
            "POST",
            "/dev/token",
            &[("Origin", &origin)],
            Some(bad),
        )
        .await;
        assert_eq!(response.status, 400, "{bad} -> {}", response.body);
        assert_eq!(response.json()["error"]["code"], "VALIDATION", "{bad}");
    }

    // Another site in the same browser gets nothing.
    let cross_site = http(
        addr,
        "POST",
        "/dev/token",
        &[("Origin", "http://evil.example")],
        Some(r#"{"userId":"alice","role":"client"}"#),
    )
    .await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    assert_eq!(cross_site.json()["error"]["code"], "FORBIDDEN");
    node.shutdown().await.expect("the node drains cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_users_talk_through_the_demo_page() {
    common::init_logs();
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "Chromium is not installed at {chromium}: `apt-get install -y chromium` (scripts/test \
         installs it; CHROMIUM_PATH points at another binary). The browser test does not skip."
    );
    let dir = js_dir();
    assert!(
        dir.join("node_modules").join("playwright-core").is_dir(),
        "{} has no playwright-core: run `npm ci --prefix tests/js` (scripts/test does)",
        dir.display()
    );
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("creating {}: {e}", artifacts.display()));

    let data = tempfile::tempdir().expect("a temporary directory");
    let node = TestNode::spawn(dev_mode_config(data.path())).await;

    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg("browser/demo.mjs")
        .env("PARLOIR_URL", node.url())
        .env("PARLOIR_ARTIFACTS", &artifacts)
        .env("CHROMIUM_PATH", &chromium)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting `node` (is Node.js 20+ installed?): {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let run = async {
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                line = stdout.next_line(), if out_open => match line.expect("reading node's stdout") {
                    Some(line) => println!("[browser] {line}"),
                    None => out_open = false,
                },
                line = stderr.next_line(), if err_open => match line.expect("reading node's stderr") {
                    Some(line) => eprintln!("[browser] {line}"),
                    None => err_open = false,
                },
            }
        }
        child.wait().await.expect("waiting for node")
    };
    let status = tokio::time::timeout(BROWSER_DEADLINE, run)
        .await
        .unwrap_or_else(|_| {
            panic!("the browser script did not finish within {BROWSER_DEADLINE:?}")
        });
    assert!(
        status.success(),
        "the browser script failed ({status}); screenshots in {}",
        artifacts.display()
    );
    node.shutdown().await.expect("the node drains cleanly");
}

/// A web app on another origin (allowed by `PARLOIR_CORS_ORIGINS`) calls
/// every method of the API from a real browser: each passes the preflight.
#[tokio::test(flavor = "multi_thread")]
async fn a_browser_on_an_allowed_origin_may_call_every_method_of_the_api() {
    common::init_logs();
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "Chromium is not installed at {chromium}"
    );
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut config = production_config(data.path());
    // Any origin (mirrored): the page's port is only known once it serves.
    config.cors = parloir::config::CorsOrigins::Any;
    let secret = match &config.jwt.key {
        JwtKey::Hs256 { secret, .. } => secret.expose_secret().to_owned(),
        _ => unreachable!("production_config signs with HS256"),
    };
    let node = TestNode::spawn(config).await;
    let (me, other) = (common::unique_user("app"), common::unique_user("friend"));
    let output = tokio::time::timeout(
        BROWSER_DEADLINE,
        Command::new("node")
            .current_dir(js_dir())
            .arg("browser/cors.mjs")
            .env("PARLOIR_API", node.url())
            .env("PARLOIR_TOKEN", common::mint_token(&secret, &me))
            .env("PARLOIR_OTHER_USER", &other)
            .env("CHROMIUM_PATH", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser run finishes")
    .expect("node runs the script");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON line ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    for (call, status) in report["results"].as_object().expect("results") {
        let status = status
            .as_u64()
            .unwrap_or_else(|| panic!("{call}: {status}"));
        assert!((200..300).contains(&status), "{call}: {status}: {report}");
    }
    node.shutdown().await.expect("the node drains cleanly");
}
