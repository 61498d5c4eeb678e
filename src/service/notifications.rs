//! Offline notifications: who is told, when, and what. Runs on every node
//! (`app::background::notify` schedules it); the store's leases make each
//! step safe to run on several nodes at once.
//!
//! 1. **Gather.** A committed message left an outbox entry (in its own
//!    transaction). Each entry becomes, for each other participant with no
//!    connected device anywhere, a pending notification per configured
//!    channel, due `delay` later; messages that arrive before it falls due
//!    fold into it (a count and the latest message).
//! 2. **Deliver.** When due, a notification is cancelled if the recipient
//!    has read up to its latest message or is connected again; otherwise
//!    the channel's courier delivers it. A failure is retried with
//!    exponential backoff and jitter, up to `max_attempts`, then the
//!    notification is dead (kept, counted, logged once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use tracing::{Instrument as _, debug, info_span, warn};

use super::ServiceResult;
use crate::domain::{
    Channel, ConversationId, DueNotification, Gathered, MessageId, NotificationId, Settlement,
    UserId, excerpt, format_time,
};
use crate::ephemeral::Ephemeral;
use crate::instruments::{self, NotificationOutcome};
use crate::notify::{Courier, Delivery, Outgoing};
use crate::protocol::{MESSAGE_UNREAD, NotifiedMessage, UnreadNotification};
use crate::store::Store;

/// Timings and limits of offline notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifySettings {
    /// How long a notification waits for its recipient to come back or read.
    pub delay: Duration,
    /// Attempts per notification before it is dead.
    pub max_attempts: u32,
    /// How long a claim holds a row: a node that dies mid-delivery leaves
    /// it to the others after this. Longer than a courier's timeout.
    pub lease: Duration,
    /// The wait before the first retry; it doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Outbox entries, or notifications, taken per step.
    pub batch: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(60),
            max_attempts: 8,
            lease: Duration::from_secs(60),
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            batch: 64,
        }
    }
}

/// The notification use cases, with the couriers of the configured channels.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ephemeral: Ephemeral,
    couriers: HashMap<Channel, Arc<dyn Courier>>,
    settings: NotifySettings,
}

