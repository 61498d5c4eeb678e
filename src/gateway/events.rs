//! Client events: one handler per socket dispatches every event by name to
//! its use case, which parses the payload into a domain value and makes one
//! service call; `respond` answers. Each runs in a span named after its event.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::ParserError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};

use super::respond::{parse, respond};
use super::socket_state::SocketState;
use crate::auth::User;
use crate::budget::SocketBudget;
use crate::domain::{
    ConversationId, JoinRequest, MessageId, NewMessage, SyncCommand, UserId, ValidationError,
};
use crate::instruments;
use crate::protocol::{self, Empty, ev};
use crate::service::{Messaging, ServiceError, ServiceResult};

type Payload = TryData<Value>;

/// Tracks the client events being handled, so a draining node can let them
/// finish — committed and acked — before it closes the sockets.
#[derive(Clone, Default)]
pub struct InFlight(pub tokio_util::task::TaskTracker);

/// Readies a socket for client events: one handler for all of them.
/// socketioxide keeps handlers registered by name in a map of each socket's
/// own; one fallback handler that dispatches by name costs no map at all,
/// which is memory every idle socket keeps (README, Performance).
pub fn register<A: Adapter>(s: &SocketRef<A>) {
    s.on_fallback(dispatch::<A>);
}

/// Every client event: the use case its name selects, in a span carrying the
/// event name, the user, the socket and the outcome `respond` records. An
/// event the contract does not know is refused with `VALIDATION`, and the
/// socket stays connected.
#[allow(clippy::too_many_arguments)] // socketioxide's extractors, one per argument
async fn dispatch<A: Adapter>(
    s: SocketRef<A>,
    ack: AckSender<A>,
    Event(event): Event,
    Extension(state): Extension<Arc<SocketState>>,
    State(svc): State<Messaging>,
    State(in_flight): State<InFlight>,
    TryData(payload): Payload,
) {
    let (user, budget) = (&state.user, &state.budget);
    let call = Call {
        s: &s,
        budget,
        in_flight: &in_flight,
        user,
    };
    let sid = s.id.to_string();
    // Each future is built here but does nothing until `run` has admitted it.
    match event.as_str() {
        ev::JOIN_CONVERSATION => {
            let work = join_conversation(&svc, user, &sid, payload);
            call.run(ack, ev::JOIN_CONVERSATION, work).await;
        }
        ev::LEAVE_CONVERSATION => {
            let work = leave_conversation(&svc, user, &sid, payload);
            call.run(ack, ev::LEAVE_CONVERSATION, work).await;
        }
        ev::SEND_MESSAGE => {
            call.run(ack, ev::SEND_MESSAGE, send_message(&svc, user, payload))
                .await;
        }
        ev::MARK_AS_READ => {
            call.run(ack, ev::MARK_AS_READ, mark_as_read(&svc, user, payload))
                .await;
        }
        ev::MARK_CONVERSATION_AS_READ => {
            let work = mark_conversation_as_read(&svc, user, payload);
            call.run(ack, ev::MARK_CONVERSATION_AS_READ, work).await;
        }
        ev::USER_TYPING => {
            call.run(ack, ev::USER_TYPING, user_typing(&svc, user, payload))
                .await;
        }
        ev::USER_STOPPED_TYPING => {
            let work = user_stopped_typing(&svc, user, payload);
            call.run(ack, ev::USER_STOPPED_TYPING, work).await;
        }
        ev::GET_PRESENCE => {
            call.run(ack, ev::GET_PRESENCE, get_presence(&svc, user, payload))
                .await;
        }
        ev::SYNC => {
            call.run(ack, ev::SYNC, sync(&svc, user, payload)).await;
        }
        ev::BLOCK_USER => {
            call.run(ack, ev::BLOCK_USER, block_user(&svc, user, payload))
                .await;
        }
        ev::UNBLOCK_USER => {
            call.run(ack, ev::UNBLOCK_USER, unblock_user(&svc, user, payload))
                .await;
        }
        _ => unknown_event(&s, ack, budget, &event),
    }
}

/// What every event's handling shares.
struct Call<'a, A: Adapter> {
    s: &'a SocketRef<A>,
    budget: &'a SocketBudget,
    in_flight: &'a InFlight,
    user: &'a User,
}

impl<A: Adapter> Call<'_, A> {
    /// Admits the event against the socket's budget, runs `work` (tracked,
    /// so a draining node lets it finish) and answers the ack.
    async fn run<T: serde::Serialize>(
        &self,
        ack: AckSender<A>,
        event: &'static str,
        work: impl std::future::Future<Output = ServiceResult<T>>,
    ) {
        let span = tracing::info_span!(
            "socket.event",
            event,
            user.id = %self.user.id,
            socket.id = %self.s.id,
            outcome = tracing::field::Empty,
        );
        let started = tokio::time::Instant::now();
        let Some((_admitted, ack)) = admit(self.s, ack, self.budget, &span, event) else {
            return;
        };
        let result = self
            .in_flight
            .0
            .track_future(tracing::Instrument::instrument(work, span.clone()))
            .await;
        let outcome = span.in_scope(|| respond(self.s, ack, event, result));
        instruments::event(event, outcome, started.elapsed());
    }
}

