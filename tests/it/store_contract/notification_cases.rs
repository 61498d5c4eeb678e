//! Contract cases of the `Notifications` seam, run by `store_contract.rs`'s
//! `contract_tests!` against every store (each built with the outbox on).

use chrono::TimeDelta;
use parloir::domain::{
    Channel, Gathered, MessageId, NotificationId, Settlement, UserId, now_millis,
};
use parloir::store::Store;

use super::contract::{create, send, user};

fn gathered(
    recipient: &str,
    conversation: parloir::domain::ConversationId,
    latest: MessageId,
    count: u32,
    due_in_secs: i64,
) -> Gathered {
    Gathered {
        id: NotificationId::new_random(),
        channel: Channel::Webhook,
        recipient_id: user(recipient),
        conversation_id: conversation,
        latest_message_id: latest,
        message_count: count,
        due_at: now_millis() + TimeDelta::seconds(due_in_secs),
    }
}

fn lease(secs: i64) -> chrono::DateTime<chrono::Utc> {
    now_millis() + TimeDelta::seconds(secs)
}

pub async fn a_stored_message_waits_in_the_outbox_until_gathered(store: Store) {
    let c = create(&store, &["alice", "bob"]).await;
    let m = send(&store, c.id, "alice", "are you there?").await;
    let now = now_millis();
    let claimed = store
        .notifications
        .claim_outbox(now, lease(60), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message_id, m.id);
    assert_eq!(claimed[0].conversation_id, c.id);
    assert_eq!(claimed[0].sender_id, user("alice"));
    assert!(
        store
            .notifications
            .claim_outbox(now, lease(60), 10)
            .await
            .expect("claim again")
            .is_empty(),
        "leased entries are nobody else's"
    );
    // The lease runs out (the claimer died): another claimer takes it.
    let later = lease(61);
    let again = store
        .notifications
        .claim_outbox(later, later + TimeDelta::seconds(60), 10)
        .await
        .expect("claim after the lease");
    assert_eq!(again.len(), 1);
    store
        .notifications
        .gather_notifications(&[], &[m.id], later)
        .await
        .expect("gather");
    assert!(
        store
            .notifications
            .claim_outbox(lease(3600), lease(3660), 10)
            .await
            .expect("claim after gathering")
            .is_empty(),
        "a gathered entry is gone"
    );
}

pub async fn gathered_messages_fold_into_one_pending_notification(store: Store) {
    let c = create(&store, &["alice", "bob"]).await;
    let first = send(&store, c.id, "alice", "one").await;
    let second = send(&store, c.id, "alice", "two").await;
    let now = now_millis();
    let n = store.notifications.as_ref();
    n.gather_notifications(&[gathered("bob", c.id, first.id, 1, -1)], &[], now)
        .await
        .expect("first gather");
    n.gather_notifications(&[gathered("bob", c.id, second.id, 1, -1)], &[], now)
        .await
        .expect("second gather");
    // The same messages again (a claimer that died after gathering): nothing added.
    n.gather_notifications(&[gathered("bob", c.id, second.id, 1, -1)], &[], now)
        .await
        .expect("repeated gather");
    assert_eq!(n.notification_backlog().await.expect("backlog").queued, 1);

    let due = n
        .claim_due_notifications(now, lease(60), 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].recipient_id, user("bob"));
    assert_eq!(due[0].latest_message_id, second.id);
    assert_eq!(due[0].message_count, 2);
    assert_eq!(due[0].attempt, 1);

    // Claimed, it gathers no more: a newer message starts a notification of its own.
    let third = send(&store, c.id, "alice", "three").await;
    n.gather_notifications(&[gathered("bob", c.id, third.id, 1, 60)], &[], now)
        .await
        .expect("gather after the claim");
    assert_eq!(n.notification_backlog().await.expect("backlog").queued, 2);
    assert!(
        n.claim_due_notifications(now, lease(60), 10)
            .await
            .expect("claim")
            .is_empty(),
        "the new one is not due, the first is leased"
    );
}

