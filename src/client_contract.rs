//! The socket contract as documents generated from the protocol types:
//! TypeScript definitions that socket.io-client's typed
//! `Socket<ServerToClientEvents, ClientToServerEvents>` accepts, and an
//! AsyncAPI 3 document of the same events. Both are committed under
//! `docs/client/` and checked against these types by the test suite
//! (`client_contract`), so a change to a payload type that is not carried
//! into the documents fails the build; the node also serves the AsyncAPI
//! document beside the OpenAPI one.
//!
//! The event table below is the one place that says which type travels with
//! which event; everything else is derived from the types themselves
//! (`ts_rs::TS` for TypeScript, `utoipa::ToSchema` for JSON Schema).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use ts_rs::{Config, TS};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::domain::{
    Attachment, ClientMessageId, Conversation, ConversationId, ConversationSummary, Message,
    MessageId, UserId,
};
use crate::protocol::{
    Ack, BlockAck, BlockList, BlockedUser, ConversationAck, ConversationCreated, ConversationList,
    ConversationRef, ConversationReplay, Empty, ErrorBody, ErrorCode, ErrorEvent, GetPresence,
    History, JoinConversation, MarkAsRead, MemberEvent, MessageDeleted, NAMESPACE, OfflineEvent,
    OnlineEvent, PresenceReport, ReadReceipt, ReplayedEvent, SendMessage, SeqMark, SyncAck,
    SyncRequest, TypingEvent, UnreadReport, UnreadUpdate, UserRef, ev,
};

type Schemas = Vec<(String, RefOr<Schema>)>;

/// A payload type as both documents need it.
struct Shape {
    ts_name: fn(&Config) -> String,
    schema_name: fn() -> String,
    register: fn(&mut Schemas),
}

fn shape<T: TS + ToSchema>() -> Shape {
    Shape {
        ts_name: |cfg| <T as TS>::name(cfg),
        schema_name: || <T as ToSchema>::name().into_owned(),
        register: |schemas| {
            schemas.push((<T as ToSchema>::name().into_owned(), T::schema()));
            T::schemas(schemas);
        },
    }
}

struct Event {
    name: &'static str,
    summary: &'static str,
    payload: Shape,
    /// The ack's `data` for client events (every client event is acked).
    ack: Option<Shape>,
}

fn client_events() -> Vec<Event> {
    let event = |name, summary, payload, ack| Event {
        name,
        summary,
        payload,
        ack: Some(ack),
    };
    vec![
        event(
            ev::JOIN_CONVERSATION,
            "Join a conversation's room; its history follows as `conversation-history`.",
            shape::<JoinConversation>(),
            shape::<ConversationAck>(),
        ),
        event(
            ev::LEAVE_CONVERSATION,
            "Leave a conversation's room.",
            shape::<ConversationRef>(),
            shape::<ConversationAck>(),
        ),
        event(
            ev::SEND_MESSAGE,
            "Send a message; acked once it is stored.",
            shape::<SendMessage>(),
            shape::<Message>(),
        ),
        event(
            ev::MARK_AS_READ,
            "Move the caller's read cursor to a message (never back).",
            shape::<MarkAsRead>(),
            shape::<ReadReceipt>(),
        ),
        event(
            ev::MARK_CONVERSATION_AS_READ,
            "Mark a conversation read up to its latest message.",
            shape::<ConversationRef>(),
            shape::<ReadReceipt>(),
        ),
        event(
            ev::USER_TYPING,
            "The caller is typing in a conversation.",
            shape::<ConversationRef>(),
            shape::<Empty>(),
        ),
        event(
            ev::USER_STOPPED_TYPING,
            "The caller stopped typing.",
            shape::<ConversationRef>(),
            shape::<Empty>(),
        ),
        event(
            ev::GET_PRESENCE,
            "Presence of up to 100 users (contacts only; others read as offline).",
            shape::<GetPresence>(),
            shape::<PresenceReport>(),
        ),
        event(
            ev::SYNC,
            "After a reconnect: what happened in each named conversation after the last number seen, the conversations added, the unread totals.",
            shape::<SyncRequest>(),
            shape::<SyncAck>(),
        ),
        event(
            ev::BLOCK_USER,
            "Block a user: no conversation started by them, no one-to-one messages, no presence, typing or receipts between you.",
            shape::<UserRef>(),
            shape::<BlockAck>(),
        ),
        event(
            ev::UNBLOCK_USER,
            "Lift a block.",
            shape::<UserRef>(),
            shape::<BlockAck>(),
        ),
    ]
}

