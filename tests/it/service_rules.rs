//! Use-case rules checked below the transports, on the embedded store and
//! in-process state: idempotency under concurrency, and unread counters
//! maintained per event agreeing with a recount from read cursors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use parloir::auth::User;
use parloir::config::RateLimits;
use parloir::domain::{
    Conversation, JoinRequest, Limits, MessageId, NewConversation, NewMessage, PageRequest, UserId,
};
use parloir::ephemeral::{Ephemeral, MemoryEphemeral};
use parloir::fanout::{Audience, Delivered, Fanout};
use parloir::protocol::ev;
use parloir::service::{Messaging, ServiceSettings};
use parloir::store::{SqliteStore, Store};
use proptest::prelude::*;
use serde_json::Value;

/// Records every broadcast so tests can count what was announced. While
/// `open` is false, broadcasts of the `gated` event (`new-message` unless
/// changed) wait, as behind a slow adapter (and `entered` is told that one
/// is waiting).
struct RecordingFanout {
    events: Mutex<Vec<(&'static str, Vec<String>, Value)>>,
    gated: Mutex<&'static str>,
    open: tokio::sync::watch::Sender<bool>,
    entered: tokio::sync::Notify,
}

impl Default for RecordingFanout {
    fn default() -> Self {
        Self {
            events: Mutex::default(),
            gated: Mutex::new(ev::NEW_MESSAGE),
            open: tokio::sync::watch::channel(true).0,
            entered: tokio::sync::Notify::new(),
        }
    }
}

impl RecordingFanout {
    fn count(&self, event: &str) -> usize {
        self.events
            .lock()
            .expect("no test thread panicked holding the lock")
            .iter()
            .filter(|(e, _, _)| *e == event)
            .count()
    }
}

#[async_trait]
impl Fanout for RecordingFanout {
    async fn emit(&self, audience: Audience, event: &'static str, payload: Value) -> Delivered {
        let gated = *self
            .gated
            .lock()
            .expect("no test thread panicked holding the lock");
        if event == gated {
            let mut open = self.open.subscribe();
            if !*open.borrow() {
                self.entered.notify_one();
            }
            let _ = open.wait_for(|o| *o).await;
        }
        self.events
            .lock()
            .expect("no test thread panicked holding the lock")
            .push((event, audience.to, payload));
        Delivered::Everywhere
    }
    fn emit_local(&self, room: String, event: &'static str, payload: &Value) {
        self.events
            .lock()
            .expect("no test thread panicked holding the lock")
            .push((event, vec![room], payload.clone()));
    }
    async fn local_rooms(&self) -> Vec<String> {
        Vec::new()
    }
    fn emit_to_socket(&self, socket_id: &str, event: &'static str, payload: &Value) {
        self.events
            .lock()
            .expect("no test thread panicked holding the lock")
            .push((event, vec![socket_id.to_owned()], payload.clone()));
    }
    async fn join(&self, _: &str, _: String) {}
    async fn leave(&self, _: &str, _: String) {}
    fn local_sockets(&self) -> Vec<(String, parloir::auth::User)> {
        Vec::new()
    }
}

struct Fixture {
    service: Messaging,
    store: Store,
    ephemeral: Ephemeral,
    fanout: Arc<RecordingFanout>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with_sends_in_flight(1024).await
}

async fn fixture_with_sends_in_flight(max_sends_in_flight: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db"))
        .await
        .expect("sqlite opens");
    store.migrate().await.expect("migrations apply");
    let store = Store::new(Arc::new(store));
    // Generous limits: these tests are about storage rules, not rate limits.
    let rate_limits = RateLimits {
        send_per_sec: 10_000,
        send_burst: 10_000,
        create_per_min: 10_000,
        create_burst: 10_000,
        typing_relay_interval: Duration::from_secs(1),
    };
    let ephemeral = Ephemeral::observed(Arc::new(MemoryEphemeral::new(&rate_limits)), "memory");
    let fanout = Arc::new(RecordingFanout::default());
    let settings = ServiceSettings {
        limits: Limits::default(),
        rate_limits,
        typing_ttl: Duration::from_secs(5),
        max_sends_in_flight,
    };
    let service = Messaging::new(store.clone(), ephemeral.clone(), fanout.clone(), settings);
    Fixture {
        service,
        store,
        ephemeral,
        fanout,
        _dir: dir,
    }
}

fn user(name: &str) -> User {
    User {
        id: UserId::parse("user", name).expect("valid test user id"),
        role: None,
        name: None,
        email: None,
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    }
}

fn new_conversation(creator: &User, others: &[String]) -> NewConversation {
    NewConversation::parse(&creator.id, others, None, &Limits::default())
        .expect("a valid test conversation")
}

fn send(conversation: &str, content: &str, client_message_id: Option<&str>) -> NewMessage {
    NewMessage::parse(
        conversation,
        content,
        vec![],
        client_message_id,
        &Limits::default(),
    )
    .expect("a valid test message")
}

/// Alice sends "bye" to bob and goes away (her task is aborted) once the
/// message is committed and its broadcast is held by the fanout; the fanout
/// is left closed.
async fn send_and_hang_up_mid_broadcast(f: &Fixture, alice: &User) -> Conversation {
    let (conversation, _) = f
        .service
        .create_conversation(alice, new_conversation(alice, &["bob".into()]))
        .await
        .expect("the conversation is created");
    f.fanout.open.send_replace(false);
    let sending = tokio::spawn({
        let (service, alice, id) = (
            f.service.clone(),
            alice.clone(),
            conversation.id.to_string(),
        );
        async move { service.send_message(&alice, send(&id, "bye", None)).await }
    });
    tokio::time::timeout(Duration::from_secs(5), f.fanout.entered.notified())
        .await
        .expect("the message is committed and its broadcast under way");
    sending.abort();
    let _ = sending.await;
    conversation
}

/// An HTTP client that hangs up cancels its request's handler: a message
/// already committed must still be announced (new-message and the unread
/// update), or the others would learn of it only from history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_message_is_announced_even_if_the_sender_goes_away() {
    let f = fixture().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let conversation = send_and_hang_up_mid_broadcast(&f, &alice).await;
    f.fanout.open.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), async {
        while f.fanout.count(ev::NEW_MESSAGE) == 0 || f.fanout.count(ev::UNREAD_COUNT_UPDATED) == 0
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("new-message and bob's unread update went out after the sender left");
    let page = f
        .store
        .messages
        .history(conversation.id, &parloir::domain::PageRequest::latest(10))
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1, "stored once");
    let _ = bob;
}

