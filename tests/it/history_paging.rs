//! Property: for any number of messages (some soft-deleted) and any page
//! size, walking a conversation's history page by page yields every
//! non-deleted message exactly once, in order — backwards with `before` from
//! the newest page, forwards with `after` from the start, and forwards
//! through a `before` + `after` range. Checked on SQLite (a temp file per
//! case) and on Postgres (one throwaway database per run; needs
//! `DATABASE_URL`, like the contract suite).

use std::sync::Arc;

use parloir::domain::{
    ConversationId, Limits, MessageId, NewConversation, NewMessage, PageRequest, UserId, now_millis,
};
use parloir::store::{PostgresStore, SqliteStore, Store};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::common::PostgresDatabase;

/// One generated history: which of the messages get deleted, the page size,
/// and two picks for the bounds of a range walk.
#[derive(Debug, Clone)]
struct Scenario {
    deleted: Vec<bool>,
    limit: u32,
    range: (Index, Index),
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(prop::bool::weighted(0.2), 0..60),
        1u32..10,
        any::<(Index, Index)>(),
    )
        .prop_map(|(deleted, limit, range)| Scenario {
            deleted,
            limit,
            range,
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Walks pages of `request`, stepping with `step` until `has_more` is false,
/// and returns the ids in the order the walk met them (oldest first overall).
async fn walk(
    store: &Store,
    conversation: ConversationId,
    mut request: PageRequest,
    forwards: bool,
    max_pages: usize,
) -> Result<Vec<MessageId>, TestCaseError> {
    let mut seen = Vec::new();
    for _ in 0..max_pages {
        let page = store
            .messages
            .history(conversation, &request)
            .await
            .map_err(fail)?;
        let ids: Vec<MessageId> = page.messages.iter().map(|m| m.id).collect();
        prop_assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "a page is oldest first: {ids:?}"
        );
        if page.has_more {
            prop_assert_eq!(
                ids.len(),
                request.limit as usize,
                "only the last page may be short"
            );
        }
        if forwards {
            request.after = ids.last().copied().or(request.after);
            seen.extend(ids);
        } else {
            request.before = ids.first().copied().or(request.before);
            seen.splice(0..0, ids);
        }
        if !page.has_more {
            return Ok(seen);
        }
    }
    Err(fail(format!("walk did not end within {max_pages} pages")))
}

async fn check(store: Store, s: Scenario) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    // Fresh users per case, so cases sharing a database never meet.
    let tag = Uuid::new_v4().simple().to_string();
    let alice = UserId::parse("user", &format!("alice-{tag}")).map_err(fail)?;
    let bob = format!("bob-{tag}");
    let new = NewConversation::parse(&alice, &[bob], None, &limits).map_err(fail)?;
    let (conversation, _) = store
        .conversations
        .create_conversation(ConversationId::new_random(), &new, now_millis())
        .await
        .map_err(fail)?;
    let c = conversation.id;

    let mut all = Vec::with_capacity(s.deleted.len());
    for i in 0..s.deleted.len() {
        let m = NewMessage::parse(&c.to_string(), &format!("m{i}"), vec![], None, &limits)
            .map_err(fail)?;
        let (stored, _) = store
            .inserts
            .insert_message(MessageId::new_v7(), &alice, &m, now_millis())
            .await
            .map_err(fail)?;
        all.push(stored.id);
    }
    for (id, _) in all.iter().zip(&s.deleted).filter(|(_, deleted)| **deleted) {
        prop_assert!(
            store
                .messages
                .soft_delete_message(*id, now_millis())
                .await
                .map_err(fail)?
                .is_some()
        );
    }
    let kept: Vec<MessageId> = all
        .iter()
        .zip(&s.deleted)
        .filter(|(_, deleted)| !**deleted)
        .map(|(id, _)| *id)
        .collect();
    let max_pages = all.len() + 2;

    let backwards = walk(&store, c, PageRequest::latest(s.limit), false, max_pages).await?;
    prop_assert_eq!(&backwards, &kept, "backwards with before");

    let start = PageRequest {
        limit: s.limit,
        before: None,
        after: Some(MessageId::from_uuid(Uuid::nil())),
    };
    let forwards = walk(&store, c, start, true, max_pages).await?;
    prop_assert_eq!(&forwards, &kept, "forwards with after");

    if all.len() >= 2 {
        let (a, b) = (s.range.0.index(all.len()), s.range.1.index(all.len()));
        let (lo, hi) = (a.min(b), a.max(b));
        let range = PageRequest {
            limit: s.limit,
            before: Some(all[hi]),
            after: Some(all[lo]),
        };
        let inside: Vec<MessageId> = kept
            .iter()
            .copied()
            .filter(|id| *id > all[lo] && *id < all[hi])
            .collect();
        let walked = walk(&store, c, range, true, max_pages).await?;
        prop_assert_eq!(&walked, &inside, "forwards through after..before");
    }
    Ok(())
}

fn run(config: Config, case: impl Fn(Scenario) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&scenarios(), case) {
        match e {
            TestError::Fail(why, scenario) => panic!("{why}\nminimal failing case: {scenario:?}"),
            TestError::Abort(why) => panic!("aborted: {why}"),
        }
    }
}

#[test]
fn sqlite_history_pages_yield_each_message_once_in_order() {
    run(Config::with_cases(64), |s| {
        runtime().block_on(async {
            let dir = tempfile::tempdir().map_err(fail)?;
            let store = SqliteStore::open(&dir.path().join("history.db"))
                .await
                .map_err(fail)?;
            store.migrate().await.map_err(fail)?;
            check(Store::new(Arc::new(store)), s).await
        })
    });
}

#[test]
fn postgres_history_pages_yield_each_message_once_in_order() {
    let db = runtime().block_on(async {
        let db = PostgresDatabase::create().await;
        let store = PostgresStore::from_pool(
            PgPoolOptions::new()
                .max_connections(1)
                .connect(db.url())
                .await
                .expect("connect"),
        );
        store.migrate().await.expect("migrate");
        store.pool().close().await;
        db
    });
    run(Config::with_cases(16), |s| {
        runtime().block_on(async {
            // A pool belongs to the runtime that made it: one per case.
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect(db.url())
                .await
                .map_err(fail)?;
            let result = check(
                Store::new(Arc::new(PostgresStore::from_pool(pool.clone()))),
                s,
            )
            .await;
            pool.close().await;
            result
        })
    });
    runtime().block_on(db.drop_database());
}
