//! The retention contract (issue #14), run like the rest of the store
//! contract on Postgres, SQLite and both decorated stacks: archival and
//! un-archival, the archived list, the purge of deleted messages, the
//! deletion of old messages (read cursors and unread counts included), dry
//! runs, and runs or statements racing each other. Time is injected: every
//! row is written at an instant before a `now` the test chooses.
//!
//! Postgres alone has a lock to contend for: its cases follow the contract.

use std::sync::Arc;

use parloir::store::{Backend, Store};

use super::{pg_store, sqlite_store};

/// The parent's stacks (a function beside `contract_tests!`'s `mod decorated`,
/// as there).
fn decorated<B: Backend>(backend: Arc<B>, concurrent_batches: usize) -> Store {
    super::decorated(backend, concurrent_batches)
}

mod contract {
    use chrono::{DateTime, TimeDelta, Utc};
    use parloir::domain::{
        Attachment, Channel, Conversation, ConversationId, Gathered, Limits, ListCursor, Message,
        MessageId, NewConversation, NewMessage, NotificationId, PageRequest, RetentionCounts,
        RetentionCutoffs, RetentionPolicy, Settlement, UserId, now_millis,
    };
    use parloir::service::{RetentionJob, RunOutcome};
    use parloir::store::{Inserted, Store};
    use tokio_util::sync::CancellationToken;

    fn user(name: &str) -> UserId {
        UserId::parse("user", name).expect("valid user id")
    }

    /// `n` days before `now`.
    fn days_before(now: DateTime<Utc>, n: i64) -> DateTime<Utc> {
        now - TimeDelta::days(n)
    }

    async fn create_at(store: &Store, members: &[&str], at: DateTime<Utc>) -> Conversation {
        let others: Vec<String> = members[1..].iter().map(|m| (*m).to_owned()).collect();
        let new = NewConversation::parse(&user(members[0]), &others, None, &Limits::default())
            .expect("valid conversation");
        store
            .conversations
            .create_conversation(ConversationId::new_random(), &new, at)
            .await
            .expect("create conversation")
            .0
    }

    /// The id a node mints for a send at `at` (UUIDv7 of that millisecond).
    fn id_sent_at(at: DateTime<Utc>) -> MessageId {
        let seconds = u64::try_from(at.timestamp()).expect("after 1970");
        let timestamp =
            uuid::Timestamp::from_unix(uuid::NoContext, seconds, at.timestamp_subsec_nanos());
        MessageId::from_uuid(uuid::Uuid::new_v7(timestamp))
    }

    /// A message sent at `at`, as a node would store it then.
    async fn send_at(
        store: &Store,
        conversation: ConversationId,
        from: &str,
        attachments: Vec<Attachment>,
        at: DateTime<Utc>,
    ) -> Message {
        let new = NewMessage::parse(
            &conversation.to_string(),
            "something to keep or not",
            attachments,
            None,
            &Limits::default(),
        )
        .expect("valid message");
        let (message, inserted) = store
            .inserts
            .insert_message(id_sent_at(at), &user(from), &new, at)
            .await
            .expect("insert message");
        assert_eq!(inserted, Inserted::New);
        message
    }

    async fn send_plain_at(
        store: &Store,
        conversation: ConversationId,
        from: &str,
        at: DateTime<Utc>,
    ) -> Message {
        send_at(store, conversation, from, vec![], at).await
    }

    async fn delete_at(store: &Store, message: &Message, at: DateTime<Utc>) {
        assert!(
            store
                .messages
                .soft_delete_message(message.id, at)
                .await
                .expect("soft delete")
                .is_some(),
            "deleted once"
        );
    }

    fn picture() -> Attachment {
        Attachment {
            url: "https://cdn.example/cat.jpg".into(),
            mime_type: "image/jpeg".into(),
            name: Some("cat.jpg".into()),
            size: Some(1234),
        }
    }