/// Runs `work` (a use case that commits, then broadcasts the `gated`
/// event) and goes away, as an HTTP client that hangs up, once the commit is
/// done and the broadcast held; then lets the broadcast through.
async fn hang_up_mid_broadcast<F>(f: &Fixture, gated: &'static str, work: F)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    *f.fanout.gated.lock().expect("not poisoned") = gated;
    f.fanout.open.send_replace(false);
    let running = tokio::spawn(work);
    tokio::time::timeout(Duration::from_secs(5), f.fanout.entered.notified())
        .await
        .expect("the change is committed and its broadcast under way");
    running.abort();
    let _ = running.await;
    f.fanout.open.send_replace(true);
}

async fn until_counted(f: &Fixture, event: &str, at_least: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while f.fanout.count(event) < at_least {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{event} went out {at_least} times"));
}

/// A delete and a read committed for a client that then hung up are still
/// announced, and the unread counters still recounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_delete_or_read_is_announced_even_if_the_client_goes_away() {
    let f = fixture().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (conversation, _) = f
        .service
        .create_conversation(&alice, new_conversation(&alice, &["bob".into()]))
        .await
        .unwrap();
    let c = conversation.id.to_string();
    let first = f
        .service
        .send_message(&alice, send(&c, "one", None))
        .await
        .unwrap();
    f.service
        .send_message(&alice, send(&c, "two", None))
        .await
        .unwrap();
    let updates = f.fanout.count(ev::UNREAD_COUNT_UPDATED);

    let (service, who) = (f.service.clone(), alice.clone());
    hang_up_mid_broadcast(&f, ev::MESSAGE_DELETED, async move {
        service.delete_message(&who, first.id).await
    })
    .await;
    until_counted(&f, ev::MESSAGE_DELETED, 1).await;
    until_counted(&f, ev::UNREAD_COUNT_UPDATED, updates + 1).await;
    let counts = f.store.cursors.unread_counts(&bob.id).await.unwrap();
    assert_eq!(
        counts.get(&conversation.id),
        Some(&1),
        "the delete is committed"
    );

    let updates = f.fanout.count(ev::UNREAD_COUNT_UPDATED);
    let (service, who) = (f.service.clone(), bob.clone());
    hang_up_mid_broadcast(&f, ev::MESSAGE_READ, async move {
        service
            .mark_conversation_as_read(&who, conversation.id)
            .await
    })
    .await;
    until_counted(&f, ev::MESSAGE_READ, 1).await;
    until_counted(&f, ev::UNREAD_COUNT_UPDATED, updates + 1).await;
    let last = f
        .fanout
        .events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(e, _, _)| *e == ev::UNREAD_COUNT_UPDATED)
        .cloned();
    let (_, to, update) = last.expect("an unread update");
    assert_eq!(to, vec![format!("user-{}", bob.id)], "to bob's devices");
    assert_eq!(update["totalUnread"], 0, "{update}");
}

