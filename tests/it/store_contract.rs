//! The `Store` contract: one behavioural suite, each case written once in
//! `mod contract` as `async fn case(store: Store)`, and run against
//! both implementations by `contract_tests!`: Postgres through
//! `#[sqlx::test]` (a fresh database per test; needs `DATABASE_URL`) and
//! SQLite in a fresh temporary file opened exactly as the node opens it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parloir::store::{
    Backend, Decorations, GroupCommitLimits, Health as _, PostgresStore, SqliteStore, Store,
    StoreError,
};
use sqlx::PgPool;
use tempfile::TempDir;

/// Every store is built with the notification outbox on, as a node with a
/// notification channel builds it: sends must behave the same with it.
fn pg_store(pool: PgPool) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::from_pool(pool).with_notification_outbox(true))
}

/// A migrated SQLite store in a temporary directory; the directory lives as
/// long as the returned guard.
async fn sqlite_store() -> (TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    // A nested path also proves `open` creates missing parent directories.
    let store = SqliteStore::open(&dir.path().join("data").join("parloir.db"))
        .await
        .expect("open sqlite store");
    store.migrate().await.expect("migrate sqlite store");
    (dir, Arc::new(store.with_notification_outbox(true)))
}

/// The store wrapped as the node wraps it: group commit, observation,
/// participant cache.
fn decorated<B: Backend>(backend: Arc<B>, concurrent_batches: usize) -> Store {
    let group_commit = GroupCommitLimits {
        statement_deadline: Some(Duration::from_secs(30)),
        max_batch: 16,
        concurrent_batches,
    };
    Store::decorated(
        backend,
        Decorations {
            system: "decorated",
            call_deadline: None,
            group_commit,
            participant_cache: 64,
            supervisor: parloir::supervisor::Supervisor::default(),
        },
    )
}

mod notification_cases;

mod contract {
    pub use super::notification_cases::*;
    use std::collections::{HashMap, HashSet};

    use chrono::{DateTime, TimeDelta, Utc};
    use futures_util::future::join_all;
    use parloir::domain::{
        Attachment, Change, ContactClaims, Conversation, ConversationId, Limits, ListCursor,
        LogEntry, Message, MessageId, NewConversation, NewMessage, PageRequest, UserId, now_millis,
    };
    use parloir::store::{Created, Inserted, MessageInsert, Store, StoreError};

    pub(super) fn user(name: &str) -> UserId {
        UserId::parse("user", name).expect("valid user id")
    }

    /// A validated create command: `members[0]` is the creator.
    fn new_conversation(members: &[&str], title: Option<&str>) -> NewConversation {
        let others: Vec<String> = members[1..].iter().map(|m| (*m).to_owned()).collect();
        NewConversation::parse(&user(members[0]), &others, title, &Limits::default())
            .expect("valid conversation")
    }

    fn text(conversation: ConversationId, content: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage::parse(
            &conversation.to_string(),
            content,
            vec![],
            client_id,
            &Limits::default(),
        )
        .expect("valid message")
    }

    fn at(base: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
        base + TimeDelta::seconds(seconds)
    }

    pub(super) async fn create(store: &Store, members: &[&str]) -> Conversation {
        create_at(store, members, now_millis()).await
    }

    async fn create_at(store: &Store, members: &[&str], now: DateTime<Utc>) -> Conversation {
        let (conversation, _) = store
            .conversations
            .create_conversation(
                ConversationId::new_random(),
                &new_conversation(members, None),
                now,
            )
            .await
            .expect("create conversation");
        conversation
    }

    pub(super) async fn send(
        store: &Store,
        conversation: ConversationId,
        from: &str,
        content: &str,
    ) -> Message {
        send_at(store, conversation, from, content, now_millis()).await
    }

