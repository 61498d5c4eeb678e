//! Read receipts and unread counters: cursors move forward only, and every
//! reader hears its new counts.

use std::collections::HashMap;

use tracing::{instrument, warn};

use super::typing::typist;
use super::{Messaging, ServiceError, ServiceResult};
use crate::auth::User;
use crate::domain::{self, ConversationId, MessageId, UserId, format_time};
use crate::ephemeral::UnreadCounts;
use crate::fanout::Audience;
use crate::protocol::{ReadReceipt, SeqMark, UnreadReport, UnreadUpdate, ev, rooms};

impl Messaging {
    // ---------------------------------------------------------------- reads

    /// `mark-as-read`: moves the caller's cursor to `message` (never back).
    #[instrument(skip_all, fields(user.id = %user.id, message.id = %message_id, conversation.id = tracing::field::Empty))]
    pub async fn mark_as_read(
        &self,
        user: &User,
        message_id: MessageId,
    ) -> ServiceResult<ReadReceipt> {
        let Some(message) = self.store().messages.message(message_id).await? else {
            return Err(ServiceError::NotFound("message"));
        };
        let conversation = message.conversation_id;
        tracing::Span::current().record("conversation.id", tracing::field::display(conversation));
        if !self
            .store()
            .participants
            .is_participant(conversation, &user.id)
            .await?
        {
            return Err(ServiceError::NotFound("message"));
        }
        self.advance_cursor(user, conversation, message_id).await
    }