type Parsed = Result<Value, ParserError>;

async fn join_conversation(
    svc: &Messaging,
    user: &User,
    sid: &str,
    payload: Parsed,
) -> ServiceResult<protocol::ConversationAck> {
    let p: protocol::JoinConversation = parse(payload)?;
    let conversation = ConversationId::parse("conversationId", &p.conversation_id)?;
    let request = JoinRequest::parse(
        p.limit,
        p.before.as_deref(),
        p.after.as_deref(),
        p.after_seq,
    )?;
    svc.join_conversation(user, sid, conversation, request)
        .await
}

async fn leave_conversation(
    svc: &Messaging,
    user: &User,
    sid: &str,
    payload: Parsed,
) -> ServiceResult<protocol::ConversationAck> {
    let conversation = conversation_ref(payload)?;
    svc.leave_conversation(user, sid, conversation).await
}

async fn send_message(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<crate::domain::Message> {
    let p: protocol::SendMessage = parse(payload)?;
    let new = NewMessage::parse(
        &p.conversation_id,
        &p.content,
        p.attachments,
        p.client_message_id.as_deref(),
        svc.limits(),
    )?;
    svc.send_message(user, new).await
}

async fn mark_as_read(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<protocol::ReadReceipt> {
    let p: protocol::MarkAsRead = parse(payload)?;
    let message = MessageId::parse("messageId", &p.message_id)?;
    svc.mark_as_read(user, message).await
}

async fn mark_conversation_as_read(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<protocol::ReadReceipt> {
    let conversation = conversation_ref(payload)?;
    svc.mark_conversation_as_read(user, conversation).await
}

async fn user_typing(svc: &Messaging, user: &User, payload: Parsed) -> ServiceResult<Empty> {
    let conversation = conversation_ref(payload)?;
    svc.start_typing(user, conversation)
        .await
        .map(|()| Empty {})
}

async fn user_stopped_typing(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<Empty> {
    let conversation = conversation_ref(payload)?;
    svc.stop_typing(user, conversation).await.map(|()| Empty {})
}

async fn get_presence(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<protocol::PresenceReport> {
    let p: protocol::GetPresence = parse(payload)?;
    svc.presence(user, UserId::parse_presence_query(&p.user_ids)?)
        .await
}

async fn sync(svc: &Messaging, user: &User, payload: Parsed) -> ServiceResult<protocol::SyncAck> {
    let p: protocol::SyncRequest = parse(payload)?;
    svc.sync(
        user,
        SyncCommand::parse(&p.conversations, p.since.as_deref())?,
    )
    .await
}

async fn block_user(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<protocol::BlockAck> {
    let p: protocol::UserRef = parse(payload)?;
    svc.block_user(user, UserId::parse("userId", &p.user_id)?)
        .await
}

async fn unblock_user(
    svc: &Messaging,
    user: &User,
    payload: Parsed,
) -> ServiceResult<protocol::BlockAck> {
    let p: protocol::UserRef = parse(payload)?;
    svc.unblock_user(user, UserId::parse("userId", &p.user_id)?)
        .await
}

fn conversation_ref(payload: Result<Value, ParserError>) -> ServiceResult<ConversationId> {
    let p: protocol::ConversationRef = parse(payload)?;
    Ok(ConversationId::parse("conversationId", &p.conversation_id)?)
}

/// Holds one of the socket's events in progress (the permit) and hands the
/// ack back; `None` when the socket is past its budget, in which case the
/// event is already answered `RATE_LIMITED` (ack and `error` event) before
/// any other work.
fn admit<A: Adapter>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
    budget: &SocketBudget,
    span: &tracing::Span,
    event: &'static str,
) -> Option<(tokio::sync::OwnedSemaphorePermit, AckSender<A>)> {
    match budget.admit() {
        Ok(permit) => Some((permit, ack)),
        Err(reason) => {
            instruments::refusal(reason);
            let refused: ServiceResult<()> = Err(ServiceError::RateLimited);
            let outcome = span.in_scope(|| respond(s, ack, event, refused));
            instruments::event(event, outcome, std::time::Duration::ZERO);
            None
        }
    }
}

/// An event the contract does not know: refused with `VALIDATION`, and the
/// socket stays connected.
fn unknown_event<A: Adapter>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
    budget: &SocketBudget,
    event: &str,
) {
    let span = tracing::info_span!("socket.event", event = "unknown", socket.id = %s.id, outcome = tracing::field::Empty);
    let Some((_admitted, ack)) = admit(s, ack, budget, &span, "unknown") else {
        return;
    };
    let name: String = event.chars().take(64).collect();
    let result: ServiceResult<()> =
        Err(ValidationError::new("event", "is not an event of this protocol").into());
    let outcome = span.in_scope(|| respond(s, ack, &name, result));
    instruments::event("unknown", outcome, std::time::Duration::ZERO);
}
