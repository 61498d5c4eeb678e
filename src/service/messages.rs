//! Message use cases: send (idempotent, rate limited, stored before anything
//! is announced) and soft delete.

use tracing::{instrument, warn};

use super::{Messaging, ServiceError, ServiceResult};
use crate::auth::User;
use crate::domain::{self, Message, MessageId, NewMessage};
use crate::fanout::Audience;
use crate::protocol::{MessageDeleted, ev, rooms};
use crate::store::Inserted;

impl Messaging {
    /// `send-message` (socket) and `POST /conversations/{id}/messages` (HTTP).
    ///
    /// Returns only after the message is committed. A repeat of a
    /// `clientMessageId` returns the stored message and announces nothing.
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
        self.require_participant(new.conversation_id, &user.id)
            .await?;
        match self.ephemeral().quotas.try_acquire_send(&user.id).await {
            Ok(true) => {}
            Ok(false) => {
                crate::instruments::refusal(crate::instruments::Refusal::SendRate);
                return Err(ServiceError::RateLimited);
            }
            // Failing open: a limiter outage must not stop conversations.
            Err(e) => warn!(error = %e, "rate limiter unavailable; send allowed"),
        }
        let (message, inserted) = self
            .store()
            .inserts
            .insert_message(MessageId::new_v7(), &user.id, &new, domain::now_millis())
            .await?;
        span.record("message.id", tracing::field::display(message.id));
        if inserted == Inserted::New {
            crate::instruments::message_stored();
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
    async fn announce_new_message(&self, sender: &User, message: &Message) {
        let room = rooms::conversation(message.conversation_id);
        let announce = self.emit(Audience::room(room), ev::NEW_MESSAGE, message);
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
        if !self
            .store()
            .messages
            .soft_delete_message(id, domain::now_millis())
            .await?
        {
            return Err(ServiceError::NotFound("message"));
        }
        let (service, sender) = (self.clone(), user.id.clone());
        self.after_commit(async move {
            let room = rooms::conversation(message.conversation_id);
            let deleted = MessageDeleted {
                conversation_id: message.conversation_id,
                message_id: id,
            };
            service
                .emit(Audience::room(room), ev::MESSAGE_DELETED, &deleted)
                .await;
            service
                .recount_conversation_unread(message.conversation_id, &sender)
                .await;
        })
        .await;
        Ok(())
    }
}
