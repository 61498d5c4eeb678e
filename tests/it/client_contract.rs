//! The committed client contract (`docs/client/`) is what the Rust types
//! generate, the JS test suite type-checks a typed socket.io-client against
//! it, and the node serves the same AsyncAPI document. After changing a
//! payload type: `UPDATE_CLIENT_CONTRACT=1 scripts/test -- cargo nextest run
//! -E 'test(/^client_contract::/)'`, then review and commit the diff.

use std::path::{Path, PathBuf};

use parloir::Config;
use parloir::client_contract;
use parloir::config::StoreConfig;

use crate::common::{SECRET, TestNode};

fn committed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/client")
        .join(name)
}

/// Compares `generated` with the committed file, or rewrites the file when
/// `UPDATE_CLIENT_CONTRACT=1`.
fn check_committed(name: &str, generated: &str) {
    let path = committed(name);
    if std::env::var_os("UPDATE_CLIENT_CONTRACT").is_some_and(|v| v == "1") {
        std::fs::write(&path, generated).expect("the contract file is writable");
        return;
    }
    let on_disk =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        on_disk == generated,
        "{} differs from what the Rust types generate; rerun with UPDATE_CLIENT_CONTRACT=1 \
         and commit the diff.\n--- generated ---\n{generated}",
        path.display()
    );
}

#[test]
fn committed_typescript_definitions_match_the_rust_types() {
    check_committed("parloir.d.ts", &client_contract::typescript());
}

#[test]
fn committed_asyncapi_document_matches_the_rust_types() {
    let document = serde_json::to_string_pretty(&client_contract::asyncapi())
        .expect("the document serialises");
    check_committed("asyncapi.json", &format!("{document}\n"));
}

/// Checked against the official AsyncAPI 3.0.0 JSON Schema, from the
/// `@asyncapi/specs` package the JS suite installs.
#[test]
fn the_asyncapi_document_is_valid_asyncapi_3() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js/node_modules/@asyncapi/specs/schemas/3.0.0-without-$id.json");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `npm ci` in tests/js)", path.display())),
    )
    .expect("the AsyncAPI schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the AsyncAPI schema compiles");
    let document = client_contract::asyncapi();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid AsyncAPI 3.0.0:\n{}",
        errors.join("\n")
    );
}

/// `tsc --noEmit` on a small client typed with the committed definitions,
/// and on `@parloir/client` (`clients/js/src`) with an app typed against it:
/// the right payloads compile, and the `@ts-expect-error` lines prove that
/// wrong ones do not (an untyped socket would fail those).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_client_type_checks_against_the_definitions() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let tsc = js.join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "{} is missing: run `npm ci` in tests/js (scripts/test does)",
        tsc.display()
    );
    let out = tokio::process::Command::new(&tsc)
        .args(["--noEmit", "-p", "typed"])
        .current_dir(&js)
        .output()
        .await
        .expect("tsc runs");
    assert!(
        out.status.success(),
        "tsc found errors:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_serves_the_asyncapi_document_beside_the_openapi_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = TestNode::spawn(Config::for_tests(
        StoreConfig::Sqlite {
            path: dir.path().join("c.db"),
        },
        SECRET,
    ))
    .await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--fail",
            &format!("{}/api/v1/asyncapi.json", node.url()),
        ])
        .output()
        .await
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
    assert_eq!(served, client_contract::asyncapi());
    assert_eq!(served["asyncapi"], "3.0.0");
    node.shutdown().await.expect("the node drains");
}
