//! The use cases of parloir — conversations, messages, read receipts,
//! typing, presence — shared by the Socket.IO gateway and the HTTP API.
//! Authorization, validation, idempotency and "who is told what" live here
//! once. No Socket.IO or HTTP types; storage and delivery go through the
//! `Store`, `Ephemeral` and `Fanout` seams.

mod blocks;
mod contacts;
mod conversations;
mod error;
mod log;
mod messages;
mod notifications;
mod presence;
mod profiles;
mod reads;
mod relay;
mod retention;
mod typing;
mod welcome;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

pub use blocks::{MAX_BLOCKS_PER_USER, REFRESH_EVERY as BLOCKS_REFRESH_EVERY};
pub use error::ServiceError;
pub use notifications::{Notifier, NotifySettings, backoff};
pub use presence::Admission;
pub use retention::{RetentionJob, RetentionRun, RunOutcome};
pub use typing::now_unix_millis;

use crate::config::RateLimits;
use crate::domain::{ConversationId, Limits, UserId};
use crate::ephemeral::Ephemeral;
use crate::fanout::{Audience, Delivered, Fanout};
use crate::store::Store;

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Settings of the use cases, taken from `Config`.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub typing_ttl: Duration,
    /// Sends this node works on at once; more are refused with `UNAVAILABLE`.
    pub max_sends_in_flight: usize,
}

/// The messaging service. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Messaging {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ephemeral: Ephemeral,
    fanout: Arc<dyn Fanout>,
    /// One permit per send in progress (see `send_message`).
    send_slots: Semaphore,
    contacts: contacts::ContactsCache,
    /// What this node read of users' blocks, a few seconds at most.
    blocks: blocks::BlocksCache,
    /// The token claims this node last remembered per user.
    profiles: profiles::Remembered,
    /// Participants this node knows took part in their conversation (it
    /// never ends), so that joining again writes nothing.
    engaged: quick_cache::sync::Cache<(crate::domain::ConversationId, crate::domain::UserId), ()>,
    /// Connected sockets waiting for their welcome (see `welcome`).
    welcomes: welcome::Welcomes,
    /// Conversations whose latest change may not have reached other nodes.
    relay: relay::Owed,
    /// Disconnections shared state could not be told of yet.
    pending_disconnects: PendingDisconnects,
    /// Work that outlives its caller (the announcement of a committed
    /// message whose sender hung up); the drain waits for it.
    detached: TaskTracker,
    settings: ServiceSettings,
}

/// Participants known to have taken part, per node: past it the least used
/// are forgotten and cost one write at their next join.
const ENGAGED_KNOWN: usize = 200_000;

/// Most disconnections kept for a retry; beyond, the oldest are dropped
/// (a restart of this node clears them anyway: `forget_previous_life`).
const MAX_PENDING_DISCONNECTS: usize = 100_000;

#[derive(Default)]
struct PendingDisconnects(
    std::sync::Mutex<std::collections::VecDeque<(crate::auth::User, String)>>,
);

impl PendingDisconnects {
    fn keep(&self, user: crate::auth::User, socket_id: String) {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING_DISCONNECTS {
            pending.pop_front();
        }
        pending.push_back((user, socket_id));
    }

    fn take(&self) -> Vec<(crate::auth::User, String)> {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain(..).collect()
    }
}

impl Messaging {
    pub fn new(
        store: Store,
        ephemeral: Ephemeral,
        fanout: Arc<dyn Fanout>,
        settings: ServiceSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ephemeral,
                fanout,
                send_slots: Semaphore::new(settings.max_sends_in_flight.max(1)),
                contacts: contacts::ContactsCache::new(),
                blocks: blocks::BlocksCache::new(),
                profiles: profiles::Remembered::new(profiles::REMEMBERED_PROFILES),
                engaged: quick_cache::sync::Cache::new(ENGAGED_KNOWN),
                pending_disconnects: PendingDisconnects::default(),
                relay: relay::Owed::default(),
                welcomes: welcome::Welcomes::new(),
                detached: TaskTracker::new(),
                settings,
            }),
        }
    }

    /// Waits for the work callers left behind (at drain, after the last
    /// event has been handled): a committed message is announced before the
    /// node closes its sockets.
    pub async fn finish_detached_work(&self) {
        self.inner.detached.close();
        self.inner.detached.wait().await;
    }

    /// Runs what follows a commit to its end even if the caller goes away
    /// (an HTTP client that hangs up cancels its handler, and with it
    /// whatever the handler still awaits): a committed change is announced
    /// and counted whatever happens to the request. The caller still waits
    /// for it, and so does the drain.
    async fn after_commit<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        use tracing::Instrument as _;
        let handle = self.inner.detached.spawn(work.in_current_span());
        if let Err(e) = handle.await {
            tracing::error!(error = %e, "announcing a committed change failed");
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.settings.limits
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn ephemeral(&self) -> &Ephemeral {
        &self.inner.ephemeral
    }

    fn send_slots(&self) -> &Semaphore {
        &self.inner.send_slots
    }

    fn fanout(&self) -> &dyn Fanout {
        &*self.inner.fanout
    }

    /// Fails with `NotFound` unless `user` participates in `conversation`, so a
    /// stranger cannot tell an existing conversation from a missing one.
    async fn require_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> ServiceResult<()> {
        if self
            .store()
            .participants
            .is_participant(conversation, user)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("conversation"))
        }
    }

    /// Broadcasts a serialisable payload.
    async fn emit<T: Serialize + ?Sized>(
        &self,
        audience: Audience,
        event: &'static str,
        payload: &T,
    ) -> Delivered {
        match serde_json::to_value(payload) {
            Ok(value) => self.fanout().emit(audience, event, value).await,
            Err(e) => {
                tracing::error!(event, error = %e, "event payload failed to serialise");
                Delivered::ThisNodeOnly
            }
        }
    }

    /// Broadcasts a numbered change of `conversation`'s log. When other
    /// nodes were not reached, the relay tells the conversation's room its
    /// latest number once they can be, and the clients behind it sync.
    async fn emit_logged<T: Serialize + ?Sized>(
        &self,
        conversation: ConversationId,
        audience: Audience,
        event: &'static str,
        payload: &T,
    ) {
        if self.emit(audience, event, payload).await == Delivered::ThisNodeOnly {
            self.inner.relay.owe(conversation);
        }
    }

    fn emit_to_socket<T: Serialize + ?Sized>(
        &self,
        socket_id: &str,
        event: &'static str,
        payload: &T,
    ) {
        match serde_json::to_value(payload) {
            Ok(value) => self.fanout().emit_to_socket(socket_id, event, &value),
            Err(e) => tracing::error!(event, error = %e, "event payload failed to serialise"),
        }
    }
}