    async fn listed(store: &Store, who: &str) -> Vec<ConversationId> {
        store
            .conversations
            .list_conversations(&user(who), 100, None)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.conversation.id)
            .collect()
    }

    async fn listed_archived(store: &Store, who: &str) -> Vec<ConversationId> {
        store
            .conversations
            .list_archived_conversations(&user(who), 100, None)
            .await
            .expect("list archived")
            .into_iter()
            .map(|s| s.conversation.id)
            .collect()
    }

    async fn history_ids(store: &Store, conversation: ConversationId) -> Vec<MessageId> {
        store
            .messages
            .history(conversation, &PageRequest::latest(100))
            .await
            .expect("history")
            .messages
            .iter()
            .map(|m| m.id)
            .collect()
    }

    /// Every archival batch of a run, from the first conversation to the last.
    async fn archive_all(store: &Store, cutoffs: &RetentionCutoffs, limit: u32) -> (u64, usize) {
        let (mut archived, mut batches, mut after) = (0, 0, None);
        loop {
            let batch = store
                .retention
                .archive_idle_conversations(cutoffs, after, limit)
                .await
                .expect("archive");
            assert!(batch.archived <= u64::from(limit));
            archived += batch.archived;
            batches += 1;
            match batch.next {
                Some(next) => after = Some(next),
                None => return (archived, batches),
            }
        }
    }

    /// Purge batches until one finds nothing.
    async fn purge_all(store: &Store, cutoffs: &RetentionCutoffs, limit: u32) -> u64 {
        let mut purged = 0;
        loop {
            let n = store
                .retention
                .purge_deleted_messages(cutoffs, limit)
                .await
                .expect("purge");
            assert!(n <= u64::from(limit));
            if n == 0 {
                return purged;
            }
            purged += n;
        }
    }

    /// Deletion batches until one finds nothing.
    async fn delete_all(store: &Store, cutoffs: &RetentionCutoffs, limit: u32) -> u64 {
        let mut deleted = 0;
        loop {
            let n = store
                .retention
                .delete_old_messages(cutoffs, limit)
                .await
                .expect("delete");
            assert!(n <= u64::from(limit));
            if n == 0 {
                return deleted;
            }
            deleted += n;
        }
    }

    async fn forget_all(store: &Store, cutoffs: &RetentionCutoffs, limit: u32) -> u64 {
        let mut forgotten = 0;
        loop {
            let n = store
                .retention
                .forget_settled_notifications(cutoffs, limit)
                .await
                .expect("forget");
            assert!(n <= u64::from(limit));
            if n == 0 {
                return forgotten;
            }
            forgotten += n;
        }
    }

    async fn counts(store: &Store, cutoffs: &RetentionCutoffs) -> RetentionCounts {
        store
            .retention
            .count_retention(cutoffs)
            .await
            .expect("count")
    }

    fn policy_deleting_after(days: i64, batch: u32) -> RetentionPolicy {
        RetentionPolicy {
            delete_after: Some(TimeDelta::days(days)),
            batch,
            ..RetentionPolicy::default()
        }
    }

    /// Something of each kind for a run at `now` with
    /// `policy_deleting_after(365, _)`: 5 idle conversations (2 with old
    /// messages), 2 messages to purge, 2 to delete (one of them also to
    /// purge), and as many rows that stay as they are.
    async fn fixture(store: &Store, now: DateTime<Utc>) -> RetentionCounts {
        for i in 0..5i64 {
            let other = format!("idle{i}");
            let c = create_at(store, &["alice", &other], days_before(now, 100 + i)).await;
            if i % 2 == 1 {
                send_plain_at(store, c.id, &other, days_before(now, 95)).await;
            }
        }
        create_at(store, &["alice", "fresh"], days_before(now, 3)).await;
        let busy = create_at(store, &["alice", "bob"], days_before(now, 500)).await;
        let old_deleted = send_plain_at(store, busy.id, "bob", days_before(now, 400)).await;
        delete_at(store, &old_deleted, days_before(now, 399)).await;
        send_plain_at(store, busy.id, "bob", days_before(now, 398)).await;
        let purgeable = send_at(
            store,
            busy.id,
            "alice",
            vec![picture()],
            days_before(now, 60),
        )
        .await;
        delete_at(store, &purgeable, days_before(now, 40)).await;
        let recently_deleted = send_plain_at(store, busy.id, "alice", days_before(now, 60)).await;
        delete_at(store, &recently_deleted, days_before(now, 10)).await;
        send_plain_at(store, busy.id, "bob", days_before(now, 1)).await;
        // Offline notifications: two settled 40 days ago (forgotten after
        // the default 30), one settled yesterday and one pending (kept).
        for (recipient, settled) in [
            ("n1", Some(40)),
            ("n2", Some(40)),
            ("n3", Some(1)),
            ("n4", None),
        ] {
            let created = days_before(now, 41);
            let gathered = Gathered {
                id: NotificationId::new_random(),
                channel: Channel::Webhook,
                recipient_id: user(recipient),
                conversation_id: busy.id,
                latest_message_id: purgeable.id,
                message_count: 1,
                due_at: created,
            };
            let n = store.notifications.as_ref();
            n.gather_notifications(&[gathered], &[], created)
                .await
                .expect("gather");
            if let Some(days) = settled {
                let at = days_before(now, days);
                let claimed = n
                    .claim_due_notifications(at, at + TimeDelta::minutes(1), 1)
                    .await
                    .expect("claim")
                    .remove(0);
                assert!(
                    n.settle_notification(claimed.id, claimed.attempt, &Settlement::Sent, at)
                        .await
                        .expect("settle")
                );
            }
        }
        RetentionCounts {
            archived: 5,
            purged: 2,
            deleted: 2,
            forgotten: 2,
        }
    }

    pub async fn idle_conversations_are_archived_once_and_listed_apart(store: Store) {
        let now = now_millis();
        let never_written = create_at(&store, &["alice", "bob"], days_before(now, 100)).await;
        let revived_long_ago = create_at(&store, &["alice", "carol"], days_before(now, 200)).await;
        send_plain_at(&store, revived_long_ago.id, "carol", days_before(now, 10)).await;
        let gone_quiet = create_at(&store, &["alice", "dave"], days_before(now, 100)).await;
        let last_words = send_plain_at(&store, gone_quiet.id, "dave", days_before(now, 95)).await;
        let young = create_at(&store, &["alice", "erin"], days_before(now, 89)).await;
        // Idle for exactly the archive age: not older than it, kept.
        let on_the_edge = create_at(&store, &["alice", "hal"], days_before(now, 90)).await;
        let someone_elses = create_at(&store, &["frank", "gina"], days_before(now, 300)).await;

        let cutoffs = RetentionPolicy::default().cutoffs(now);
        assert_eq!(counts(&store, &cutoffs).await.archived, 3);
        let (archived, _) = archive_all(&store, &cutoffs, 100).await;
        assert_eq!(archived, 3);
        assert_eq!(
            archive_all(&store, &cutoffs, 100).await.0,
            0,
            "archived once"
        );
        assert_eq!(counts(&store, &cutoffs).await.archived, 0);

        assert_eq!(
            listed(&store, "alice").await,
            vec![revived_long_ago.id, young.id, on_the_edge.id],
            "archived conversations are left out"
        );
        assert_eq!(
            listed_archived(&store, "alice").await,
            vec![gone_quiet.id, never_written.id],
            "only archived ones, most recent activity first"
        );
        assert_eq!(
            listed_archived(&store, "frank").await,
            vec![someone_elses.id]
        );
        assert!(listed(&store, "frank").await.is_empty());

        // Archived is not gone: readable, with its participants and history.
        let read = store
            .conversations
            .conversation(gone_quiet.id)
            .await
            .expect("read")
            .expect("still there");
        assert_eq!(read.last_message_at, Some(days_before(now, 95)));
        assert!(
            store
                .participants
                .is_participant(gone_quiet.id, &user("alice"))
                .await
                .expect("membership")
        );
        assert_eq!(
            history_ids(&store, gone_quiet.id).await,
            vec![last_words.id]
        );
    }

    pub async fn archival_visits_every_conversation_in_small_batches(store: Store) {
        let now = now_millis();
        let mut idle = Vec::new();
        for i in 0..10i64 {
            let other = format!("idle{i}");
            idle.push(create_at(&store, &["alice", &other], days_before(now, 100 + i)).await);
            if i % 3 == 0 {
                let other = format!("active{i}");
                create_at(&store, &["alice", &other], days_before(now, i)).await;
            }
        }
        let cutoffs = RetentionPolicy::default().cutoffs(now);
        let (archived, batches) = archive_all(&store, &cutoffs, 3).await;
        assert_eq!(archived, 10);
        assert!(batches >= 4, "3 rows a batch: {batches} batches");
        assert_eq!(listed(&store, "alice").await.len(), 4);

        // The archived list pages like the other one: each once, in order.
        let expected: Vec<ConversationId> = idle.iter().map(|c| c.id).collect();
        let (mut walked, mut cursor) = (Vec::new(), None);
        for _ in 0..10 {
            let page = store
                .conversations
                .list_archived_conversations(&user("alice"), 3, cursor)
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            cursor = Some(ListCursor {
                activity_at: last.conversation.created_at,
                id: last.conversation.id,
            });
            walked.extend(page.iter().map(|s| s.conversation.id));
        }
        assert_eq!(
            walked, expected,
            "each archived conversation once, in order"
        );
    }

    pub async fn a_new_message_unarchives_its_conversation(store: Store) {
        let now = now_millis();
        let quiet = create_at(&store, &["alice", "bob"], days_before(now, 120)).await;
        let other = create_at(&store, &["alice", "carol"], days_before(now, 130)).await;
        let cutoffs = RetentionPolicy::default().cutoffs(now);
        assert_eq!(archive_all(&store, &cutoffs, 10).await.0, 2);
        assert!(listed(&store, "alice").await.is_empty());

        let message = send_plain_at(&store, quiet.id, "bob", now).await;
        assert_eq!(listed(&store, "alice").await, vec![quiet.id]);
        assert_eq!(listed(&store, "bob").await, vec![quiet.id]);
        assert_eq!(listed_archived(&store, "alice").await, vec![other.id]);
        let summary = store
            .conversations
            .list_conversations(&user("alice"), 10, None)
            .await
            .expect("list")
            .remove(0);
        assert_eq!(summary.conversation.last_message_at, Some(now));
        assert_eq!(summary.last_message, Some(message));
        assert_eq!(summary.unread_count, 1);
        // Active again: a run at the same instant leaves it alone.
        assert_eq!(counts(&store, &cutoffs).await.archived, 0);
    }

    pub async fn deleted_messages_lose_their_content_after_the_grace_period_once(store: Store) {
        let now = now_millis();
        let c = create_at(&store, &["alice", "bob"], days_before(now, 70)).await;
        let long_deleted = send_plain_at(&store, c.id, "alice", days_before(now, 60)).await;
        delete_at(&store, &long_deleted, days_before(now, 40)).await;
        let with_picture =
            send_at(&store, c.id, "bob", vec![picture()], days_before(now, 60)).await;
        delete_at(&store, &with_picture, days_before(now, 31)).await;
        let on_the_edge = send_plain_at(&store, c.id, "bob", days_before(now, 60)).await;
        delete_at(&store, &on_the_edge, days_before(now, 30)).await;
        let lately_deleted = send_plain_at(&store, c.id, "alice", days_before(now, 60)).await;
        delete_at(&store, &lately_deleted, days_before(now, 20)).await;
        let kept = send_plain_at(&store, c.id, "bob", days_before(now, 60)).await;

        let cutoffs = RetentionPolicy::default().cutoffs(now);
        assert_eq!(counts(&store, &cutoffs).await.purged, 2);
        let first = store
            .retention
            .purge_deleted_messages(&cutoffs, 1)
            .await
            .expect("purge");
        assert_eq!(first, 1, "one row per batch");
        assert_eq!(purge_all(&store, &cutoffs, 1).await, 1);
        // Erased (empty content and attachments) rows are not counted again.
        assert_eq!(counts(&store, &cutoffs).await.purged, 0);
        assert_eq!(purge_all(&store, &cutoffs, 10).await, 0);

        // Nothing else changed: the rows stay, history is the same.
        assert_eq!(history_ids(&store, c.id).await, vec![kept.id]);
        assert_eq!(
            store.messages.message(kept.id).await.expect("read"),
            Some(kept)
        );
        // Eleven days later the rest of the deleted messages is due.
        let later = RetentionPolicy::default().cutoffs(now + TimeDelta::days(11));
        assert_eq!(counts(&store, &later).await.purged, 2);
        assert_eq!(purge_all(&store, &later, 10).await, 2);
    }

    pub async fn old_messages_are_deleted_and_unread_counts_stay_exact(store: Store) {
        let now = now_millis();
        let c = create_at(&store, &["alice", "bob", "carol"], days_before(now, 500)).await;
        let o1 = send_plain_at(&store, c.id, "bob", days_before(now, 400)).await;
        let o2 = send_plain_at(&store, c.id, "bob", days_before(now, 399)).await;
        send_plain_at(&store, c.id, "bob", days_before(now, 398)).await;
        let o4 = send_plain_at(&store, c.id, "alice", days_before(now, 397)).await;
        let r1 = send_plain_at(&store, c.id, "bob", days_before(now, 2)).await;
        let r2 = send_plain_at(&store, c.id, "bob", days_before(now, 1)).await;
        let id = c.id;
        let advance = |who: &'static str, to: MessageId| {
            let store = store.clone();
            async move {
                store
                    .cursors
                    .advance_read_cursor(id, &user(who), to, days_before(now, 1))
                    .await
                    .expect("advance")
            }
        };
        advance("alice", o2.id).await;
        advance("bob", o4.id).await;
        advance("carol", r1.id).await;
        let unread = |store: Store| async move {
            let mut all = store
                .cursors
                .unread_in_conversation(id)
                .await
                .expect("unread");
            all.sort();
            all
        };
        assert_eq!(
            unread(store.clone()).await,
            vec![(user("alice"), 3), (user("bob"), 0), (user("carol"), 1)]
        );

        let cutoffs = policy_deleting_after(365, 3).cutoffs(now);
        assert_eq!(counts(&store, &cutoffs).await.deleted, 4);
        assert_eq!(delete_all(&store, &cutoffs, 3).await, 4);
        assert_eq!(counts(&store, &cutoffs).await.deleted, 0);
        assert_eq!(history_ids(&store, c.id).await, vec![r1.id, r2.id]);
        assert_eq!(store.messages.message(o1.id).await.expect("read"), None);
        assert_eq!(
            store
                .messages
                .latest_message_id(c.id)
                .await
                .expect("latest"),
            Some(r2.id)
        );

        // A cursor on a deleted message is cleared (the schema's ON DELETE
        // SET NULL); one on a message that stays does not move.
        let cursor = |who: &'static str| {
            let store = store.clone();
            async move {
                store
                    .cursors
                    .read_cursor(id, &user(who))
                    .await
                    .expect("cursor")
                    .message_id
            }
        };
        assert_eq!(cursor("alice").await, None);
        assert_eq!(cursor("bob").await, None);
        assert_eq!(cursor("carol").await, Some(r1.id));
        // Unread is still "what is after the cursor and not mine": alice's
        // third unread message was deleted, nothing else moved.
        assert_eq!(
            unread(store.clone()).await,
            vec![(user("alice"), 2), (user("bob"), 0), (user("carol"), 1)]
        );
        let alices = store
            .cursors
            .unread_counts(&user("alice"))
            .await
            .expect("unread counts");
        assert_eq!(alices.get(&c.id), Some(&2));
        // The conversation stays, with its activity.
        let read = store
            .conversations
            .conversation(c.id)
            .await
            .expect("read")
            .expect("still there");
        assert_eq!(read.last_message_at, Some(days_before(now, 1)));
        // The log goes with the messages: its floor is the deleted messages'
        // highest number, and what is left is numbered as before.
        let log = store
            .log
            .log_after(c.id, 0, 100)
            .await
            .expect("log")
            .expect("exists");
        assert_eq!(
            log.floor, o4.seq,
            "numbers up to the last deleted one are gone"
        );
        let left: Vec<u64> = log.entries.iter().map(|e| e.seq).collect();
        assert_eq!(
            left,
            vec![r1.seq, r2.seq, r2.seq + 1, r2.seq + 2, r2.seq + 3]
        );
        // Without a retention age nothing is deleted.
        let keep = RetentionPolicy::default().cutoffs(now + TimeDelta::days(1000));
        assert_eq!(counts(&store, &keep).await.deleted, 0);
        assert_eq!(delete_all(&store, &keep, 3).await, 0);
        assert_eq!(history_ids(&store, c.id).await, vec![r1.id, r2.id]);
    }

    pub async fn a_dry_run_counts_what_a_run_then_changes(store: Store) {
        let now = now_millis();
        let expected = fixture(&store, now).await;
        let job = RetentionJob::new(store.clone(), policy_deleting_after(365, 2));
        assert_eq!(job.dry_run(now).await.expect("dry run"), expected);
        assert_eq!(
            job.dry_run(now).await.expect("dry run"),
            expected,
            "a dry run changes nothing"
        );

        let run = job.run_once(now, &CancellationToken::new()).await;
        assert!(matches!(run.outcome, RunOutcome::Completed), "{run:?}");
        assert_eq!(run.changed, expected);
        assert_eq!(
            job.dry_run(now).await.expect("dry run"),
            RetentionCounts::default()
        );
        let again = job.run_once(now, &CancellationToken::new()).await;
        assert!(matches!(again.outcome, RunOutcome::Completed), "{again:?}");
        assert_eq!(again.changed, RetentionCounts::default(), "nothing twice");
    }

    pub async fn a_stopped_run_changes_nothing_more(store: Store) {
        let now = now_millis();
        let expected = fixture(&store, now).await;
        let job = RetentionJob::new(store.clone(), policy_deleting_after(365, 2));
        let stop = CancellationToken::new();
        stop.cancel();
        let run = job.run_once(now, &stop).await;
        assert!(matches!(run.outcome, RunOutcome::Stopped), "{run:?}");
        assert_eq!(run.changed, RetentionCounts::default());
        assert_eq!(job.dry_run(now).await.expect("dry run"), expected);
        // The lock was released: the next run takes it.
        let run = job.run_once(now, &CancellationToken::new()).await;
        assert!(matches!(run.outcome, RunOutcome::Completed), "{run:?}");
        assert_eq!(run.changed, expected);
    }

    pub async fn two_runs_at_once_change_each_row_once(store: Store) {
        let now = now_millis();
        let expected = fixture(&store, now).await;
        let policy = policy_deleting_after(365, 2);
        let (a, b) = (
            RetentionJob::new(store.clone(), policy),
            RetentionJob::new(store.clone(), policy),
        );
        let stop = CancellationToken::new();
        let (a, b) = tokio::join!(a.run_once(now, &stop), b.run_once(now, &stop));
        for run in [&a, &b] {
            assert!(
                matches!(run.outcome, RunOutcome::Completed | RunOutcome::Skipped),
                "{run:?}"
            );
        }
        assert_eq!(a.changed + b.changed, expected, "{a:?} {b:?}");
        assert_eq!(
            counts(&store, &policy.cutoffs(now)).await,
            RetentionCounts::default()
        );
    }

    /// Without the lock (two nodes that both got it, say, one after the
    /// other's connection died), the statements themselves still change
    /// each row once: they re-check their condition on the rows they change.
    /// The counts of a dry run are what the statements then change.
    pub async fn racing_statements_change_each_row_once(store: Store) {
        let now = now_millis();
        let expected = fixture(&store, now).await;
        let cutoffs = policy_deleting_after(365, 1).cutoffs(now);
        assert_eq!(counts(&store, &cutoffs).await, expected);
        let ((a, _), (b, _)) = tokio::join!(
            archive_all(&store, &cutoffs, 1),
            archive_all(&store, &cutoffs, 1)
        );
        assert_eq!(a + b, expected.archived);
        let (a, b) = tokio::join!(
            purge_all(&store, &cutoffs, 1),
            purge_all(&store, &cutoffs, 1)
        );
        assert_eq!(a + b, expected.purged);
        let (a, b) = tokio::join!(
            delete_all(&store, &cutoffs, 1),
            delete_all(&store, &cutoffs, 1)
        );
        assert_eq!(a + b, expected.deleted);
        let (a, b) = tokio::join!(
            forget_all(&store, &cutoffs, 1),
            forget_all(&store, &cutoffs, 1)
        );
        assert_eq!(a + b, expected.forgotten);
        assert_eq!(counts(&store, &cutoffs).await, RetentionCounts::default());
    }
}