/// The drain closes sockets only after the announcements that outlived
/// their callers: `finish_detached_work` returns once they went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_waits_for_an_announcement_whose_sender_went_away() {
    let f = fixture().await;
    let alice = user("alice");
    send_and_hang_up_mid_broadcast(&f, &alice).await;
    let draining = tokio::spawn({
        let service = f.service.clone();
        async move { service.finish_detached_work().await }
    });
    f.fanout.open.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), draining)
        .await
        .expect("the detached announcement finishes")
        .expect("the drain task completes");
    assert_eq!(
        f.fanout.count(ev::NEW_MESSAGE),
        1,
        "announced before the drain ends"
    );
    assert!(
        f.fanout.count(ev::UNREAD_COUNT_UPDATED) >= 1,
        "bob's unread update too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sends_with_one_client_message_id_store_and_announce_once() {
    let f = fixture().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (conversation, _) = f
        .service
        .create_conversation(&alice, new_conversation(&alice, &["bob".into()]))
        .await
        .unwrap();
    let id = conversation.id.to_string();
    let sends: Vec<_> = (0..50)
        .map(|_| {
            let (service, alice, id) = (f.service.clone(), alice.clone(), id.clone());
            tokio::spawn(async move {
                service
                    .send_message(&alice, send(&id, "hello", Some("retry-1")))
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for s in sends {
        ids.push(s.await.unwrap().expect("every duplicate send succeeds").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all 50 acks carry the one stored message");
    let history = f
        .service
        .history(
            &bob,
            conversation.id,
            parloir::domain::PageRequest::latest(100),
        )
        .await
        .unwrap();
    assert_eq!(history.messages.len(), 1);
    assert_eq!(
        f.fanout.count(ev::NEW_MESSAGE),
        1,
        "only the first send is broadcast"
    );
}

/// A node at its bound of sends in progress refuses the next one at once,
/// with `UNAVAILABLE` and nothing written, and the send in progress completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_beyond_the_in_flight_bound_is_refused_and_stores_nothing() {
    use sqlx::Connection as _;

    let f = fixture_with_sends_in_flight(1).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (conversation, _) = f
        .service
        .create_conversation(&alice, new_conversation(&alice, &["bob".into()]))
        .await
        .unwrap();
    let id = conversation.id.to_string();
    // Holding SQLite's write lock keeps a send in progress (it waits for the lock).
    let mut lock = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        f._dir.path().join("t.db").display()
    ))
    .await
    .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .expect("write lock taken");
    let spawn_send = |content: &'static str| {
        let (service, alice, id) = (f.service.clone(), alice.clone(), id.clone());
        tokio::spawn(async move { service.send_message(&alice, send(&id, content, None)).await })
    };
    let (mut first, mut second) = (spawn_send("one"), spawn_send("two"));

    // Whichever took the only slot waits for the lock; the other is refused at once.
    let (refused, mut in_progress) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            r = &mut first => (r, second),
            r = &mut second => (r, first),
        }
    })
    .await
    .expect("one send is refused without waiting for the lock");
    let refused = refused.expect("task");
    assert!(
        matches!(refused, Err(parloir::service::ServiceError::Overloaded)),
        "{refused:?}"
    );
    assert_eq!(
        refused.unwrap_err().code(),
        parloir::protocol::ErrorCode::Unavailable
    );

    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("lock released");
    let stored = (&mut in_progress)
        .await
        .expect("task")
        .expect("the send in progress completes");
    let history = f
        .service
        .history(
            &bob,
            conversation.id,
            parloir::domain::PageRequest::latest(100),
        )
        .await
        .unwrap();
    let ids: Vec<MessageId> = history.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![stored.id], "only the accepted send is stored");
    assert_eq!(f.fanout.count(ev::NEW_MESSAGE), 1);

    // The slot is free again.
    f.service
        .send_message(&alice, send(&id, "three", None))
        .await
        .expect("accepted once the node has room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_creates_of_a_pair_announce_one_conversation() {
    let f = fixture().await;
    let creates: Vec<_> = (0..20)
        .map(|i| {
            let service = f.service.clone();
            // Half from each side: the pair is unordered.
            let (me, other) = if i % 2 == 0 {
                ("alice", "bob")
            } else {
                ("bob", "alice")
            };
            tokio::spawn(async move {
                service
                    .create_conversation(&user(me), new_conversation(&user(me), &[other.into()]))
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for c in creates {
        ids.push(c.await.unwrap().expect("create succeeds").0.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(f.fanout.count(ev::CONVERSATION_CREATED), 1);
}

#[tokio::test]
async fn a_stranger_cannot_tell_a_conversation_exists() {
    let f = fixture().await;
    let (conversation, _) = f
        .service
        .create_conversation(
            &user("alice"),
            new_conversation(&user("alice"), &["bob".into()]),
        )
        .await
        .unwrap();
    let mallory = user("mallory");
    let real = f
        .service
        .send_message(&mallory, send(&conversation.id.to_string(), "hi", None))
        .await
        .unwrap_err();
    let unknown = f
        .service
        .send_message(
            &mallory,
            send(
                &parloir::domain::ConversationId::new_random().to_string(),
                "hi",
                None,
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(real.code(), unknown.code());
    assert_eq!(real.to_string(), unknown.to_string());
    assert_eq!(f.fanout.count(ev::NEW_MESSAGE), 0);
}

/// Presence is answered from remembered contacts: a stranger stays a
/// stranger however often asked, and a new contact is visible at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_sees_new_contacts_at_once_and_strangers_never() {
    let f = fixture().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let (pair, _) = f
        .service
        .create_conversation(&alice, new_conversation(&alice, &["bob".into()]))
        .await
        .unwrap();
    f.service.socket_connected(&bob, "s-bob").await.unwrap();
    // Contacts are users who both took part: bob joins.
    f.service
        .join_conversation(
            &bob,
            "s-bob",
            pair.id,
            JoinRequest::History(PageRequest::latest(10)),
        )
        .await
        .unwrap();
    f.service.socket_connected(&carol, "s-carol").await.unwrap();
    let ask = || vec![bob.id.clone(), carol.id.clone()];
    for _ in 0..20 {
        let report = f.service.presence(&alice, ask()).await.unwrap();
        assert!(report.online[&bob.id]);
        assert!(!report.online[&carol.id], "carol is a stranger to alice");
    }
    let (theirs, _) = f
        .service
        .create_conversation(&carol, new_conversation(&carol, &["alice".into()]))
        .await
        .unwrap();
    let report = f.service.presence(&alice, ask()).await.unwrap();
    assert!(!report.online[&carol.id], "alice has not taken part yet");
    f.service
        .join_conversation(
            &alice,
            "s-alice",
            theirs.id,
            JoinRequest::History(PageRequest::latest(10)),
        )
        .await
        .unwrap();
    let report = f.service.presence(&alice, ask()).await.unwrap();
    assert!(report.online[&carol.id], "a new contact is seen at once");
}

#[derive(Debug, Clone)]
enum Op {
    Send { from: usize, conversation: usize },
    ReadAll { user: usize, conversation: usize },
    ReadOne { user: usize, nth: usize },
    DeleteOwn { user: usize, nth: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize).prop_map(|(from, conversation)| Op::Send { from, conversation }),
        1 => (0..3usize, 0..3usize).prop_map(|(user, conversation)| Op::ReadAll { user, conversation }),
        1 => (0..3usize, 0..40usize).prop_map(|(user, nth)| Op::ReadOne { user, nth }),
        1 => (0..3usize, 0..40usize).prop_map(|(user, nth)| Op::DeleteOwn { user, nth }),
    ]
}

/// Three users, three conversations (two pairs and a group). After any
/// sequence of sends, reads and deletes, the counters maintained event by
/// event equal the counts rebuilt from the read cursors.
async fn maintained_unread_equals_rebuilt(ops: Vec<Op>) {
    let f = fixture().await;
    let users = [user("ann"), user("ben"), user("cat")];
    let conversations = [
        f.service
            .create_conversation(&users[0], new_conversation(&users[0], &["ben".into()]))
            .await
            .expect("the embedded store and shared state answer")
            .0,
        f.service
            .create_conversation(&users[1], new_conversation(&users[1], &["cat".into()]))
            .await
            .expect("the embedded store and shared state answer")
            .0,
        f.service
            .create_conversation(
                &users[2],
                new_conversation(&users[2], &["ann".into(), "ben".into()]),
            )
            .await
            .expect("the embedded store and shared state answer")
            .0,
    ];
    for u in &users {
        // As at connect: counters start from the store.
        f.service
            .socket_connected(u, "socket")
            .await
            .expect("the embedded store and shared state answer");
    }
    let mut sent: Vec<(usize, MessageId)> = Vec::new();
    for op in ops {
        match op {
            Op::Send { from, conversation } => {
                let c = &conversations[conversation];
                if c.participant_ids.contains(&users[from].id) {
                    let m = f
                        .service
                        .send_message(&users[from], send(&c.id.to_string(), "m", None))
                        .await
                        .expect("the embedded store and shared state answer");
                    sent.push((from, m.id));
                }
            }
            Op::ReadAll { user, conversation } => {
                // Non-participants get NOT_FOUND, which is fine here.
                let _ = f
                    .service
                    .mark_conversation_as_read(&users[user], conversations[conversation].id)
                    .await;
            }
            Op::ReadOne { user, nth } => {
                if let Some((_, id)) = sent.get(nth) {
                    let _ = f.service.mark_as_read(&users[user], *id).await;
                }
            }
            Op::DeleteOwn { user, nth } => {
                if let Some((from, id)) = sent.get(nth)
                    && *from == user
                {
                    let _ = f.service.delete_message(&users[user], *id).await;
                }
            }
        }
    }
    for u in &users {
        let maintained: HashMap<_, _> = f
            .ephemeral
            .unread
            .unread(&u.id)
            .await
            .expect("the embedded store and shared state answer")
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        let rebuilt = f
            .store
            .cursors
            .unread_counts(&u.id)
            .await
            .expect("the embedded store and shared state answer");
        assert_eq!(maintained, rebuilt, "counters of {}", u.id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn unread_counters_match_a_recount_after_any_sequence(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(maintained_unread_equals_rebuilt(ops));
    }
}
