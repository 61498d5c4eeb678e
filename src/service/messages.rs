//! Message use cases: send (idempotent, rate limited, stored before anything
//! is announced) and soft delete.

use tracing::{instrument, warn};

use super::{Messaging, ServiceError, ServiceResult};
use crate::auth::User;
use crate::domain::{self, Message, MessageId, NewMessage};
use crate::fanout::Audience;
use crate::protocol::{MessageDeleted, ev, rooms};
use crate::store::{Inserted, StoreError};

/// How long a message of unknown outcome waits for its retry to announce it.
const UNANNOUNCED_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Messaging {
    /// `send-message` (socket) and `POST /conversations/{id}/messages` (HTTP).
    ///
    /// Returns only after the message is committed. A repeat of a
    /// `clientMessageId` returns the stored message and announces nothing,
    /// unless the first attempt was answered `OutcomeUnknown` and committed
    /// anyway: then the repeat announces it (once).
    /// With `max_sends_in_flight` sends in progress, refuses at once
    /// (`Overloaded`) before anything is written.
    /// Broadcasts happen after the commit; their failure does not fail the send.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = tracing::field::Empty, message.id = tracing::field::Empty))]
    pub async fn send_message(&self, user: &User, new: NewMessage) -> ServiceResult<Message> {
        let span = tracing::Span::current();
        span.record(
            "conversation.id",
            tracing::field::display(new.conversation_id),
        );
        // Held until the send is announced: the bound covers the commit and
        // the broadcasts, where an overloaded node queues.
        let Ok(_slot) = self.send_slots().try_acquire() else {
            crate::instruments::send_shed();
            return Err(ServiceError::Overloaded);
        };
        let participants = self
            .store()
            .participants
            .participants(new.conversation_id)
            .await?;
        if participants.binary_search(&user.id).is_err() {
            return Err(ServiceError::NotFound("conversation"));
        }
        self.refuse_if_pair_blocked(&user.id, &participants).await?;
        match self.ephemeral().quotas.try_acquire_send(&user.id).await {
            Ok(true) => {}
            Ok(false) => {
                crate::instruments::refusal(crate::instruments::Refusal::SendRate);
                return Err(ServiceError::RateLimited);
            }
            // Failing open: a limiter outage must not stop conversations.
            Err(e) => warn!(error = %e, "rate limiter unavailable; send allowed"),
        }
        let id = MessageId::new_v7();
        let inserted = self
            .store()
            .inserts
            .insert_message(id, &user.id, &new, domain::now_millis())
            .await;
        let (message, inserted) = match inserted {
            Ok(stored) => stored,
            Err(e @ StoreError::OutcomeUnknown { .. }) => {
                // Stored or not, nobody was told: a retry that finds it announces it.
                if let Err(e) = self
                    .ephemeral()
                    .unannounced
                    .remember_unannounced(id, UNANNOUNCED_KEPT)
                    .await
                {
                    warn!(error = %e, "a message of unknown outcome could not be remembered; a retry will not announce it");
                }
                self.settle_unknown_outcome(user, id);
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        span.record("message.id", tracing::field::display(message.id));
        let announce = match inserted {
            Inserted::New => {
                crate::instruments::message_stored();
                true
            }
            // A retry. The first attempt may have been answered UNKNOWN_OUTCOME
            // and committed anyway: then this one announces it.
            Inserted::Duplicate => self
                .ephemeral()
                .unannounced
                .take_unannounced(message.id)
                .await
                .unwrap_or_else(|e| {
                    warn!(error = %e, "whether a repeated message was announced is unknown; not announcing it");
                    false
                }),
        };
        if announce {
            let (service, user, message) = (self.clone(), user.clone(), message.clone());
            self.after_commit(async move { service.announce_new_message(&user, &message).await })
                .await;
        }
        Ok(message)
    }

    /// `new-message` to the room, and the shared-state update (unread
    /// counters, the sender's typing) whose own announcements follow it.
    /// The two are independent, so they run together: in cluster mode their
    /// Redis commands go out in one write instead of one round trip after
    /// the other, and the send holds its slot for one round trip less.
    pub(super) async fn announce_new_message(&self, sender: &User, message: &Message) {
        let room = rooms::conversation(message.conversation_id);
        let announce = self.emit_logged(
            message.conversation_id,
            Audience::room(room),
            ev::NEW_MESSAGE,
            message,
        );
        let count = async {
            let recipients: Vec<_> = match self
                .store()
                .participants
                .participants(message.conversation_id)
                .await
            {
                Ok(participants) => participants
                    .into_iter()
                    .filter(|p| *p != sender.id)
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "participants unavailable; unread counters not updated");
                    Vec::new()
                }
            };
            self.message_committed(sender, message.conversation_id, &recipients)
                .await;
        };
        tokio::join!(announce, count);
    }

    /// `DELETE /messages/{id}`: the sender soft-deletes their own message.
    #[instrument(skip_all, fields(user.id = %user.id, message.id = %id, conversation.id = tracing::field::Empty))]
    pub async fn delete_message(&self, user: &User, id: MessageId) -> ServiceResult<()> {
        let Some(message) = self.store().messages.message(id).await? else {
            return Err(ServiceError::NotFound("message"));
        };
        tracing::Span::current().record(
            "conversation.id",
            tracing::field::display(message.conversation_id),
        );
        if !self
            .store()
            .participants
            .is_participant(message.conversation_id, &user.id)
            .await?
        {
            return Err(ServiceError::NotFound("message"));
        }
        if message.sender_id != user.id {
            return Err(ServiceError::Forbidden(
                "only the sender may delete a message",
            ));
        }
        let Some(seq) = self
            .store()
            .messages
            .soft_delete_message(id, domain::now_millis())
            .await?
        else {
            return Err(ServiceError::NotFound("message"));
        };
        let (service, sender) = (self.clone(), user.id.clone());
        self.after_commit(async move {
            let room = rooms::conversation(message.conversation_id);
            let deleted = MessageDeleted {
                conversation_id: message.conversation_id,
                message_id: id,
                seq,
            };
            service
                .emit_logged(
                    message.conversation_id,
                    Audience::room(room),
                    ev::MESSAGE_DELETED,
                    &deleted,
                )
                .await;
            service
                .recount_conversation_unread(message.conversation_id, &sender)
                .await;
        })
        .await;
        Ok(())
    }
}