impl Notifier {
    pub fn new(
        store: Store,
        ephemeral: Ephemeral,
        couriers: Vec<Arc<dyn Courier>>,
        settings: NotifySettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ephemeral,
                couriers: couriers.into_iter().map(|c| (c.channel(), c)).collect(),
                settings,
            }),
        }
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.inner.settings
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// One gathering step: claims outbox entries and folds them into
    /// pending notifications for offline recipients. Returns how many
    /// entries it took (a full batch: call again).
    pub async fn gather_once(&self, now: DateTime<Utc>) -> ServiceResult<usize> {
        let settings = self.inner.settings;
        let entries = self
            .store()
            .notifications
            .claim_outbox(now, now + lease(settings.lease), settings.batch)
            .await?;
        if entries.is_empty() {
            return Ok(0);
        }
        // Per conversation: each sender's newest message and count.
        let mut by_conversation: BTreeMap<ConversationId, Vec<(UserId, MessageId)>> =
            BTreeMap::new();
        for e in &entries {
            by_conversation
                .entry(e.conversation_id)
                .or_default()
                .push((e.sender_id.clone(), e.message_id));
        }
        let mut recipients_of = HashMap::new();
        let mut everyone = HashSet::new();
        for conversation in by_conversation.keys() {
            let participants = self
                .store()
                .participants
                .participants(*conversation)
                .await?;
            everyone.extend(participants.iter().cloned());
            recipients_of.insert(*conversation, participants);
        }
        let everyone: Vec<UserId> = everyone.into_iter().collect();
        let presence = self.inner.ephemeral.presence.presence(&everyone).await?;
        let online = |user: &UserId| presence.get(user).is_some_and(|p| p.online);

        let due_at = now + lease(settings.delay);
        let mut gathered = Vec::new();
        for (conversation, messages) in &by_conversation {
            let participants = recipients_of
                .get(conversation)
                .map_or(&[][..], Vec::as_slice);
            for recipient in participants.iter().filter(|r| !online(r)) {
                let theirs = messages.iter().filter(|(sender, _)| sender != recipient);
                let (count, latest) = theirs.fold((0u32, None), |(n, latest), (_, id)| {
                    (n + 1, latest.max(Some(*id)))
                });
                let Some(latest) = latest else { continue };
                for channel in self.inner.couriers.keys() {
                    gathered.push(Gathered {
                        id: NotificationId::new_random(),
                        channel: *channel,
                        recipient_id: recipient.clone(),
                        conversation_id: *conversation,
                        latest_message_id: latest,
                        message_count: count,
                        due_at,
                    });
                }
            }
        }
        let done: Vec<MessageId> = entries.iter().map(|e| e.message_id).collect();
        self.store()
            .notifications
            .gather_notifications(&gathered, &done, now)
            .await?;
        for g in &gathered {
            instruments::notification(g.channel, NotificationOutcome::Gathered, 1);
        }
        Ok(entries.len())
    }

    /// One delivery step: claims due notifications and settles each.
    /// Returns how many it claimed (a full batch: call again).
    pub async fn deliver_once(&self, now: DateTime<Utc>) -> ServiceResult<usize> {
        let settings = self.inner.settings;
        let due = self
            .store()
            .notifications
            .claim_due_notifications(now, now + lease(settings.lease), settings.batch)
            .await?;
        let claimed = due.len();
        join_all(due.into_iter().map(|n| {
            let span = info_span!(
                "notification.deliver",
                notification.id = %n.id,
                channel = n.channel.as_str(),
                attempt = n.attempt,
                user.id = %n.recipient_id,
                conversation.id = %n.conversation_id,
                outcome = tracing::field::Empty,
            );
            self.attempt(n, now).instrument(span)
        }))
        .await;
        Ok(claimed)
    }

    /// Reports the backlog gauges.
    pub async fn report_backlog(&self, now: DateTime<Utc>) -> ServiceResult<()> {
        let backlog = self.store().notifications.notification_backlog().await?;
        let late = backlog
            .oldest_due
            .and_then(|due| (now - due).to_std().ok())
            .unwrap_or_default();
        instruments::notification_backlog(backlog.queued, late);
        Ok(())
    }

    async fn attempt(&self, n: DueNotification, now: DateTime<Utc>) {
        let settlement = match self.prepare(&n, now).await {
            Ok(Prepared::Cancel(reason)) => Settlement::Cancelled { reason },
            Ok(Prepared::Send(outgoing, courier)) => match courier.deliver(&outgoing).await {
                Delivery::Delivered => Settlement::Sent,
                Delivery::Refused(error) => Settlement::Dead { error },
                Delivery::Retry(error) => self.retry_or_give_up(&n, now, error),
            },
            // The store or shared state failed while preparing: the attempt
            // counts, like any other failure.
            Err(e) => self.retry_or_give_up(&n, now, e.to_string()),
        };
        let outcome = match &settlement {
            Settlement::Sent => NotificationOutcome::Sent,
            Settlement::Cancelled { .. } => NotificationOutcome::Cancelled,
            Settlement::Retry { .. } => NotificationOutcome::Retried,
            Settlement::Dead { .. } => NotificationOutcome::Dead,
        };
        tracing::Span::current().record("outcome", outcome.label());
        match self
            .store()
            .notifications
            .settle_notification(n.id, n.attempt, &settlement, now)
            .await
        {
            Ok(true) => {
                instruments::notification(n.channel, outcome, 1);
                match &settlement {
                    Settlement::Dead { error } => warn!(
                        notification.id = %n.id,
                        channel = n.channel.as_str(),
                        attempts = n.attempt,
                        error = %error,
                        "offline notification is dead: no more attempts"
                    ),
                    Settlement::Retry { at, error } => debug!(
                        notification.id = %n.id,
                        retry_at = %at,
                        error = %error,
                        "offline notification attempt failed; retrying later"
                    ),
                    _ => {}
                }
            }
            // Our lease ran out and another node claimed it: theirs to settle.
            Ok(false) => {
                debug!(notification.id = %n.id, "notification was claimed again elsewhere")
            }
            // The lease runs out and the notification is tried again: a
            // delivered one may be delivered twice (receivers de-duplicate
            // by webhook-id; an e-mail carries it as its Message-ID).
            Err(e) => {
                warn!(notification.id = %n.id, error = %e, "could not record a notification attempt")
            }
        }
    }

    fn retry_or_give_up(
        &self,
        n: &DueNotification,
        now: DateTime<Utc>,
        error: String,
    ) -> Settlement {
        let settings = &self.inner.settings;
        if n.attempt >= settings.max_attempts {
            return Settlement::Dead { error };
        }
        let wait = backoff(
            settings.retry_base,
            settings.retry_max,
            n.attempt,
            rand::random(),
        );
        Settlement::Retry {
            at: now + lease(wait),
            error,
        }
    }

    /// Decides whether the notification is still wanted and builds it.
    async fn prepare(&self, n: &DueNotification, now: DateTime<Utc>) -> ServiceResult<Prepared> {
        let Some(courier) = self.inner.couriers.get(&n.channel) else {
            return Ok(Prepared::Cancel("channel not configured"));
        };
        let store = self.store();
        let cursor = store
            .cursors
            .read_cursor(n.conversation_id, &n.recipient_id)
            .await?;
        if cursor.message_id >= Some(n.latest_message_id) {
            return Ok(Prepared::Cancel("read"));
        }
        let presence = self
            .inner
            .ephemeral
            .presence
            .presence(std::slice::from_ref(&n.recipient_id))
            .await?;
        if presence.get(&n.recipient_id).is_some_and(|p| p.online) {
            return Ok(Prepared::Cancel("online"));
        }
        let Some(message) = store.messages.message(n.latest_message_id).await? else {
            return Ok(Prepared::Cancel("message deleted"));
        };
        let email = match n.channel {
            Channel::Webhook => None,
            Channel::Email => match store.notifications.contact(&n.recipient_id).await? {
                Some(c) if !c.email_enabled => return Ok(Prepared::Cancel("e-mails turned off")),
                Some(c) if c.email.is_some() => c.email,
                _ => return Ok(Prepared::Cancel("no e-mail address")),
            },
        };
        let unread_count = store
            .cursors
            .unread_counts(&n.recipient_id)
            .await?
            .get(&n.conversation_id)
            .copied()
            .unwrap_or(0);
        if unread_count == 0 {
            return Ok(Prepared::Cancel("read"));
        }
        let sender_name = store
            .notifications
            .contact(&message.sender_id)
            .await?
            .and_then(|c| c.name)
            .unwrap_or_else(|| message.sender_id.to_string());
        let conversation_title = store
            .conversations
            .conversation(n.conversation_id)
            .await?
            .and_then(|c| c.title);
        let outgoing = Outgoing {
            body: UnreadNotification {
                id: n.id,
                kind: MESSAGE_UNREAD.to_owned(),
                recipient_id: n.recipient_id.clone(),
                conversation_id: n.conversation_id,
                unread_count,
                latest_message: NotifiedMessage {
                    id: message.id,
                    sender_id: message.sender_id.clone(),
                    sender_name,
                    excerpt: excerpt(&message.content),
                    created_at: format_time(&message.created_at),
                },
            },
            email,
            conversation_title,
            conversation_id: n.conversation_id,
            at: now,
        };
        Ok(Prepared::Send(Box::new(outgoing), courier.clone()))
    }
}

enum Prepared {
    Cancel(&'static str),
    Send(Box<Outgoing>, Arc<dyn Courier>),
}

/// The wait before the attempt after `attempt`: `base · 2^(attempt-1)`,
/// capped at `max`, then scaled by a jitter in [0.5, 1) so that receivers
/// that failed together are not retried together ("equal jitter").
pub fn backoff(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1 << exponent).min(max);
    full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// A std duration as chrono's (saturating: settings are validated far below).
fn lease(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_the_full_wait() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(base, max, 1, 1.0), base);
        assert_eq!(backoff(base, max, 1, 0.0), base / 2);
        assert_eq!(backoff(base, max, 3, 1.0), Duration::from_secs(40));
        assert_eq!(backoff(base, max, 30, 1.0), max);
        assert_eq!(backoff(base, max, u32::MAX, 0.5), max.mul_f64(0.75));
    }
}
