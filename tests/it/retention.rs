//! Retention (issue #14) as operators and clients meet it: the
//! `parloir retention` command, and archived conversations through a real
//! node's HTTP API. The rules themselves are the store contract's
//! (`store_contract::retention`).

use crate::common;
use crate::common::SECRET;

use chrono::TimeDelta;
use common::PostgresDatabase;
use parloir::Config;
use parloir::config::StoreConfig;
use parloir::domain::{ConversationId, Limits, NewConversation, UserId, now_millis};
use parloir::store::Store;
use secrecy::SecretString;

fn postgres(database: &PostgresDatabase) -> StoreConfig {
    StoreConfig::Postgres {
        url: SecretString::from(database.url().to_owned()),
    }
}

/// A conversation between `members` created `days` days ago.
async fn conversation_created_days_ago(
    store: &Store,
    members: [&str; 2],
    days: i64,
) -> ConversationId {
    let new = NewConversation::parse(
        &UserId::parse("user", members[0]).expect("a user"),
        &[members[1].to_owned()],
        None,
        &Limits::default(),
    )
    .expect("a conversation");
    store
        .conversations
        .create_conversation(
            ConversationId::new_random(),
            &new,
            now_millis() - TimeDelta::days(days),
        )
        .await
        .expect("create")
        .0
        .id
}

/// `parloir retention ARGS` on `database`; its standard output.
async fn retention_command(database: &PostgresDatabase, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_parloir"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database.url())
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .arg("retention")
        .args(args)
        .output()
        .await
        .expect("the parloir binary runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    assert!(
        out.status.success(),
        "parloir retention {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number on the output line of `action` (`archived 1 conversations...`).
fn reported(output: &str, action: &str) -> u64 {
    output
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(action)).then(|| words.next())?
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count for {action} in:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_command_counts_then_changes_and_says_what() {
    common::init_logs();
    let database = PostgresDatabase::create().await;
    let store = parloir::app::open_store(&Config::for_tests(postgres(&database), SECRET), true)
        .await
        .expect("the store opens and migrates");
    conversation_created_days_ago(&store, ["cli-alice", "cli-bob"], 365).await;
    conversation_created_days_ago(&store, ["cli-alice", "cli-carol"], 120).await;
    conversation_created_days_ago(&store, ["cli-alice", "cli-dave"], 10).await;

    let dry = retention_command(&database, &["--dry-run"]).await;
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(reported(&dry, "archived"), 2, "{dry}");
    assert_eq!(reported(&dry, "purged"), 0, "{dry}");
    assert_eq!(reported(&dry, "deleted"), 0, "{dry}");
    assert_eq!(
        reported(
            &retention_command(&database, &["--dry-run"]).await,
            "archived"
        ),
        2,
        "a dry run changes nothing"
    );

    let run = retention_command(&database, &[]).await;
    assert!(run.contains("completed"), "{run}");
    assert_eq!(reported(&run, "archived"), 2, "{run}");
    let after = retention_command(&database, &["--dry-run"]).await;
    assert_eq!(reported(&after, "archived"), 0, "{after}");
    database.drop_database().await;
}