    async fn send_at(
        store: &Store,
        conversation: ConversationId,
        from: &str,
        content: &str,
        now: DateTime<Utc>,
    ) -> Message {
        let (message, inserted) = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user(from),
                &text(conversation, content, None),
                now,
            )
            .await
            .expect("insert message");
        assert_eq!(inserted, Inserted::New);
        message
    }

    /// Sends `n` messages from alternating senders and returns them oldest first.
    async fn send_many(store: &Store, conversation: ConversationId, n: usize) -> Vec<Message> {
        let mut sent = Vec::with_capacity(n);
        for i in 0..n {
            let from = if i % 2 == 0 { "alice" } else { "bob" };
            sent.push(send(store, conversation, from, &format!("message {i}")).await);
        }
        sent
    }

    fn ids(messages: &[Message]) -> Vec<MessageId> {
        messages.iter().map(|m| m.id).collect()
    }

    async fn page(
        store: &Store,
        conversation: ConversationId,
        limit: u32,
        before: Option<&Message>,
        after: Option<&Message>,
    ) -> (Vec<MessageId>, bool) {
        let request = PageRequest {
            limit,
            before: before.map(|m| m.id),
            after: after.map(|m| m.id),
        };
        let page = store
            .messages
            .history(conversation, &request)
            .await
            .expect("history");
        (ids(&page.messages), page.has_more)
    }

    pub async fn ping_succeeds(store: Store) {
        store.health.ping().await.expect("ping");
    }

    pub async fn created_conversation_can_be_read_back(store: Store) {
        let now = now_millis();
        let id = ConversationId::new_random();
        let new = new_conversation(&["carol", "alice", "bob"], Some("Team"));
        let (created, how) = store
            .conversations
            .create_conversation(id, &new, now)
            .await
            .expect("create");
        assert_eq!(how, Created::New);
        assert_eq!(created.id, id);
        assert_eq!(
            created.participant_ids,
            vec![user("alice"), user("bob"), user("carol")]
        );
        assert_eq!(created.title.as_deref(), Some("Team"));
        assert_eq!(created.created_at, now);
        assert_eq!(created.last_message_at, None);

        let read = store
            .conversations
            .conversation(id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(read, created);
        assert_eq!(
            store
                .conversations
                .conversation(ConversationId::new_random())
                .await
                .expect("read"),
            None
        );
    }

    pub async fn two_person_conversation_is_unique_whatever_the_member_order(store: Store) {
        let first_at = now_millis();
        let (first, how) = store
            .conversations
            .create_conversation(
                ConversationId::new_random(),
                &new_conversation(&["alice", "bob"], None),
                first_at,
            )
            .await
            .expect("first create");
        assert_eq!(how, Created::New);

        let (second, how) = store
            .conversations
            .create_conversation(
                ConversationId::new_random(),
                &new_conversation(&["bob", "alice"], Some("ignored")),
                at(first_at, 60),
            )
            .await
            .expect("second create");
        assert_eq!(how, Created::Existing);
        assert_eq!(
            second, first,
            "the stored conversation, not the new request"
        );

        let (other, how) = store
            .conversations
            .create_conversation(
                ConversationId::new_random(),
                &new_conversation(&["alice", "carol"], None),
                first_at,
            )
            .await
            .expect("another pair");
        assert_eq!(how, Created::New);
        assert_ne!(other.id, first.id);
    }

    pub async fn concurrent_creates_of_the_same_pair_make_one_conversation(store: Store) {
        let tasks = (0..20).map(|i| {
            let store = store.clone();
            let members: &[&str] = if i % 2 == 0 {
                &["alice", "bob"]
            } else {
                &["bob", "alice"]
            };
            let new = new_conversation(members, None);
            tokio::spawn(async move {
                store
                    .conversations
                    .create_conversation(ConversationId::new_random(), &new, now_millis())
                    .await
            })
        });
        let results: Vec<(Conversation, Created)> = join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.expect("task").expect("create"))
            .collect();

        let new_count = results
            .iter()
            .filter(|(_, how)| *how == Created::New)
            .count();
        assert_eq!(new_count, 1, "exactly one create made the conversation");
        let distinct: HashSet<ConversationId> = results.iter().map(|(c, _)| c.id).collect();
        assert_eq!(distinct.len(), 1, "every caller got the same conversation");
        for (conversation, _) in &results {
            assert_eq!(
                conversation.participant_ids,
                vec![user("alice"), user("bob")]
            );
        }
        let listed = store
            .conversations
            .list_conversations(&user("alice"), 100, None)
            .await
            .expect("list");
        assert_eq!(listed.len(), 1);
    }

    pub async fn group_conversations_are_never_deduplicated(store: Store) {
        let members = ["alice", "bob", "carol"];
        let (a, how_a) = store
            .conversations
            .create_conversation(
                ConversationId::new_random(),
                &new_conversation(&members, None),
                now_millis(),
            )
            .await
            .expect("first group");
        let (b, how_b) = store
            .conversations
            .create_conversation(
                ConversationId::new_random(),
                &new_conversation(&members, None),
                now_millis(),
            )
            .await
            .expect("second group");
        assert_eq!((how_a, how_b), (Created::New, Created::New));
        assert_ne!(a.id, b.id);
        assert_eq!(a.participant_ids, b.participant_ids);
    }

    pub async fn participants_and_membership_are_reported(store: Store) {
        let c = create(&store, &["dave", "bob", "alice"]).await;
        assert_eq!(
            store
                .participants
                .participants(c.id)
                .await
                .expect("participants"),
            vec![user("alice"), user("bob"), user("dave")],
            "sorted"
        );
        assert!(
            store
                .participants
                .is_participant(c.id, &user("bob"))
                .await
                .expect("member")
        );
        assert!(
            !store
                .participants
                .is_participant(c.id, &user("mallory"))
                .await
                .expect("non-member")
        );

        let unknown = ConversationId::new_random();
        assert!(
            !store
                .participants
                .is_participant(unknown, &user("alice"))
                .await
                .expect("unknown")
        );
        assert!(
            store
                .participants
                .participants(unknown)
                .await
                .expect("unknown")
                .is_empty()
        );
    }

    pub async fn inserted_message_is_returned_stored_and_bumps_activity(store: Store) {
        let created_at = now_millis();
        let c = create_at(&store, &["alice", "bob"], created_at).await;
        let attachment = Attachment {
            url: "https://cdn.example/cat.jpg".into(),
            mime_type: "image/jpeg".into(),
            name: Some("cat.jpg".into()),
            size: Some(1234),
        };
        let new = NewMessage::parse(
            &c.id.to_string(),
            "  hello  ",
            vec![attachment.clone()],
            Some("c-1"),
            &Limits::default(),
        )
        .expect("valid");
        let id = MessageId::new_v7();
        let sent_at = at(created_at, 5);
        let (message, how) = store
            .inserts
            .insert_message(id, &user("alice"), &new, sent_at)
            .await
            .expect("insert");
        assert_eq!(how, Inserted::New);
        assert_eq!(message.id, id);
        assert_eq!(message.conversation_id, c.id);
        assert_eq!(message.sender_id, user("alice"));
        assert_eq!(message.content, "hello");
        assert_eq!(message.attachments, vec![attachment]);
        assert_eq!(
            message.client_message_id.as_ref().map(|c| c.as_str()),
            Some("c-1")
        );
        assert_eq!(message.created_at, sent_at);

        assert_eq!(
            store.messages.message(id).await.expect("by id"),
            Some(message.clone())
        );
        assert_eq!(
            store
                .messages
                .message(MessageId::new_v7())
                .await
                .expect("unknown"),
            None
        );
        let page = store
            .messages
            .history(c.id, &PageRequest::latest(50))
            .await
            .expect("history");
        assert_eq!(page.messages, vec![message]);
        assert!(!page.has_more);
        let conversation = store
            .conversations
            .conversation(c.id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(conversation.last_message_at, Some(sent_at));
    }

    pub async fn repeated_client_message_id_returns_the_stored_message(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let (first, how) = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("alice"),
                &text(c.id, "first", Some("k")),
                now_millis(),
            )
            .await
            .expect("first");
        assert_eq!(how, Inserted::New);
        let (again, how) = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("alice"),
                &text(c.id, "retry", Some("k")),
                now_millis(),
            )
            .await
            .expect("repeat");
        assert_eq!(how, Inserted::Duplicate);
        assert_eq!(again, first, "the stored message, not the repeat");
        let page = store
            .messages
            .history(c.id, &PageRequest::latest(50))
            .await
            .expect("history");
        assert_eq!(ids(&page.messages), vec![first.id]);
    }

    pub async fn concurrent_inserts_with_one_client_message_id_store_one_message(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let tasks = (0..50).map(|i| {
            let store = store.clone();
            let new = text(c.id, &format!("attempt {i}"), Some("same-key"));
            tokio::spawn(async move {
                store
                    .inserts
                    .insert_message(MessageId::new_v7(), &user("alice"), &new, now_millis())
                    .await
            })
        });
        let results: Vec<(Message, Inserted)> = join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.expect("task").expect("insert"))
            .collect();

        assert_eq!(
            results
                .iter()
                .filter(|(_, how)| *how == Inserted::New)
                .count(),
            1
        );
        let distinct: HashSet<MessageId> = results.iter().map(|(m, _)| m.id).collect();
        assert_eq!(distinct.len(), 1, "every caller got the same message");
        let page = store
            .messages
            .history(c.id, &PageRequest::latest(100))
            .await
            .expect("history");
        assert_eq!(
            ids(&page.messages),
            distinct.into_iter().collect::<Vec<_>>()
        );
    }

    /// The whole log of a conversation, checked to number 1.. without holes.
    async fn whole_log(store: &Store, conversation: ConversationId) -> Vec<LogEntry> {
        let page = store
            .log
            .log_after(conversation, 0, 10_000)
            .await
            .expect("log")
            .expect("the conversation exists");
        let numbers: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        let expected: Vec<u64> = (1..=page.latest_seq).collect();
        assert_eq!(numbers, expected, "numbers 1..=latest without holes");
        assert!(!page.has_more);
        page.entries
    }

    pub async fn every_change_is_logged_with_the_next_number(store: Store) {
        let base = now_millis();
        let c = create(&store, &["alice", "bob"]).await;
        let m1 = send(&store, c.id, "alice", "one").await;
        let m2 = send(&store, c.id, "bob", "two").await;
        assert_eq!((m1.seq, m2.seq), (2, 3));
        let moved = store
            .cursors
            .advance_read_cursor(c.id, &user("bob"), m1.id, at(base, 1))
            .await
            .expect("read");
        assert_eq!(moved.seq, Some(4));
        let again = store
            .cursors
            .advance_read_cursor(c.id, &user("bob"), m1.id, at(base, 2))
            .await
            .expect("read again");
        assert_eq!(again.seq, None, "a cursor that does not move logs nothing");
        let deleted = store
            .messages
            .soft_delete_message(m1.id, at(base, 3))
            .await
            .expect("delete");
        assert_eq!(deleted, Some(5));
        let log = whole_log(&store, c.id).await;
        assert!(matches!(&log[0].change, Change::Created(created) if created.id == c.id));
        match &log[1].change {
            Change::Message(m) => {
                assert_eq!(m.id, m1.id);
                assert!(m.deleted_at.is_some(), "replayed as deleted since");
                assert!(m.content.is_empty(), "without its content");
            }
            other => panic!("a message: {other:?}"),
        }
        assert!(
            matches!(&log[2].change, Change::Message(m) if m.id == m2.id && m.content == "two")
        );
        assert_eq!(
            log[3].change,
            Change::Read {
                user: user("bob"),
                message: m1.id,
                at: at(base, 1)
            }
        );
        assert_eq!(log[4].change, Change::Deleted { message: m1.id });
        let tail = store
            .log
            .log_after(c.id, 2, 2)
            .await
            .expect("log")
            .expect("exists");
        assert_eq!(
            tail.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(tail.has_more);
        assert_eq!(tail.latest_seq, 5);
        assert_eq!(tail.floor, 0);
        assert!(
            store
                .log
                .log_after(ConversationId::new_random(), 0, 10)
                .await
                .expect("log")
                .is_none()
        );
        let latest = store
            .log
            .latest_seqs(&[c.id, ConversationId::new_random()])
            .await
            .expect("latest");
        assert_eq!(latest, HashMap::from([(c.id, 5)]));
    }

    /// Batches with several sends to one conversation, concurrent batches
    /// and concurrent repeats of a clientMessageId: the numbers stay
    /// consecutive and without holes, and each message has its own.
    pub async fn concurrent_sends_number_the_log_without_holes(store: Store) {
        let c = create(&store, &["alice", "bob", "carol"]).await;
        let tasks = (0..60).map(|i| {
            let store = store.clone();
            let sender = ["alice", "bob", "carol"][i % 3];
            // Every fifth is a repeat of one key: one message, the rest duplicates.
            let key = (i % 5 == 0).then_some("shared-key");
            let new = text(c.id, &format!("message {i}"), key);
            tokio::spawn(async move {
                let user = if key.is_some() {
                    user("alice")
                } else {
                    user(sender)
                };
                store
                    .inserts
                    .insert_message(MessageId::new_v7(), &user, &new, now_millis())
                    .await
            })
        });
        let results: Vec<(Message, Inserted)> = join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.expect("task").expect("insert"))
            .collect();
        let new: Vec<&Message> = results
            .iter()
            .filter(|(_, how)| *how == Inserted::New)
            .map(|(m, _)| m)
            .collect();
        assert_eq!(
            new.len(),
            49,
            "48 distinct messages and one of the shared key"
        );
        let numbers: HashSet<u64> = new.iter().map(|m| m.seq).collect();
        assert_eq!(numbers.len(), 49, "each message its own number");
        let log = whole_log(&store, c.id).await;
        let messages = log
            .iter()
            .filter(|e| matches!(e.change, Change::Message(_)))
            .count();
        assert_eq!(messages, 49);
        assert!(
            log.iter().all(|e| matches!(
                e.change,
                Change::Created(_) | Change::Message(_) | Change::Skipped
            )),
            "the rest are numbers skipped by a lost race"
        );
    }

    pub async fn client_message_id_reused_in_another_conversation_is_refused(store: Store) {
        let first = create(&store, &["alice", "bob"]).await;
        let second = create(&store, &["alice", "carol"]).await;
        store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("alice"),
                &text(first.id, "hi", Some("k")),
                now_millis(),
            )
            .await
            .expect("first use");
        let reused = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("alice"),
                &text(second.id, "hi", Some("k")),
                now_millis(),
            )
            .await;
        assert!(
            matches!(reused, Err(StoreError::ClientMessageIdReused)),
            "got {reused:?}"
        );
        let page = store
            .messages
            .history(second.id, &PageRequest::latest(50))
            .await
            .expect("history");
        assert!(
            page.messages.is_empty(),
            "nothing stored in the other conversation"
        );
    }

    /// One batch holding every kind of outcome answers each message as
    /// inserting them one after the other would have.
    pub async fn batched_inserts_answer_each_message_in_order(store: Store) {
        let base = now_millis();
        let first = create_at(&store, &["alice", "bob"], base).await;
        let second = create_at(&store, &["alice", "carol"], base).await;
        let (earlier, _) = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("alice"),
                &text(first.id, "earlier", Some("k-earlier")),
                at(base, 1),
            )
            .await
            .expect("insert earlier");
        let item =
            |conversation: ConversationId, from: &str, body: &str, key: Option<&str>, s: i64| {
                MessageInsert {
                    id: MessageId::new_v7(),
                    sender: user(from),
                    message: text(conversation, body, key),
                    now: at(base, s),
                }
            };
        let batch = vec![
            item(first.id, "alice", "plain", None, 2),
            item(second.id, "alice", "keyed", Some("k-new"), 3),
            item(first.id, "bob", "again", Some("k-new"), 4),
            item(second.id, "alice", "repeat in batch", Some("k-new"), 5),
            item(first.id, "alice", "repeat of stored", Some("k-earlier"), 6),
            item(second.id, "alice", "reused elsewhere", Some("k-earlier"), 7),
            item(second.id, "carol", "latest", None, 9),
        ];
        let outcomes = store
            .inserts
            .insert_messages(&batch)
            .await
            .expect("batch commits");
        assert_eq!(outcomes.len(), batch.len());
        let ok = |i: usize| outcomes[i].as_ref().expect("stored or found").clone();

        for i in [0, 1, 2, 6] {
            let (message, how) = ok(i);
            assert_eq!(how, Inserted::New, "item {i}");
            assert_eq!(message.id, batch[i].id);
            assert_eq!(message.content, batch[i].message.content.as_str());
            assert_eq!(message.sender_id, batch[i].sender);
            assert_eq!(message.created_at, batch[i].now);
        }
        let (repeat, how) = ok(3);
        assert_eq!((repeat.id, how), (batch[1].id, Inserted::Duplicate));
        let (repeat, how) = ok(4);
        assert_eq!((repeat.id, how), (earlier.id, Inserted::Duplicate));
        assert!(matches!(
            outcomes[5],
            Err(StoreError::ClientMessageIdReused)
        ));

        let history = |c: ConversationId| {
            let store = store.clone();
            async move {
                let page = store
                    .messages
                    .history(c, &PageRequest::latest(100))
                    .await
                    .expect("history");
                page.messages.into_iter().map(|m| m.id).collect::<Vec<_>>()
            }
        };
        let mut in_first = vec![earlier.id, batch[0].id, batch[2].id];
        in_first.sort();
        assert_eq!(history(first.id).await, in_first);
        let mut in_second = vec![batch[1].id, batch[6].id];
        in_second.sort();
        assert_eq!(history(second.id).await, in_second);

        // Activity moved to each conversation's newest stored message.
        let list = store
            .conversations
            .list_conversations(&user("alice"), 10, None)
            .await
            .expect("list");
        let activity: HashMap<ConversationId, Option<DateTime<Utc>>> = list
            .iter()
            .map(|s| (s.conversation.id, s.conversation.last_message_at))
            .collect();
        assert_eq!(activity[&first.id], Some(at(base, 4)));
        assert_eq!(activity[&second.id], Some(at(base, 9)));
        assert!(
            store
                .inserts
                .insert_messages(&[])
                .await
                .expect("empty batch")
                .is_empty()
        );
    }

    pub async fn client_message_ids_of_different_senders_are_independent(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let (from_alice, how_a) = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("alice"),
                &text(c.id, "a", Some("k")),
                now_millis(),
            )
            .await
            .expect("alice");
        let (from_bob, how_b) = store
            .inserts
            .insert_message(
                MessageId::new_v7(),
                &user("bob"),
                &text(c.id, "b", Some("k")),
                now_millis(),
            )
            .await
            .expect("bob");
        assert_eq!((how_a, how_b), (Inserted::New, Inserted::New));
        assert_ne!(from_alice.id, from_bob.id);
        // Messages without a client_message_id never collide either.
        send(&store, c.id, "alice", "x").await;
        send(&store, c.id, "alice", "y").await;
        let page = store
            .messages
            .history(c.id, &PageRequest::latest(50))
            .await
            .expect("history");
        assert_eq!(page.messages.len(), 4);
    }

    pub async fn history_without_bounds_returns_the_newest_page_oldest_first(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        assert_eq!(
            page(&store, c.id, 10, None, None).await,
            (vec![], false),
            "empty conversation"
        );
        let m = send_many(&store, c.id, 5).await;
        // Another conversation's messages never leak in.
        let other = create(&store, &["alice", "carol"]).await;
        send_many(&store, other.id, 3).await;

        assert_eq!(
            page(&store, c.id, 3, None, None).await,
            (ids(&m[2..]), true)
        );
        assert_eq!(page(&store, c.id, 5, None, None).await, (ids(&m), false));
        assert_eq!(page(&store, c.id, 100, None, None).await, (ids(&m), false));
    }

    pub async fn history_before_returns_the_older_messages(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send_many(&store, c.id, 5).await;
        assert_eq!(
            page(&store, c.id, 2, Some(&m[3]), None).await,
            (ids(&m[1..3]), true)
        );
        assert_eq!(
            page(&store, c.id, 2, Some(&m[2]), None).await,
            (ids(&m[0..2]), false)
        );
        assert_eq!(
            page(&store, c.id, 10, Some(&m[4]), None).await,
            (ids(&m[0..4]), false)
        );
        assert_eq!(
            page(&store, c.id, 10, Some(&m[0]), None).await,
            (vec![], false)
        );
    }

    pub async fn history_after_returns_the_newer_messages(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send_many(&store, c.id, 5).await;
        assert_eq!(
            page(&store, c.id, 2, None, Some(&m[0])).await,
            (ids(&m[1..3]), true)
        );
        assert_eq!(
            page(&store, c.id, 2, None, Some(&m[2])).await,
            (ids(&m[3..5]), false)
        );
        assert_eq!(
            page(&store, c.id, 10, None, Some(&m[4])).await,
            (vec![], false)
        );
    }

    pub async fn history_between_after_and_before_returns_the_oldest_of_the_range(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send_many(&store, c.id, 6).await;
        assert_eq!(
            page(&store, c.id, 2, Some(&m[5]), Some(&m[0])).await,
            (ids(&m[1..3]), true)
        );
        assert_eq!(
            page(&store, c.id, 4, Some(&m[5]), Some(&m[0])).await,
            (ids(&m[1..5]), false)
        );
        assert_eq!(
            page(&store, c.id, 10, Some(&m[2]), Some(&m[1])).await,
            (vec![], false)
        );
        assert_eq!(
            page(&store, c.id, 10, Some(&m[1]), Some(&m[3])).await,
            (vec![], false),
            "empty range"
        );
    }

    pub async fn history_skips_deleted_messages(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send_many(&store, c.id, 5).await;
        assert!(
            store
                .messages
                .soft_delete_message(m[3].id, now_millis())
                .await
                .expect("delete")
                .is_some()
        );
        assert!(
            store
                .messages
                .soft_delete_message(m[1].id, now_millis())
                .await
                .expect("delete")
                .is_some()
        );
        let kept = vec![m[0].id, m[2].id, m[4].id];
        assert_eq!(
            page(&store, c.id, 10, None, None).await,
            (kept.clone(), false)
        );
        assert_eq!(
            page(&store, c.id, 2, None, None).await,
            (kept[1..].to_vec(), true)
        );
        assert_eq!(
            page(&store, c.id, 1, Some(&m[4]), None).await,
            (vec![m[2].id], true)
        );
        assert_eq!(
            page(&store, c.id, 1, None, Some(&m[2])).await,
            (vec![m[4].id], false)
        );
        // A deleted message still works as a bound.
        assert_eq!(
            page(&store, c.id, 10, Some(&m[3]), Some(&m[1])).await,
            (vec![m[2].id], false)
        );
    }

    pub async fn soft_delete_hides_the_message_and_happens_once(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send(&store, c.id, "alice", "oops").await;
        assert!(
            store
                .messages
                .soft_delete_message(m.id, now_millis())
                .await
                .expect("first delete")
                .is_some()
        );
        assert!(
            store
                .messages
                .soft_delete_message(m.id, now_millis())
                .await
                .expect("second delete")
                .is_none()
        );
        assert_eq!(store.messages.message(m.id).await.expect("read"), None);
        assert!(
            store
                .messages
                .soft_delete_message(MessageId::new_v7(), now_millis())
                .await
                .expect("unknown")
                .is_none()
        );
    }

    pub async fn read_cursor_starts_empty_and_records_the_read(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send(&store, c.id, "alice", "hi").await;
        let empty = store
            .cursors
            .read_cursor(c.id, &user("bob"))
            .await
            .expect("cursor");
        assert_eq!((empty.message_id, empty.read_at), (None, None));

        let read_at = now_millis();
        let moved = store
            .cursors
            .advance_read_cursor(c.id, &user("bob"), m.id, read_at)
            .await
            .expect("advance");
        assert!(moved.moved);
        assert_eq!(
            (moved.cursor.message_id, moved.cursor.read_at),
            (Some(m.id), Some(read_at))
        );
        assert_eq!(
            store
                .cursors
                .read_cursor(c.id, &user("bob"))
                .await
                .expect("cursor"),
            moved.cursor
        );
        let alice = store
            .cursors
            .read_cursor(c.id, &user("alice"))
            .await
            .expect("cursor");
        assert_eq!(alice.message_id, None, "cursors are per participant");
    }

    pub async fn read_cursor_never_moves_backwards(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send_many(&store, c.id, 4).await;
        let bob = user("bob");
        let t0 = now_millis();

        let first = store
            .cursors
            .advance_read_cursor(c.id, &bob, m[2].id, t0)
            .await
            .expect("advance");
        assert!(first.moved);
        let back = store
            .cursors
            .advance_read_cursor(c.id, &bob, m[1].id, at(t0, 1))
            .await
            .expect("back");
        assert!(!back.moved);
        assert_eq!(back.cursor, first.cursor, "unchanged, read_at included");
        let same = store
            .cursors
            .advance_read_cursor(c.id, &bob, m[2].id, at(t0, 2))
            .await
            .expect("same");
        assert!(!same.moved);
        assert_eq!(same.cursor, first.cursor);
        let forward = store
            .cursors
            .advance_read_cursor(c.id, &bob, m[3].id, at(t0, 3))
            .await
            .expect("forward");
        assert!(forward.moved);
        assert_eq!(
            (forward.cursor.message_id, forward.cursor.read_at),
            (Some(m[3].id), Some(at(t0, 3)))
        );
    }

    pub async fn concurrent_cursor_advances_end_at_the_newest(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        let m = send_many(&store, c.id, 20).await;
        let newest = m[19].id;
        // One device reads oldest to newest, the other newest to oldest.
        let upward: Vec<MessageId> = ids(&m);
        let downward: Vec<MessageId> = upward.iter().rev().copied().collect();
        let tasks = [upward, downward].map(|order| {
            let store = store.clone();
            tokio::spawn(async move {
                for to in order {
                    store
                        .cursors
                        .advance_read_cursor(c.id, &user("bob"), to, now_millis())
                        .await
                        .expect("advance");
                }
            })
        });
        for joined in join_all(tasks).await {
            joined.expect("task");
        }
        let cursor = store
            .cursors
            .read_cursor(c.id, &user("bob"))
            .await
            .expect("cursor");
        assert_eq!(cursor.message_id, Some(newest));
    }

    pub async fn latest_message_id_ignores_deleted_messages(store: Store) {
        let c = create(&store, &["alice", "bob"]).await;
        assert_eq!(
            store.messages.latest_message_id(c.id).await.expect("empty"),
            None
        );
        let m = send_many(&store, c.id, 3).await;
        send_many(&store, create(&store, &["alice", "carol"]).await.id, 1).await;
        assert_eq!(
            store
                .messages
                .latest_message_id(c.id)
                .await
                .expect("latest"),
            Some(m[2].id)
        );
        store
            .messages
            .soft_delete_message(m[2].id, now_millis())
            .await
            .expect("delete");
        assert_eq!(
            store
                .messages
                .latest_message_id(c.id)
                .await
                .expect("latest"),
            Some(m[1].id)
        );
        store
            .messages
            .soft_delete_message(m[0].id, now_millis())
            .await
            .expect("delete");
        store
            .messages
            .soft_delete_message(m[1].id, now_millis())
            .await
            .expect("delete");
        assert_eq!(
            store
                .messages
                .latest_message_id(c.id)
                .await
                .expect("latest"),
            None
        );
    }

    pub async fn unread_counts_are_later_messages_from_others(store: Store) {
        let with_bob = create(&store, &["alice", "bob"]).await;
        let group = create(&store, &["alice", "bob", "carol"]).await;
        let quiet = create(&store, &["alice", "dave"]).await;
        let b1 = send(&store, with_bob.id, "bob", "1").await;
        let _a1 = send(&store, with_bob.id, "alice", "mine").await;
        let b2 = send(&store, with_bob.id, "bob", "2").await;
        let b3 = send(&store, with_bob.id, "bob", "3").await;
        send(&store, group.id, "carol", "g1").await;
        send(&store, group.id, "bob", "g2").await;
        send(&store, quiet.id, "alice", "only mine").await;

        let alice = user("alice");
        let counts = store.cursors.unread_counts(&alice).await.expect("counts");
        assert_eq!(
            counts,
            HashMap::from([(with_bob.id, 3), (group.id, 2)]),
            "zero counts omitted"
        );

        store
            .cursors
            .advance_read_cursor(with_bob.id, &alice, b1.id, now_millis())
            .await
            .expect("read");
        let counts = store.cursors.unread_counts(&alice).await.expect("counts");
        assert_eq!(
            counts.get(&with_bob.id),
            Some(&2),
            "own message after the cursor not counted"
        );

        store
            .messages
            .soft_delete_message(b3.id, now_millis())
            .await
            .expect("delete");
        assert_eq!(
            store
                .cursors
                .unread_counts(&alice)
                .await
                .expect("counts")
                .get(&with_bob.id),
            Some(&1)
        );
        store
            .cursors
            .advance_read_cursor(with_bob.id, &alice, b2.id, now_millis())
            .await
            .expect("read");
        assert_eq!(
            store.cursors.unread_counts(&alice).await.expect("counts"),
            HashMap::from([(group.id, 2)])
        );

        let bob = store
            .cursors
            .unread_counts(&user("bob"))
            .await
            .expect("counts");
        assert_eq!(bob, HashMap::from([(with_bob.id, 1), (group.id, 1)]));
        assert!(
            store
                .cursors
                .unread_counts(&user("nobody"))
                .await
                .expect("counts")
                .is_empty()
        );
    }

    pub async fn unread_in_conversation_counts_every_participant(store: Store) {
        let group = create(&store, &["alice", "bob", "carol"]).await;
        let elsewhere = create(&store, &["alice", "bob"]).await;
        let a1 = send(&store, group.id, "alice", "1").await;
        let a2 = send(&store, group.id, "alice", "2").await;
        send(&store, group.id, "bob", "3").await;
        send(&store, elsewhere.id, "bob", "not this conversation").await;
        store
            .cursors
            .advance_read_cursor(group.id, &user("carol"), a1.id, now_millis())
            .await
            .expect("read");
        let sorted = |mut v: Vec<(UserId, u64)>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(
                store
                    .cursors
                    .unread_in_conversation(group.id)
                    .await
                    .expect("counts")
            ),
            vec![(user("alice"), 1), (user("bob"), 2), (user("carol"), 2)],
            "own messages and read ones not counted, other conversations ignored"
        );
        store
            .messages
            .soft_delete_message(a2.id, now_millis())
            .await
            .expect("delete");
        let after = sorted(
            store
                .cursors
                .unread_in_conversation(group.id)
                .await
                .expect("counts"),
        );
        assert_eq!(
            after,
            vec![(user("alice"), 1), (user("bob"), 1), (user("carol"), 1)],
            "a deleted message is not counted"
        );
        for (who, n) in &after {
            assert_eq!(
                store
                    .cursors
                    .unread_counts(who)
                    .await
                    .expect("counts")
                    .get(&group.id)
                    .copied()
                    .unwrap_or(0),
                *n,
                "{who}: as unread_counts counts"
            );
        }
        let quiet = create(&store, &["dave", "erin"]).await;
        assert_eq!(
            sorted(
                store
                    .cursors
                    .unread_in_conversation(quiet.id)
                    .await
                    .expect("counts")
            ),
            vec![(user("dave"), 0), (user("erin"), 0)],
            "zeros included"
        );
        assert!(
            store
                .cursors
                .unread_in_conversation(ConversationId::new_random())
                .await
                .expect("counts")
                .is_empty()
        );
    }

    pub async fn conversation_list_orders_by_activity_and_pages_each_once(store: Store) {
        let t0 = now_millis();
        let mut made = Vec::new();
        // Seven conversations; two pairs share a created_at (ties go by id, descending).
        for (i, seconds) in [0, 1, 1, 2, 3, 3, 4].into_iter().enumerate() {
            let other = format!("user{i}");
            made.push(create_at(&store, &["alice", &other], at(t0, seconds)).await);
        }
        // Activity moves the oldest conversation to the top and one to a tie.
        send_at(&store, made[0].id, "user0", "late", at(t0, 10)).await;
        send_at(&store, made[3].id, "alice", "tie", at(t0, 4)).await;
        // Someone else's conversation never shows.
        create_at(&store, &["bob", "carol"], at(t0, 20)).await;

        let activity = |c: &Conversation| c.last_message_at.unwrap_or(c.created_at);
        let mut expected: Vec<(DateTime<Utc>, ConversationId)> = Vec::new();
        for c in &made {
            let fresh = store
                .conversations
                .conversation(c.id)
                .await
                .expect("read")
                .expect("exists");
            expected.push((activity(&fresh), fresh.id));
        }
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<ConversationId> = expected.into_iter().map(|(_, id)| id).collect();

        let alice = user("alice");
        let everything = store
            .conversations
            .list_conversations(&alice, 100, None)
            .await
            .expect("list");
        assert_eq!(
            everything
                .iter()
                .map(|s| s.conversation.id)
                .collect::<Vec<_>>(),
            expected
        );

        let mut walked = Vec::new();
        let mut cursor = None;
        for _ in 0..10 {
            let page = store
                .conversations
                .list_conversations(&alice, 3, cursor)
                .await
                .expect("page");
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            cursor = Some(ListCursor {
                activity_at: activity(&last.conversation),
                id: last.conversation.id,
            });
            walked.extend(page.iter().map(|s| s.conversation.id));
        }
        assert_eq!(walked, expected, "each conversation exactly once, in order");
    }

    pub async fn conversation_list_carries_unread_count_and_last_message(store: Store) {
        let t0 = now_millis();
        let busy = create_at(&store, &["alice", "bob", "carol"], t0).await;
        let empty = create_at(&store, &["alice", "dave"], at(t0, -5)).await;
        send_at(&store, busy.id, "bob", "one", at(t0, 1)).await;
        let second = send_at(&store, busy.id, "alice", "two", at(t0, 2)).await;
        let third = send_at(&store, busy.id, "carol", "three", at(t0, 3)).await;

        let list = store
            .conversations
            .list_conversations(&user("alice"), 10, None)
            .await
            .expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].conversation.id, busy.id);
        assert_eq!(
            list[0].conversation.participant_ids,
            vec![user("alice"), user("bob"), user("carol")]
        );
        assert_eq!(list[0].conversation.last_message_at, Some(at(t0, 3)));
        assert_eq!(list[0].unread_count, 2);
        assert_eq!(list[0].last_message, Some(third.clone()));
        assert_eq!(list[1].conversation, empty);
        assert_eq!(list[1].unread_count, 0);
        assert_eq!(list[1].last_message, None);

        store
            .messages
            .soft_delete_message(third.id, now_millis())
            .await
            .expect("delete");
        let list = store
            .conversations
            .list_conversations(&user("alice"), 10, None)
            .await
            .expect("list");
        assert_eq!(
            list[0].last_message,
            Some(second),
            "newest non-deleted message"
        );
        assert_eq!(list[0].unread_count, 1);
        let bobs = store
            .conversations
            .list_conversations(&user("bob"), 10, None)
            .await
            .expect("list");
        assert_eq!(bobs.len(), 1);
        assert_eq!(
            bobs[0].unread_count, 1,
            "alice's message; bob's own and the deleted one do not count"
        );
    }

    async fn contacts_of(store: &Store, name: &str) -> Vec<UserId> {
        store
            .conversations
            .contacts(&user(name))
            .await
            .expect("contacts")
    }

    /// Presence by consent: contacts are users who both took part (sent,
    /// read, or were marked as joining) in a shared conversation, and who
    /// are in no block with each other.
    pub async fn contacts_are_users_who_both_took_part_and_block_no_one(store: Store) {
        let c1 = create(&store, &["alice", "bob"]).await;
        assert!(
            contacts_of(&store, "alice").await.is_empty(),
            "being added reveals nothing"
        );
        send(&store, c1.id, "alice", "hello").await;
        assert!(
            contacts_of(&store, "alice").await.is_empty(),
            "bob has not taken part"
        );
        assert!(
            store
                .conversations
                .mark_engaged(c1.id, &user("bob"), now_millis())
                .await
                .expect("bob joins"),
            "first time"
        );
        assert!(
            !store
                .conversations
                .mark_engaged(c1.id, &user("bob"), now_millis())
                .await
                .expect("bob joins again"),
            "recorded once"
        );
        assert_eq!(contacts_of(&store, "alice").await, vec![user("bob")]);
        assert_eq!(contacts_of(&store, "bob").await, vec![user("alice")]);

        let c2 = create(&store, &["carol", "alice", "dave"]).await;
        let m = send(&store, c2.id, "alice", "hi all").await;
        store
            .cursors
            .advance_read_cursor(c2.id, &user("carol"), m.id, now_millis())
            .await
            .expect("carol reads");
        assert_eq!(
            contacts_of(&store, "alice").await,
            vec![user("bob"), user("carol")],
            "dave never took part"
        );
        assert!(contacts_of(&store, "dave").await.is_empty());

        store
            .blocks
            .block_user(&user("alice"), &user("bob"), now_millis())
            .await
            .expect("block");
        assert_eq!(contacts_of(&store, "alice").await, vec![user("carol")]);
        assert!(contacts_of(&store, "bob").await.is_empty(), "both ways");
        store
            .blocks
            .unblock_user(&user("alice"), &user("bob"))
            .await
            .expect("unblock");
        store
            .blocks
            .block_user(&user("bob"), &user("alice"), now_millis())
            .await
            .expect("block");
        assert_eq!(contacts_of(&store, "alice").await, vec![user("carol")]);
        // A stranger and someone not engaged anywhere have no contact.
        assert!(contacts_of(&store, "nobody").await.is_empty());
        assert!(
            !store
                .conversations
                .mark_engaged(c1.id, &user("nobody"), now_millis())
                .await
                .expect("a non-participant changes nothing")
        );
        assert!(contacts_of(&store, "nobody").await.is_empty());
    }

    /// The batch reads of a storm of handshakes answer what the one-user
    /// reads answer, user by user; the batch write keeps their rules.
    pub async fn batch_reads_and_writes_agree_with_the_single_ones(store: Store) {
        let c1 = create(&store, &["alice", "bob"]).await;
        let c2 = create(&store, &["alice", "carol", "dave"]).await;
        send(&store, c1.id, "alice", "one").await;
        send(&store, c1.id, "bob", "two").await;
        send(&store, c2.id, "carol", "three").await;
        send(&store, c2.id, "alice", "four").await;
        let users: Vec<UserId> = ["alice", "bob", "carol", "dave", "nobody"]
            .iter()
            .map(|u| user(u))
            .collect();
        let contacts = store
            .conversations
            .contacts_of(&users)
            .await
            .expect("contacts of");
        let unread = store
            .cursors
            .unread_counts_of(&users)
            .await
            .expect("unread counts of");
        for u in &users {
            let one = store.conversations.contacts(u).await.expect("contacts");
            assert_eq!(contacts.get(u).cloned().unwrap_or_default(), one, "{u}");
            let one = store.cursors.unread_counts(u).await.expect("unread");
            assert_eq!(unread.get(u).cloned().unwrap_or_default(), one, "{u}");
        }
        assert!(
            !contacts.contains_key(&user("dave")),
            "dave never took part"
        );
        assert_eq!(unread[&user("dave")].values().sum::<u64>(), 2);

        let n = store.notifications.as_ref();
        n.remember_contact(
            &user("alice"),
            Some("alice@old.example"),
            Some("Alice"),
            now_millis(),
        )
        .await
        .expect("remember");
        let claims = |who: &str, email: Option<&str>, name: Option<&str>| ContactClaims {
            user: user(who),
            email: email.map(str::to_owned),
            name: name.map(str::to_owned),
        };
        n.remember_contacts(
            &[
                claims("alice", None, Some("Alice A.")),
                claims("bob", Some("bob@example.com"), None),
                claims("bob", Some("bob@later.example"), Some("Bob")),
            ],
            now_millis(),
        )
        .await
        .expect("remember many");
        let alice = n
            .contact(&user("alice"))
            .await
            .expect("contact")
            .expect("known");
        assert_eq!(
            alice.email.as_deref(),
            Some("alice@old.example"),
            "a missing claim keeps the known one"
        );
        assert_eq!(alice.name.as_deref(), Some("Alice A."));
        let bob = n
            .contact(&user("bob"))
            .await
            .expect("contact")
            .expect("known");
        assert_eq!(
            bob.email.as_deref(),
            Some("bob@later.example"),
            "the last claims named win"
        );
        assert_eq!(bob.name.as_deref(), Some("Bob"));
        n.remember_contacts(&[], now_millis())
            .await
            .expect("nothing to write");
    }

    pub async fn blocks_are_recorded_listed_and_lifted(store: Store) {
        let base = now_millis();
        let blocks = &store.blocks;
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        assert!(
            blocks
                .block_user(&alice, &bob, at(base, 0))
                .await
                .expect("the store answers")
        );
        assert!(
            !blocks
                .block_user(&alice, &bob, at(base, 5))
                .await
                .expect("the store answers"),
            "a second block of the same user changes nothing"
        );
        assert!(
            blocks
                .block_user(&alice, &carol, at(base, 1))
                .await
                .expect("the store answers")
        );
        assert!(
            blocks
                .block_user(&carol, &alice, at(base, 2))
                .await
                .expect("the store answers")
        );
        assert_eq!(
            blocks.blocked_by(&alice).await.expect("the store answers"),
            vec![(carol.clone(), at(base, 1)), (bob.clone(), at(base, 0))],
            "most recent first, with the first block's time"
        );
        let relations = blocks
            .block_relations(&alice)
            .await
            .expect("the store answers");
        assert_eq!(relations.blocks, vec![bob.clone(), carol.clone()]);
        assert_eq!(relations.blocked_by, vec![carol.clone()]);
        let relations = blocks
            .block_relations(&bob)
            .await
            .expect("the store answers");
        assert!(relations.blocks.is_empty());
        assert_eq!(relations.blocked_by, vec![alice.clone()]);
        let dave = user("dave");
        let all = blocks
            .block_relations_of(&[alice.clone(), bob.clone(), carol.clone(), dave.clone()])
            .await
            .expect("the store answers");
        for who in [&alice, &bob, &carol] {
            let one = blocks
                .block_relations(who)
                .await
                .expect("the store answers");
            let many = all.get(who).expect("a user in a block is listed");
            assert_eq!(
                (&many.blocks, &many.blocked_by),
                (&one.blocks, &one.blocked_by),
                "the batch read agrees with the single one for {who:?}"
            );
        }
        assert!(!all.contains_key(&dave), "a user in no block is left out");
        assert!(
            blocks
                .block_relations_of(&[])
                .await
                .expect("the store answers")
                .is_empty()
        );
        assert!(
            blocks
                .unblock_user(&alice, &bob)
                .await
                .expect("the store answers")
        );
        assert!(
            !blocks
                .unblock_user(&alice, &bob)
                .await
                .expect("the store answers")
        );
        assert_eq!(
            blocks.blocked_by(&alice).await.expect("the store answers"),
            vec![(carol.clone(), at(base, 1))]
        );
        assert!(
            blocks
                .block_relations(&bob)
                .await
                .expect("the store answers")
                .blocked_by
                .is_empty()
        );
    }
}