pub async fn a_due_notification_goes_to_one_claimer(store: Store) {
    let c = create(&store, &["alice", "bob"]).await;
    let m = send(&store, c.id, "alice", "hello all").await;
    let now = now_millis();
    let recipients: Vec<String> = (0..24).map(|i| format!("user-{i}")).collect();
    let all: Vec<Gathered> = recipients
        .iter()
        .map(|r| gathered(r, c.id, m.id, 1, -1))
        .collect();
    store
        .notifications
        .gather_notifications(&all, &[], now)
        .await
        .expect("gather");
    // Many claimers at once, each taking a few: together they take each once.
    let claims = futures_util::future::join_all((0..12).map(|_| {
        store
            .notifications
            .claim_due_notifications(now, lease(60), 3)
    }))
    .await;
    let mut ids = Vec::new();
    for claim in claims {
        ids.extend(claim.expect("claim").into_iter().map(|n| n.id));
    }
    // A claimer that found every row locked took none: the rest are still there.
    let rest = store
        .notifications
        .claim_due_notifications(now, lease(60), 100)
        .await
        .expect("claim the rest");
    ids.extend(rest.into_iter().map(|n| n.id));
    let claimed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "a notification was claimed twice");
    assert_eq!(claimed, 24, "every due notification was claimed");
}

pub async fn only_the_current_attempt_settles_a_notification(store: Store) {
    let c = create(&store, &["alice", "bob"]).await;
    let m = send(&store, c.id, "alice", "ping").await;
    let now = now_millis();
    let n = store.notifications.as_ref();
    n.gather_notifications(&[gathered("bob", c.id, m.id, 1, -1)], &[], now)
        .await
        .expect("gather");
    let first = n
        .claim_due_notifications(now, now + TimeDelta::seconds(1), 10)
        .await
        .expect("claim")
        .remove(0);
    // The first claimer stalls past its lease; a second claims the notification.
    let later = now + TimeDelta::seconds(2);
    let second = n
        .claim_due_notifications(later, later + TimeDelta::seconds(60), 10)
        .await
        .expect("claim after the lease")
        .remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    assert!(
        !n.settle_notification(first.id, first.attempt, &Settlement::Sent, later)
            .await
            .expect("stale settle"),
        "the stalled attempt no longer holds it"
    );
    let retry_at = later + TimeDelta::seconds(30);
    assert!(
        n.settle_notification(
            second.id,
            second.attempt,
            &Settlement::Retry {
                at: retry_at,
                error: "503".into()
            },
            later
        )
        .await
        .expect("retry")
    );
    assert!(
        n.claim_due_notifications(later, lease(60), 10)
            .await
            .expect("claim before the retry")
            .is_empty()
    );
    let third = n
        .claim_due_notifications(retry_at, retry_at + TimeDelta::seconds(60), 10)
        .await
        .expect("claim at the retry")
        .remove(0);
    assert_eq!(third.attempt, 3);
    assert!(
        n.settle_notification(third.id, 3, &Settlement::Sent, retry_at)
            .await
            .expect("sent")
    );
    let backlog = n.notification_backlog().await.expect("backlog");
    assert_eq!((backlog.queued, backlog.oldest_due), (0, None));
    assert!(
        n.claim_due_notifications(retry_at + TimeDelta::days(1), lease(86_460), 10)
            .await
            .expect("claim")
            .is_empty(),
        "a sent notification is final"
    );
}

pub async fn contacts_keep_the_last_known_address_and_the_users_choice(store: Store) {
    let n = store.notifications.as_ref();
    let bob = UserId::parse("user", "bob").expect("valid id");
    assert_eq!(n.contact(&bob).await.expect("unknown"), None);
    n.remember_contact(&bob, Some("bob@example.com"), Some("Bob"), now_millis())
        .await
        .expect("remember");
    // A later token without the claims keeps what is known.
    n.remember_contact(&bob, None, None, now_millis())
        .await
        .expect("remember without claims");
    let known = n.contact(&bob).await.expect("contact").expect("known");
    assert_eq!(known.email.as_deref(), Some("bob@example.com"));
    assert_eq!(known.name.as_deref(), Some("Bob"));
    assert!(known.email_enabled, "on until turned off");

    n.set_email_notifications(&bob, false, now_millis())
        .await
        .expect("turn off");
    n.remember_contact(&bob, Some("bob@new.example"), None, now_millis())
        .await
        .expect("new address");
    let known = n.contact(&bob).await.expect("contact").expect("known");
    assert_eq!(known.email.as_deref(), Some("bob@new.example"));
    assert!(
        !known.email_enabled,
        "a new token does not turn e-mails back on"
    );

    // A user may choose before any token of theirs was seen.
    let carol = UserId::parse("user", "carol").expect("valid id");
    n.set_email_notifications(&carol, false, now_millis())
        .await
        .expect("turn off");
    let carol = n.contact(&carol).await.expect("contact").expect("known");
    assert_eq!((carol.email, carol.email_enabled), (None, false));
}