contract_tests!(
    idle_conversations_are_archived_once_and_listed_apart,
    archival_visits_every_conversation_in_small_batches,
    a_new_message_unarchives_its_conversation,
    deleted_messages_lose_their_content_after_the_grace_period_once,
    old_messages_are_deleted_and_unread_counts_stay_exact,
    a_dry_run_counts_what_a_run_then_changes,
    a_stopped_run_changes_nothing_more,
    two_runs_at_once_change_each_row_once,
    racing_statements_change_each_row_once,
);

mod postgres_lock {
    use std::sync::Arc;

    use chrono::TimeDelta;
    use parloir::domain::{
        ConversationId, Limits, NewConversation, RetentionCounts, RetentionPolicy, UserId,
        now_millis,
    };
    use parloir::service::{RetentionJob, RunOutcome};
    use parloir::store::{PostgresStore, Store};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use tokio_util::sync::CancellationToken;

    /// A store over a pool of its own: another node on the same database.
    async fn node_store(options: &PgPoolOptions, connect: &PgConnectOptions) -> Store {
        let pool = options
            .clone()
            .connect_with(connect.clone())
            .await
            .expect("a pool");
        Store::new(Arc::new(PostgresStore::from_pool(pool)))
    }

    async fn idle_conversations(store: &Store, n: usize) {
        let long_ago = now_millis() - TimeDelta::days(365);
        for i in 0..n {
            let new = NewConversation::parse(
                &UserId::parse("user", "alice").expect("a user"),
                &[format!("idle{i}")],
                None,
                &Limits::default(),
            )
            .expect("a conversation");
            store
                .conversations
                .create_conversation(ConversationId::new_random(), &new, long_ago)
                .await
                .expect("create");
        }
    }