/// Instantiates every contract case for both stores: `pg::<case>` and `sqlite::<case>`.
macro_rules! contract_tests {
    ($($case:ident),* $(,)?) => {
        mod pg {
            use parloir::store::Store;
            $(
                #[sqlx::test(migrations = "migrations/postgres")]
                async fn $case(pool: sqlx::PgPool) {
                    super::contract::$case(Store::new(super::pg_store(pool))).await;
                }
            )*
        }

        mod sqlite {
            use parloir::store::Store;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_dir, store) = super::sqlite_store().await;
                    super::contract::$case(Store::new(store)).await;
                }
            )*
        }

        /// The decorators the node wraps every store in keep the contract.
        mod decorated {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_dir, store) = super::sqlite_store().await;
                    super::contract::$case(super::decorated(store, 1)).await;
                }
            )*
        }

        /// The same on Postgres, with several group commits in flight.
        mod decorated_pg {
            $(
                #[sqlx::test(migrations = "migrations/postgres")]
                async fn $case(pool: sqlx::PgPool) {
                    super::contract::$case(super::decorated(super::pg_store(pool), 4)).await;
                }
            )*
        }
    };
}

contract_tests!(
    ping_succeeds,
    created_conversation_can_be_read_back,
    two_person_conversation_is_unique_whatever_the_member_order,
    concurrent_creates_of_the_same_pair_make_one_conversation,
    group_conversations_are_never_deduplicated,
    participants_and_membership_are_reported,
    inserted_message_is_returned_stored_and_bumps_activity,
    repeated_client_message_id_returns_the_stored_message,
    concurrent_inserts_with_one_client_message_id_store_one_message,
    client_message_id_reused_in_another_conversation_is_refused,
    batched_inserts_answer_each_message_in_order,
    client_message_ids_of_different_senders_are_independent,
    history_without_bounds_returns_the_newest_page_oldest_first,
    history_before_returns_the_older_messages,
    history_after_returns_the_newer_messages,
    history_between_after_and_before_returns_the_oldest_of_the_range,
    history_skips_deleted_messages,
    soft_delete_hides_the_message_and_happens_once,
    read_cursor_starts_empty_and_records_the_read,
    read_cursor_never_moves_backwards,
    concurrent_cursor_advances_end_at_the_newest,
    latest_message_id_ignores_deleted_messages,
    unread_counts_are_later_messages_from_others,
    unread_in_conversation_counts_every_participant,
    conversation_list_orders_by_activity_and_pages_each_once,
    conversation_list_carries_unread_count_and_last_message,
    every_change_is_logged_with_the_next_number,
    concurrent_sends_number_the_log_without_holes,
    contacts_are_users_who_both_took_part_and_block_no_one,
    blocks_are_recorded_listed_and_lifted,
    batch_reads_and_writes_agree_with_the_single_ones,
    a_stored_message_waits_in_the_outbox_until_gathered,
    gathered_messages_fold_into_one_pending_notification,
    a_due_notification_goes_to_one_claimer,
    only_the_current_attempt_settles_a_notification,
    contacts_keep_the_last_known_address_and_the_users_choice,
);

