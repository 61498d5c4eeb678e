//! Client event handlers. Each one: parse the payload into a domain value,
//! make one service call, `respond`. Each runs in a span named after its event.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::ParserError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};

use super::respond::{parse, respond};
use crate::auth::User;
use crate::budget::SocketBudget;
use crate::domain::{ConversationId, MessageId, NewMessage, PageRequest, UserId, ValidationError};
use crate::instruments;
use crate::protocol::{self, Empty, ev};
use crate::service::{Messaging, ServiceError, ServiceResult};

type Payload = TryData<Value>;

/// Tracks the client events being handled, so a draining node can let them
/// finish — committed and acked — before it closes the sockets.
#[derive(Clone, Default)]
pub struct InFlight(pub tokio_util::task::TaskTracker);

pub fn register<A: Adapter>(s: &SocketRef<A>) {
    s.on(ev::JOIN_CONVERSATION, join_conversation::<A>);
    s.on(ev::LEAVE_CONVERSATION, leave_conversation::<A>);
    s.on(ev::SEND_MESSAGE, send_message::<A>);
    s.on(ev::MARK_AS_READ, mark_as_read::<A>);
    s.on(
        ev::MARK_CONVERSATION_AS_READ,
        mark_conversation_as_read::<A>,
    );
    s.on(ev::USER_TYPING, user_typing::<A>);
    s.on(ev::USER_STOPPED_TYPING, user_stopped_typing::<A>);
    s.on(ev::GET_PRESENCE, get_presence::<A>);
    s.on_fallback(unknown_event::<A>);
}

/// Declares a handler: its span carries the event name, the user, the
/// socket and the outcome that `respond` records.
macro_rules! handler {
    ($name:ident, $event:expr, |$svc:ident, $user:ident, $sid:ident, $payload:ident| $body:expr) => {
        async fn $name<A: Adapter>(
            s: SocketRef<A>,
            ack: AckSender<A>,
            Extension($user): Extension<User>,
            Extension(budget): Extension<Arc<SocketBudget>>,
            State($svc): State<Messaging>,
            State(in_flight): State<InFlight>,
            TryData($payload): Payload,
        ) {
            let span = tracing::info_span!(
                "socket.event",
                event = $event,
                user.id = %$user.id,
                socket.id = %s.id,
                outcome = tracing::field::Empty,
            );
            let started = tokio::time::Instant::now();
            let Some((_admitted, ack)) = admit(&s, ack, &budget, &span, $event) else {
                return;
            };
            let $sid = s.id.to_string();
            let result = in_flight
                .0
                .track_future(tracing::Instrument::instrument(async { $body }, span.clone()))
                .await;
            let outcome = span.in_scope(|| respond(&s, ack, $event, result));
            instruments::event($event, outcome, started.elapsed());
        }
    };
}

handler!(
    join_conversation,
    ev::JOIN_CONVERSATION,
    |svc, user, sid, payload| {
        let p: protocol::JoinConversation = parse(payload)?;
        let conversation = ConversationId::parse("conversationId", &p.conversation_id)?;
        let page = PageRequest::parse(p.limit, p.before.as_deref(), p.after.as_deref())?;
        svc.join_conversation(&user, &sid, conversation, page).await
    }
);

handler!(
    leave_conversation,
    ev::LEAVE_CONVERSATION,
    |svc, user, sid, payload| {
        let conversation = conversation_ref(payload)?;
        svc.leave_conversation(&user, &sid, conversation).await
    }
);

handler!(
    send_message,
    ev::SEND_MESSAGE,
    |svc, user, _sid, payload| {
        let p: protocol::SendMessage = parse(payload)?;
        let new = NewMessage::parse(
            &p.conversation_id,
            &p.content,
            p.attachments,
            p.client_message_id.as_deref(),
            svc.limits(),
        )?;
        svc.send_message(&user, new).await
    }
);

handler!(
    mark_as_read,
    ev::MARK_AS_READ,
    |svc, user, _sid, payload| {
        let p: protocol::MarkAsRead = parse(payload)?;
        let message = MessageId::parse("messageId", &p.message_id)?;
        svc.mark_as_read(&user, message).await
    }
);

handler!(
    mark_conversation_as_read,
    ev::MARK_CONVERSATION_AS_READ,
    |svc, user, _sid, payload| {
        let conversation = conversation_ref(payload)?;
        svc.mark_conversation_as_read(&user, conversation).await
    }
);

handler!(user_typing, ev::USER_TYPING, |svc, user, _sid, payload| {
    let conversation = conversation_ref(payload)?;
    svc.start_typing(&user, conversation)
        .await
        .map(|()| Empty {})
});

handler!(
    user_stopped_typing,
    ev::USER_STOPPED_TYPING,
    |svc, user, _sid, payload| {
        let conversation = conversation_ref(payload)?;
        svc.stop_typing(&user, conversation)
            .await
            .map(|()| Empty {})
    }
);

handler!(
    get_presence,
    ev::GET_PRESENCE,
    |svc, user, _sid, payload| {
        let p: protocol::GetPresence = parse(payload)?;
        svc.presence(&user, UserId::parse_presence_query(&p.user_ids)?)
            .await
    }
);

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
async fn unknown_event<A: Adapter>(
    s: SocketRef<A>,
    ack: AckSender<A>,
    Event(event): Event,
    Extension(budget): Extension<Arc<SocketBudget>>,
) {
    let span = tracing::info_span!("socket.event", event = "unknown", socket.id = %s.id, outcome = tracing::field::Empty);
    let Some((_admitted, ack)) = admit(&s, ack, &budget, &span, "unknown") else {
        return;
    };
    let name: String = event.chars().take(64).collect();
    let result: ServiceResult<()> =
        Err(ValidationError::new("event", "is not an event of this protocol").into());
    let outcome = span.in_scope(|| respond(&s, ack, &name, result));
    instruments::event("unknown", outcome, std::time::Duration::ZERO);
}