fn server_events() -> Vec<Event> {
    let event = |name, summary, payload| Event {
        name,
        summary,
        payload,
        ack: None,
    };
    vec![
        event(
            ev::NEW_MESSAGE,
            "A message in a conversation the socket joined.",
            shape::<Message>(),
        ),
        event(
            ev::CONVERSATION_HISTORY,
            "The page of history a `join-conversation` asked for.",
            shape::<History>(),
        ),
        event(
            ev::MESSAGE_READ,
            "A participant's read cursor moved.",
            shape::<ReadReceipt>(),
        ),
        event(
            ev::USER_JOINED,
            "Another socket joined the conversation's room.",
            shape::<MemberEvent>(),
        ),
        event(
            ev::USER_LEFT,
            "Another socket left the conversation's room.",
            shape::<MemberEvent>(),
        ),
        event(
            ev::USER_ONLINE,
            "A contact's first device connected.",
            shape::<OnlineEvent<'static>>(),
        ),
        event(
            ev::USER_OFFLINE,
            "A contact's last device disconnected.",
            shape::<OfflineEvent<'static>>(),
        ),
        event(
            ev::USER_TYPING,
            "Someone is typing in a joined conversation.",
            shape::<TypingEvent<'static>>(),
        ),
        event(
            ev::USER_STOPPED_TYPING,
            "Someone stopped typing (or their typing expired).",
            shape::<TypingEvent<'static>>(),
        ),
        event(
            ev::UNREAD_COUNT_UPDATED,
            "The user's unread counts changed.",
            shape::<UnreadUpdate>(),
        ),
        event(
            ev::CONVERSATION_CREATED,
            "A conversation the user takes part in was created (its log's first entry, `seq` 1).",
            shape::<ConversationCreated>(),
        ),
        event(
            ev::MESSAGE_DELETED,
            "A message of a joined conversation was deleted.",
            shape::<MessageDeleted>(),
        ),
        event(
            ev::SEQ_SKIPPED,
            "A log number with nothing to apply (in replays): move past it.",
            shape::<SeqMark>(),
        ),
        event(
            ev::CONVERSATION_LATEST,
            "A conversation's latest log number, when a change may not have reached everyone live: a client behind it syncs.",
            shape::<SeqMark>(),
        ),
        event(
            ev::ERROR,
            "A client event failed (its ack carries the same error).",
            shape::<ErrorEvent<'static>>(),
        ),
    ]
}

fn ts_config() -> Config {
    // Counts are JSON numbers; they never come near 2^53.
    Config::new().with_large_int("number")
}

/// One `export type` declaration, with the type's doc comment.
fn declare<T: TS>(cfg: &Config) -> String {
    let docs = T::docs()
        .map(|d| format!("{}\n", d.trim_end()))
        .unwrap_or_default();
    format!("{docs}export {}\n", <T as TS>::decl(cfg).trim_end())
}

/// The TypeScript definitions (`docs/client/parloir.d.ts`).
pub fn typescript() -> String {
    let cfg = ts_config();
    let declarations = [
        declare::<UserId>(&cfg),
        declare::<ConversationId>(&cfg),
        declare::<MessageId>(&cfg),
        declare::<ClientMessageId>(&cfg),
        declare::<Attachment>(&cfg),
        declare::<Message>(&cfg),
        declare::<Conversation>(&cfg),
        declare::<ConversationSummary>(&cfg),
        declare::<ConversationList>(&cfg),
        declare::<History>(&cfg),
        declare::<ErrorCode>(&cfg),
        declare::<ErrorBody>(&cfg),
        declare::<ErrorEvent<'static>>(&cfg),
        declare::<Ack<Empty>>(&cfg),
        declare::<Empty>(&cfg),
        declare::<JoinConversation>(&cfg),
        declare::<ConversationRef>(&cfg),
        declare::<SendMessage>(&cfg),
        declare::<MarkAsRead>(&cfg),
        declare::<GetPresence>(&cfg),
        declare::<ConversationAck>(&cfg),
        declare::<ReadReceipt>(&cfg),
        declare::<PresenceReport>(&cfg),
        declare::<MemberEvent>(&cfg),
        declare::<OnlineEvent<'static>>(&cfg),
        declare::<OfflineEvent<'static>>(&cfg),
        declare::<TypingEvent<'static>>(&cfg),
        declare::<UnreadUpdate>(&cfg),
        declare::<UnreadReport>(&cfg),
        declare::<MessageDeleted>(&cfg),
        declare::<UserRef>(&cfg),
        declare::<ConversationCreated>(&cfg),
        declare::<SeqMark>(&cfg),
        declare::<ReplayedEvent>(&cfg),
        declare::<ConversationReplay>(&cfg),
        declare::<SyncRequest>(&cfg),
        declare::<SyncAck>(&cfg),
        declare::<BlockAck>(&cfg),
        declare::<BlockList>(&cfg),
        declare::<BlockedUser>(&cfg),
    ];
    let mut out = String::from(
        "// parloir's Socket.IO contract (namespace \"/messaging\"), generated from the\n\
         // server's Rust types. Do not edit: `UPDATE_CLIENT_CONTRACT=1 scripts/test --\n\
         // cargo nextest run -E 'test(/^client_contract::/)'` rewrites it.\n\
         //\n\
         // Use: `io(url + \"/messaging\", { auth: { token } })` typed as\n\
         // `Socket<ServerToClientEvents, ClientToServerEvents>`.\n\n",
    );
    for declaration in declarations {
        out.push_str(&declaration);
        out.push('\n');
    }
    out.push_str("/** Events the server emits. */\nexport interface ServerToClientEvents {\n");
    for e in server_events() {
        out.push_str(&format!(
            "  /** {} */\n  \"{}\": (payload: {}) => void;\n",
            e.summary,
            e.name,
            (e.payload.ts_name)(&cfg)
        ));
    }
    out.push_str("}\n\n/** Events a client emits; every one is acked. */\nexport interface ClientToServerEvents {\n");
    for e in client_events() {
        let ack = e.ack.as_ref().map_or_else(String::new, |a| {
            format!(", ack: (response: Ack<{}>) => void", (a.ts_name)(&cfg))
        });
        out.push_str(&format!(
            "  /** {} */\n  \"{}\": (payload: {}{ack}) => void;\n",
            e.summary,
            e.name,
            (e.payload.ts_name)(&cfg)
        ));
    }
    out.push_str("}\n");
    out
}