// Constructors and migrations, outside the shared contract.

#[sqlx::test(migrations = false)]
async fn postgres_migrations_can_run_from_two_nodes_at_once(pool: PgPool) {
    let a = PostgresStore::from_pool(pool.clone());
    let b = PostgresStore::from_pool(pool);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("first migrator");
    rb.expect("second migrator");
    a.migrate().await.expect("migrating again is a no-op");
    contract::ping_succeeds(Store::new(Arc::new(a))).await;
}

#[tokio::test]
async fn postgres_connect_refuses_a_malformed_url_at_once() {
    let result = PostgresStore::connect(
        "not a url",
        2,
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .await;
    assert!(result.is_err(), "a malformed URL must fail in connect");
}

#[tokio::test]
async fn postgres_unreachable_server_is_unavailable() {
    // Port 1 on loopback refuses connections; the lazy pool reports it on use.
    let store = PostgresStore::connect(
        "postgres://nobody@127.0.0.1:1/none",
        1,
        Duration::from_millis(500),
        Duration::from_secs(5),
    )
    .await
    .expect("lazy connect");
    let err = store.ping().await.expect_err("nothing listens there");
    assert!(
        matches!(err, StoreError::Unavailable { op: "ping", .. }),
        "got {err:?}"
    );
}

#[tokio::test]
async fn sqlite_open_migrates_once_and_reopens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("again.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrating again is a no-op");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    store.pool().close().await;
    let reopened = SqliteStore::open(Path::new(&path)).await.expect("reopen");
    reopened.migrate().await.expect("migrate");
    reopened.ping().await.expect("ping");
}