    #[sqlx::test(migrations = "migrations/postgres")]
    async fn the_retention_lock_admits_one_node_at_a_time(
        options: PgPoolOptions,
        connect: PgConnectOptions,
    ) {
        let (one, other) = (
            node_store(&options, &connect).await,
            node_store(&options, &connect).await,
        );
        idle_conversations(&one, 3).await;
        let lease = one
            .retention
            .try_lock_retention()
            .await
            .expect("lock")
            .expect("free at first");
        assert!(
            other
                .retention
                .try_lock_retention()
                .await
                .expect("lock")
                .is_none(),
            "held by the first node"
        );
        let job = RetentionJob::new(other.clone(), RetentionPolicy::default());
        let skipped = job.run_once(now_millis(), &CancellationToken::new()).await;
        assert!(
            matches!(skipped.outcome, RunOutcome::Skipped),
            "{skipped:?}"
        );
        assert_eq!(skipped.changed, RetentionCounts::default());

        lease.release().await.expect("released");
        let run = job.run_once(now_millis(), &CancellationToken::new()).await;
        assert!(matches!(run.outcome, RunOutcome::Completed), "{run:?}");
        assert_eq!(run.changed.archived, 3);
        // The run let go of the lock too.
        let taken = other
            .retention
            .try_lock_retention()
            .await
            .expect("lock")
            .expect("free after the run");
        // A lease dropped without a release (a cancelled run) closes its
        // connection, and the server lets the lock go with the session as
        // soon as it notices: asked again until then, within a deadline.
        drop(taken);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let lease = loop {
            if let Some(lease) = one.retention.try_lock_retention().await.expect("lock") {
                break lease;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a dropped lease still holds the lock"
            );
        };
        lease.release().await.expect("released");
    }

    /// Two nodes (two pools on one database) running retention at the same
    /// moment: one does the work, or each does part of it, never a row twice.
    #[sqlx::test(migrations = "migrations/postgres")]
    async fn two_nodes_running_retention_at_once_change_each_row_once(
        options: PgPoolOptions,
        connect: PgConnectOptions,
    ) {
        let (one, other) = (
            node_store(&options, &connect).await,
            node_store(&options, &connect).await,
        );
        idle_conversations(&one, 7).await;
        let policy = RetentionPolicy {
            batch: 2,
            ..RetentionPolicy::default()
        };
        let now = now_millis();
        let stop = CancellationToken::new();
        let (a, b) = (
            RetentionJob::new(one, policy),
            RetentionJob::new(other, policy),
        );
        let (ra, rb) = tokio::join!(a.run_once(now, &stop), b.run_once(now, &stop));
        assert_eq!(
            ra.changed.archived + rb.changed.archived,
            7,
            "{ra:?} {rb:?}"
        );
        assert_eq!(
            a.dry_run(now).await.expect("dry run"),
            RetentionCounts::default()
        );
    }
}