fn message_ref(key: &str) -> Value {
    json!({ "$ref": format!("#/channels/messaging/messages/{key}") })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The AsyncAPI 3 document of the socket events (`docs/client/asyncapi.json`,
/// served at `/api/v1/asyncapi.json`).
pub fn asyncapi() -> Value {
    let mut schemas = Schemas::new();
    let mut messages = BTreeMap::new();
    let mut channel_messages = BTreeMap::new();
    let mut operations = BTreeMap::new();
    (shape::<ErrorBody>().register)(&mut schemas);
    let mut add = |key: String, name: &str, summary: &str, payload: Value| {
        messages.insert(
            key.clone(),
            json!({ "name": name, "summary": summary, "payload": payload }),
        );
        channel_messages.insert(
            key.clone(),
            json!({ "$ref": format!("#/components/messages/{key}") }),
        );
    };
    for e in client_events() {
        (e.payload.register)(&mut schemas);
        let key = format!("client.{}", e.name);
        add(
            key.clone(),
            e.name,
            e.summary,
            schema_ref(&(e.payload.schema_name)()),
        );
        let mut operation = json!({
            "action": "receive",
            "channel": { "$ref": "#/channels/messaging" },
            "summary": e.summary,
            "messages": [message_ref(&key)],
        });
        if let Some(ack) = &e.ack {
            (ack.register)(&mut schemas);
            let ack_key = format!("{key}.ack");
            add(
                ack_key.clone(),
                e.name,
                "The ack: `{ok: true, data}` or `{ok: false, error}`.",
                json!({
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["ok", "data"],
                            "properties": { "ok": { "const": true }, "data": schema_ref(&(ack.schema_name)()) },
                        },
                        {
                            "type": "object",
                            "required": ["ok", "error"],
                            "properties": { "ok": { "const": false }, "error": schema_ref("ErrorBody") },
                        },
                    ]
                }),
            );
            operation["reply"] = json!({
                "channel": { "$ref": "#/channels/messaging" },
                "messages": [message_ref(&ack_key)],
            });
        }
        operations.insert(format!("receive.{}", e.name), operation);
    }
    for e in server_events() {
        (e.payload.register)(&mut schemas);
        let key = format!("server.{}", e.name);
        add(
            key.clone(),
            e.name,
            e.summary,
            schema_ref(&(e.payload.schema_name)()),
        );
        operations.insert(
            format!("send.{}", e.name),
            json!({
                "action": "send",
                "channel": { "$ref": "#/channels/messaging" },
                "summary": e.summary,
                "messages": [message_ref(&key)],
            }),
        );
    }
    let schemas: BTreeMap<String, RefOr<Schema>> = schemas.into_iter().collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "parloir messaging",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Socket.IO v4 events of the `/messaging` namespace. Connect with \
                            `auth: { token }` (a JWT). Every client event is acked with \
                            `{ok: true, data}` or `{ok: false, error: {code, message}}`.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "messaging": {
                "address": NAMESPACE,
                "description": "The Socket.IO namespace; the event name is the message name.",
                "messages": channel_messages,
            }
        },
        "operations": operations,
        "components": { "messages": messages, "schemas": schemas },
    })
}