/// A statement that cannot finish (here: blocked by a lock) is cancelled by
/// the server at `statement_timeout` and answered `Unavailable`; and a
/// store that does not answer at all meets the node's call deadline.
#[sqlx::test(migrations = "migrations/postgres")]
async fn postgres_statements_and_calls_are_bounded(
    pool_options: sqlx::postgres::PgPoolOptions,
    connect_options: sqlx::postgres::PgConnectOptions,
) {
    use parloir::domain::{ConversationId, PageRequest};
    let locker = pool_options
        .clone()
        .connect_with(connect_options.clone())
        .await
        .expect("a pool");
    let mut lock = locker.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("the table is locked");
    let page = PageRequest::latest(10);

    let timed = PostgresStore::from_pool(
        pool_options
            .clone()
            .connect_with(
                connect_options
                    .clone()
                    .options([("statement_timeout", "300ms")]),
            )
            .await
            .expect("a pool"),
    );
    let started = tokio::time::Instant::now();
    let err = Store::new(Arc::new(timed))
        .messages
        .history(ConversationId::new_random(), &page)
        .await
        .expect_err("the lock outlasts the statement timeout");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let patient = Arc::new(PostgresStore::from_pool(
        pool_options
            .connect_with(connect_options)
            .await
            .expect("a pool"),
    ));
    let bounded = Store::decorated(
        patient,
        Decorations {
            system: "postgresql",
            call_deadline: Some(Duration::from_millis(300)),
            group_commit: GroupCommitLimits {
                statement_deadline: None,
                max_batch: 1,
                concurrent_batches: 1,
            },
            participant_cache: 0,
            supervisor: parloir::supervisor::Supervisor::default(),
        },
    );
    let started = tokio::time::Instant::now();
    let err = bounded
        .messages
        .history(ConversationId::new_random(), &page)
        .await
        .expect_err("nothing answers within the deadline");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    lock.rollback().await.expect("the lock is released");
}

// Retention (issue #14): the same contract, in a file of its own.
mod retention;
