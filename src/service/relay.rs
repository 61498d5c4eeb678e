//! Changes committed whose broadcast may not have reached everyone live
//! (PROTOCOL.md §8: "gaps are found without a reconnect"). Clients apply
//! events by number and sync what they miss; what they cannot notice by
//! themselves is a lost *last* event. So the node tells a conversation's
//! room its latest number (`conversation-latest`) when a change may have
//! been lost:
//! - a broadcast that reached only this node (Redis unreachable or slow)
//!   is owed to the room, and told by `relay_once` once Redis answers;
//! - when another node dies, it may have committed changes it never
//!   announced: each survivor tells its own sockets' conversations
//!   (`tell_local_rooms`);
//! - a send answered `UNKNOWN_OUTCOME` is looked for again after its
//!   deadline, and announced if it was stored (`settle_unknown_outcome`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tracing::{instrument, warn};

use super::{Messaging, ServiceResult};
use crate::auth::User;
use crate::domain::{ConversationId, MessageId};
use crate::fanout::{Audience, Delivered};
use crate::protocol::{SeqMark, ev, rooms};

/// Most conversations one query asks the latest number of.
const LATEST_BATCH: usize = 1000;

/// When a send of unknown outcome is looked for again: after the store's
/// own deadline, and once more much later (a commit can wait on its flush).
const UNKNOWN_OUTCOME_CHECKS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(60)];

/// Conversations owed a `conversation-latest`.
#[derive(Default)]
pub(super) struct Owed(Mutex<HashSet<ConversationId>>);

impl Owed {
    pub(super) fn owe(&self, conversation: ConversationId) {
        self.lock().insert(conversation);
    }

    fn take(&self) -> Vec<ConversationId> {
        self.lock().drain().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ConversationId>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Messaging {
    /// Tells each owed conversation's room its latest number, cluster-wide.
    /// Those that again reach only this node stay owed. Returns how many
    /// were told.
    #[instrument(skip_all)]
    pub async fn relay_once(&self) -> ServiceResult<usize> {
        let owed = self.inner.relay.take();
        if owed.is_empty() {
            return Ok(0);
        }
        let latest = match self.store().log.latest_seqs(&owed).await {
            Ok(latest) => latest,
            Err(e) => {
                owed.into_iter().for_each(|c| self.inner.relay.owe(c));
                return Err(e.into());
            }
        };
        let mut told = 0;
        for (conversation, seq) in latest {
            let mark = SeqMark {
                conversation_id: conversation,
                seq,
            };
            let audience = Audience::room(rooms::conversation(conversation));
            match self.emit(audience, ev::CONVERSATION_LATEST, &mark).await {
                Delivered::Everywhere => told += 1,
                Delivered::ThisNodeOnly => self.inner.relay.owe(conversation),
            }
        }
        Ok(told)
    }

    /// Tells this node's sockets the latest number of every conversation
    /// they joined (after another node died). Returns how many rooms.
    #[instrument(skip_all)]
    pub async fn tell_local_rooms(&self) -> ServiceResult<usize> {
        let conversations: Vec<ConversationId> = self
            .fanout()
            .local_rooms()
            .await
            .iter()
            .filter_map(|room| rooms::conversation_of(room))
            .collect();
        let mut told = 0;
        for batch in conversations.chunks(LATEST_BATCH) {
            for (conversation, seq) in self.store().log.latest_seqs(batch).await? {
                let mark = SeqMark {
                    conversation_id: conversation,
                    seq,
                };
                match serde_json::to_value(&mark) {
                    Ok(payload) => self.fanout().emit_local(
                        rooms::conversation(conversation),
                        ev::CONVERSATION_LATEST,
                        &payload,
                    ),
                    Err(e) => warn!(error = %e, "conversation-latest failed to serialise"),
                }
                told += 1;
            }
        }
        Ok(told)
    }

    /// A send answered `UNKNOWN_OUTCOME`: looks for its message after the
    /// store's deadline and announces it if it was stored and no retry has
    /// announced it yet. Runs detached (the drain waits for it only as long
    /// as its grace period).
    pub(super) fn settle_unknown_outcome(&self, user: &User, message: MessageId) {
        let (service, user) = (self.clone(), user.clone());
        self.inner.detached.spawn(tracing::Instrument::in_current_span(async move {
            for wait in UNKNOWN_OUTCOME_CHECKS {
                tokio::time::sleep(wait).await;
                let stored = match service.store().messages.message(message).await {
                    Ok(stored) => stored,
                    Err(e) => {
                        tracing::debug!(error = %e, "a message of unknown outcome not looked for yet");
                        continue;
                    }
                };
                let Some(stored) = stored else {
                    tracing::debug!("a message of unknown outcome is not stored (yet)");
                    continue;
                };
                match service.ephemeral().unannounced.take_unannounced(message).await {
                    Ok(true) => service.announce_new_message(&user, &stored).await,
                    Ok(false) => tracing::debug!("a message of unknown outcome was announced by its retry"),
                    Err(e) => warn!(error = %e, "a message of unknown outcome was stored; not announced"),
                }
                return;
            }
        }));
    }
}
