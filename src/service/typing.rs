//! Typing indicators: relayed at most once per interval, expiring after
//! the typing TTL, swept on every node.

use chrono::Utc;
use tracing::{instrument, warn};

use super::{Messaging, ServiceResult};
use crate::auth::User;
use crate::domain::ConversationId;
use crate::ephemeral::{Typist, UnixMillis};
use crate::fanout::Audience;
use crate::protocol::{TypingEvent, ev, rooms};

impl Messaging {
    // --------------------------------------------------------------- typing

    /// `user-typing`: relayed to the others in the room at most once per
    /// relay interval; the state expires after the typing TTL.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn start_typing(
        &self,
        user: &User,
        conversation: ConversationId,
    ) -> ServiceResult<()> {
        self.require_participant(conversation, &user.id).await?;
        let typing = typist(user, conversation);
        let settings = &self.inner.settings;
        let relay = self
            .ephemeral()
            .typing
            .start_typing(
                &typing,
                now_unix_millis(),
                settings.typing_ttl,
                settings.rate_limits.typing_relay_interval,
            )
            .await?;
        if relay {
            self.announce_typing(ev::USER_TYPING, &typing).await;
        }
        Ok(())
    }

    /// `user-stopped-typing`.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn stop_typing(
        &self,
        user: &User,
        conversation: ConversationId,
    ) -> ServiceResult<()> {
        self.require_participant(conversation, &user.id).await?;
        self.end_typing(conversation, user).await;
        Ok(())
    }

    /// Ends the user's typing state, announcing the stop once if there was one.
    pub(super) async fn end_typing(&self, conversation: ConversationId, user: &User) {
        match self
            .ephemeral()
            .typing
            .stop_typing(conversation, &user.id)
            .await
        {
            Ok(true) => {
                self.announce_typing(ev::USER_STOPPED_TYPING, &typist(user, conversation))
                    .await;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "typing state unavailable"),
        }
    }

    /// Announces the stop of every typing state expired at `now`. Called
    /// periodically by the node's typing sweeper.
    pub async fn sweep_expired_typing_once(&self, now: UnixMillis) -> ServiceResult<usize> {
        let expired = self.ephemeral().typing.take_expired_typing(now).await?;
        for typist in &expired {
            self.announce_typing(ev::USER_STOPPED_TYPING, typist).await;
        }
        Ok(expired.len())
    }

    pub(super) async fn announce_typing(&self, event: &'static str, typist: &Typist) {
        let payload = TypingEvent {
            conversation_id: typist.conversation_id,
            user_id: &typist.user_id,
            user_name: &typist.user_name,
        };
        let mut audience = Audience::room(rooms::conversation(typist.conversation_id))
            .except(rooms::user(&typist.user_id));
        // Typing does not flow between users in a block, either way.
        for other in self.in_block_with(&typist.user_id).await {
            audience = audience.except(rooms::user(&other));
        }
        self.emit(audience, event, &payload).await;
    }

    /// Tells a socket that just joined who is typing in the conversation.
    pub(super) async fn announce_typists_to(
        &self,
        socket_id: &str,
        user: &User,
        conversation: ConversationId,
    ) {
        let typists = match self
            .ephemeral()
            .typing
            .typing_in(conversation, now_unix_millis())
            .await
        {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "typing state unavailable");
                return;
            }
        };
        let blocked = self.in_block_with(&user.id).await;
        for t in typists
            .iter()
            .filter(|t| t.user_id != user.id && !blocked.contains(&t.user_id))
        {
            let payload = TypingEvent {
                conversation_id: conversation,
                user_id: &t.user_id,
                user_name: &t.user_name,
            };
            self.emit_to_socket(socket_id, ev::USER_TYPING, &payload);
        }
    }
}

/// The wall clock in the unit the ephemeral state keeps time in.
pub fn now_unix_millis() -> UnixMillis {
    Utc::now().timestamp_millis()
}

/// How `user` appears as a typist in `conversation`.
pub(super) fn typist(user: &User, conversation: ConversationId) -> Typist {
    Typist {
        conversation_id: conversation,
        user_id: user.id.clone(),
        user_name: user.display_name().to_owned(),
    }
}