    /// `mark-conversation-as-read`: moves the caller's cursor to the latest message.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn mark_conversation_as_read(
        &self,
        user: &User,
        conversation: ConversationId,
    ) -> ServiceResult<ReadReceipt> {
        self.require_participant(conversation, &user.id).await?;
        match self
            .store()
            .messages
            .latest_message_id(conversation)
            .await?
        {
            Some(latest) => self.advance_cursor(user, conversation, latest).await,
            None => {
                let cursor = self
                    .store()
                    .cursors
                    .read_cursor(conversation, &user.id)
                    .await?;
                Ok(ReadReceipt {
                    conversation_id: conversation,
                    message_id: cursor.message_id,
                    user_id: None,
                    read_at: cursor.read_at.as_ref().map(format_time),
                    seq: None,
                })
            }
        }
    }

    async fn advance_cursor(
        &self,
        user: &User,
        conversation: ConversationId,
        to: MessageId,
    ) -> ServiceResult<ReadReceipt> {
        let moved = self
            .store()
            .cursors
            .advance_read_cursor(conversation, &user.id, to, domain::now_millis())
            .await?;
        let receipt = ReadReceipt {
            conversation_id: conversation,
            message_id: moved.cursor.message_id,
            user_id: None,
            read_at: moved.cursor.read_at.as_ref().map(format_time),
            seq: moved.seq,
        };
        if moved.moved {
            let event = ReadReceipt {
                user_id: Some(user.id.clone()),
                ..receipt.clone()
            };
            let (service, reader) = (self.clone(), user.id.clone());
            self.after_commit(async move {
                // Read receipts do not flow between users in a block, either
                // way: the participants among them get the number alone, so
                // that they see no gap to sync.
                let mut audience = Audience::room(rooms::conversation(conversation));
                let blocked = service.in_block_with(&reader).await;
                let mut hidden = Vec::new();
                if !blocked.is_empty() {
                    let participants = service
                        .store()
                        .participants
                        .participants(conversation)
                        .await
                        .unwrap_or_default();
                    for other in blocked {
                        audience = audience.except(rooms::user(&other));
                        if participants.binary_search(&other).is_ok() {
                            hidden.push(rooms::user(&other));
                        }
                    }
                }
                service
                    .emit_logged(conversation, audience, ev::MESSAGE_READ, &event)
                    .await;
                if let (false, Some(seq)) = (hidden.is_empty(), event.seq) {
                    let skipped = SeqMark {
                        conversation_id: conversation,
                        seq,
                    };
                    service
                        .emit(Audience::rooms(hidden), ev::SEQ_SKIPPED, &skipped)
                        .await;
                }
                service.refresh_unread(&reader, Some(conversation)).await;
            })
            .await;
        }
        Ok(receipt)
    }

    // --------------------------------------------------------------- unread

    /// `GET /api/v1/unread`: recounted from the store (the source of truth),
    /// which also heals the maintained counters.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn unread(&self, user: &User) -> ServiceResult<UnreadReport> {
        let counts = self.store().cursors.unread_counts(&user.id).await?;
        if let Err(e) = self
            .ephemeral()
            .unread
            .replace_unread(&user.id, &counts)
            .await
        {
            warn!(error = %e, "unread counters not refreshed");
        }
        let conversations: HashMap<_, _> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        Ok(UnreadReport {
            total_unread: conversations.values().sum(),
            conversations,
        })
    }

    /// After a message is stored (one ephemeral round trip): the sender's
    /// typing state ends, and each recipient gets one more unread on the
    /// maintained counters (O(1) per recipient); a recipient whose counters
    /// are missing gets them rebuilt from the store, which already holds the
    /// message. All of the recipients' devices are told.
    pub(super) async fn message_committed(
        &self,
        sender: &User,
        conversation: ConversationId,
        recipients: &[UserId],
    ) {
        let effects = match self
            .ephemeral()
            .unread
            .message_committed(conversation, &sender.id, recipients)
            .await
        {
            Ok(effects) => effects,
            Err(e) => {
                warn!(error = %e, "typing state and unread counters unavailable");
                return;
            }
        };
        if effects.sender_was_typing {
            self.announce_typing(ev::USER_STOPPED_TYPING, &typist(sender, conversation))
                .await;
        }
        let updated = effects.unread;
        for (user, counts) in updated {
            match counts {
                Some(counts) => self.tell_unread(&user, conversation, counts).await,
                None => self.refresh_unread(&user, Some(conversation)).await,
            }
        }
    }

    /// After a delete: recounts the conversation's unread for every
    /// participant but `except` in one store query, sets them on the
    /// maintained counters in one ephemeral round trip, and tells each
    /// participant whose counters are present. The cost does not grow with
    /// the participants' other conversations, nor by a round trip per
    /// participant; missing counters stay missing (rebuilt when next needed).
    pub(super) async fn recount_conversation_unread(
        &self,
        conversation: ConversationId,
        except: &UserId,
    ) {
        let counts = match self
            .store()
            .cursors
            .unread_in_conversation(conversation)
            .await
        {
            Ok(mut counts) => {
                counts.retain(|(user, _)| user != except);
                counts
            }
            Err(e) => {
                warn!(error = %e, "unread recount failed");
                return;
            }
        };
        let changes = match self
            .ephemeral()
            .unread
            .set_conversation_unread(conversation, &counts)
            .await
        {
            Ok(changes) => changes,
            Err(e) => {
                warn!(error = %e, "unread counters not refreshed");
                return;
            }
        };
        for (user, counts) in changes {
            if let Some(counts) = counts {
                self.tell_unread(&user, conversation, counts).await;
            }
        }
    }

    /// Tells all of a user's devices one conversation's count and the total.
    async fn tell_unread(
        &self,
        user: &UserId,
        conversation: ConversationId,
        (in_conversation, total): (u64, u64),
    ) {
        let update = UnreadUpdate {
            total_unread: total,
            conversation_id: Some(conversation),
            conversation_unread: Some(in_conversation),
        };
        self.emit(
            Audience::room(rooms::user(user)),
            ev::UNREAD_COUNT_UPDATED,
            &update,
        )
        .await;
    }

    /// Recounts one user's unread from the store, stores the counters and
    /// tells all the user's devices.
    async fn refresh_unread(&self, user: &UserId, conversation: Option<ConversationId>) {
        let counts = match self.store().cursors.unread_counts(user).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "unread recount failed");
                return;
            }
        };
        if let Err(e) = self.ephemeral().unread.replace_unread(user, &counts).await {
            warn!(error = %e, "unread counters not refreshed");
        }
        let update = unread_update(&counts, conversation);
        self.emit(
            Audience::room(rooms::user(user)),
            ev::UNREAD_COUNT_UPDATED,
            &update,
        )
        .await;
    }

    /// The user's counters, rebuilt from the store when missing.
    pub(super) async fn current_unread(&self, user: &UserId) -> ServiceResult<UnreadCounts> {
        match self.ephemeral().unread.unread(user).await {
            Ok(Some(counts)) => return Ok(counts),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "unread counters unavailable; recounting"),
        }
        let counts = self.store().cursors.unread_counts(user).await?;
        if let Err(e) = self.ephemeral().unread.replace_unread(user, &counts).await {
            warn!(error = %e, "unread counters not stored");
        }
        Ok(counts)
    }
}

pub(super) fn unread_update(
    counts: &UnreadCounts,
    conversation: Option<ConversationId>,
) -> UnreadUpdate {
    UnreadUpdate {
        total_unread: counts.values().sum(),
        conversation_id: conversation,
        conversation_unread: conversation.map(|c| counts.get(&c).copied().unwrap_or(0)),
    }
}
