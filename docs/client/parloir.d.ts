// parloir's Socket.IO contract (namespace "/messaging"), generated from the
// server's Rust types. Do not edit: `UPDATE_CLIENT_CONTRACT=1 scripts/test --
// cargo nextest run -E 'test(/^client_contract::/)'` rewrites it.
//
// Use: `io(url + "/messaging", { auth: { token } })` typed as
// `Socket<ServerToClientEvents, ClientToServerEvents>`.

/**
 * A user as named by the identity provider (the token's `userId`/`sub`).
 */
export type UserId = string;

/**
 * A conversation (random UUIDv4: its id reveals nothing about when it was made).
 */
export type ConversationId = string;

/**
 * A message. UUIDv7, so ids sort by creation time and paging can use them as cursors.
 */
export type MessageId = string;

/**
 * The sender's idempotency key for `send-message`.
 */
export type ClientMessageId = string;

/**
 * A link to a file stored elsewhere; parloir stores only the reference.
 */
export type Attachment = { url: string, 
/**
 * A MIME type such as `image/jpeg`.
 */
type: string, name?: string, size?: number, };

/**
 * A stored message, as sent on the wire (PROTOCOL.md §4 `Message`).
 */
export type Message = { id: MessageId, conversationId: ConversationId, senderId: UserId, content: string, attachments: Array<Attachment>, clientMessageId?: ClientMessageId, createdAt: string, 
/**
 * The message's number in its conversation's log (PROTOCOL.md §8).
 */
seq: number, 
/**
 * Only in a replay (`sync`, `join-conversation` with `afterSeq`): the
 * message was deleted since, and its content and attachments are gone;
 * the deletion follows later in the same replay.
 */
deletedAt?: string, };

/**
 * A conversation, as sent on the wire (PROTOCOL.md §4 `Conversation`).
 */
export type Conversation = { id: ConversationId, 
/**
 * Sorted, without duplicates.
 */
participantIds: Array<UserId>, title?: string, createdAt: string, lastMessageAt?: string, };

/**
 * One entry of a user's conversation list.
 */
export type ConversationSummary = { unreadCount: number, lastMessage: Message | null, id: ConversationId, 
/**
 * Sorted, without duplicates.
 */
participantIds: Array<UserId>, title?: string, createdAt: string, lastMessageAt?: string, };

/**
 * The HTTP conversation list body.
 */
export type ConversationList = { conversations: Array<ConversationSummary>, nextCursor: string | null, };

/**
 * `conversation-history` (PROTOCOL.md §4) and the HTTP history body.
 */
export type History = { conversationId: ConversationId, messages: Array<Message>, hasMore: boolean, };

/**
 * Error codes of PROTOCOL.md §2 and §5.
 */
export type ErrorCode = "VALIDATION" | "NOT_FOUND" | "FORBIDDEN" | "RATE_LIMITED" | "UNAVAILABLE" | "UNKNOWN_OUTCOME" | "TOKEN_EXPIRED" | "UNAUTHORIZED" | "INTERNAL";

/**
 * `{code, message}` as carried by acks and HTTP error bodies.
 */
export type ErrorBody = { code: ErrorCode, message: string, };

/**
 * The `error` event (PROTOCOL.md §2).
 */
export type ErrorEvent = { code: ErrorCode, message: string, 
/**
 * The client event that failed, when there is one.
 */
event?: string, };

/**
 * The single ack argument: `{ok: true, data}` or `{ok: false, error}`.
 */
export type Ack<T> = { ok: true, data: T, } | { ok: false, error: ErrorBody, };

export type Empty = Record<symbol, never>;

export type JoinConversation = { conversationId: string, 
/**
 * 1 to 100 messages; 50 when absent.
 */
limit?: number, 
/**
 * A message id: the page just older than it.
 */
before?: string, 
/**
 * A message id: the page just newer than it.
 */
after?: string, 
/**
 * The last log number the client saw (PROTOCOL.md §8): the socket gets
 * every numbered event after it, in order, instead of a history page.
 */
afterSeq?: number, };

export type ConversationRef = { conversationId: string, };

export type SendMessage = { conversationId: string, 
/**
 * May be empty when the message has attachments.
 */
content?: string, attachments?: Array<Attachment>, 
/**
 * The client's own id for the message: a retry with it stores nothing new.
 */
clientMessageId?: string, };

export type MarkAsRead = { messageId: string, };

export type GetPresence = { userIds: Array<string>, };

export type ConversationAck = { conversationId: ConversationId, 
/**
 * The conversation's latest log number when the join was answered.
 */
latestSeq?: number, 
/**
 * With `afterSeq`: more events followed than one join replays; continue
 * with `sync` from the last number received.
 */
hasMore?: boolean, 
/**
 * With `afterSeq`: false when the gap is older than the log still held
 * (nothing was replayed): refetch the history.
 */
recovered?: boolean, };

/**
 * Ack of `mark-as-read` / `mark-conversation-as-read`; also the
 * `message-read` payload (with `user_id`).
 */
export type ReadReceipt = { conversationId: ConversationId, messageId: MessageId | null, userId?: UserId, readAt: string | null, 
/**
 * The read's number in the conversation's log, when the cursor moved.
 */
seq?: number, };

/**
 * `get-presence` ack data.
 */
export type PresenceReport = { 
/**
 * User id → online on any device.
 */
online: { [key in UserId]: boolean }, 
/**
 * User id → when their last device disconnected, if known.
 */
lastSeen: { [key in UserId]: string | null }, };

export type MemberEvent = { conversationId: ConversationId, userId: UserId, };

/**
 * `user-online`.
 */
export type OnlineEvent = { userId: UserId, at: string, };

/**
 * `user-offline`.
 */
export type OfflineEvent = { userId: UserId, lastSeenAt: string, };

/**
 * `user-typing` / `user-stopped-typing`.
 */
export type TypingEvent = { conversationId: ConversationId, userId: UserId, userName: string, };

/**
 * `unread-count-updated`.
 */
export type UnreadUpdate = { totalUnread: number, conversationId?: ConversationId, conversationUnread?: number, };

/**
 * `GET /api/v1/unread`.
 */
export type UnreadReport = { totalUnread: number, 
/**
 * Conversation id → unread count, non-zero only.
 */
conversations: { [key in ConversationId]: number }, };

export type MessageDeleted = { conversationId: ConversationId, messageId: MessageId, seq: number, };

/**
 * `block-user` / `unblock-user`.
 */
export type UserRef = { userId: string, };

/**
 * `conversation-created`: the conversation, and its creation's number (1).
 */
export type ConversationCreated = { seq: number, id: ConversationId, 
/**
 * Sorted, without duplicates.
 */
participantIds: Array<UserId>, title?: string, createdAt: string, lastMessageAt?: string, };

/**
 * `seq-skipped` and `conversation-latest`.
 */
export type SeqMark = { conversationId: ConversationId, seq: number, };

/**
 * One event of a replay: `type` is the event's name, `data` its payload as
 * it would have been sent live.
 */
export type ReplayedEvent = { seq: number, type: string, data: unknown, };

/**
 * What `sync` answers for one conversation.
 */
export type ConversationReplay = { 
/**
 * In order, numbers without holes from `afterSeq + 1` on.
 */
events: Array<ReplayedEvent>, hasMore: boolean, latestSeq: number, } | { recovered: false, };

/**
 * `sync`: what a reconnecting client last saw of each conversation.
 */
export type SyncRequest = { 
/**
 * Conversation id → the last log number seen (at most 100 entries).
 */
conversations: { [key in string]: number }, 
/**
 * `syncedAt` of the previous sync: conversations the user was added to
 * since are listed in `conversationsAdded` (default: the last 30 days).
 */
since?: string, };

/**
 * The `sync` ack data.
 */
export type SyncAck = { 
/**
 * Conversation id → its replay.
 */
conversations: { [key in ConversationId]: ConversationReplay }, 
/**
 * Conversations the user was added to since `since` (created at or
 * after it) that the call did not name: at most 100, oldest first.
 */
conversationsAdded: Array<Conversation>, 
/**
 * More were added: sync again with `since` set to the last one's
 * `createdAt`.
 */
conversationsAddedHasMore: boolean, unread: UnreadReport, 
/**
 * Give it as `since` to the next `sync`.
 */
syncedAt: string, };

/**
 * Ack of `block-user` / `unblock-user`, and the body of the block routes.
 */
export type BlockAck = { userId: UserId, 
/**
 * Whether the caller now blocks the user.
 */
blocked: boolean, };

/**
 * `GET /api/v1/me/blocks`.
 */
export type BlockList = { 
/**
 * Most recent first.
 */
blocks: Array<BlockedUser>, };

/**
 * One user the caller blocks.
 */
export type BlockedUser = { userId: UserId, blockedAt: string, };

/** Events the server emits. */
export interface ServerToClientEvents {
  /** A message in a conversation the socket joined. */
  "new-message": (payload: Message) => void;
  /** The page of history a `join-conversation` asked for. */
  "conversation-history": (payload: History) => void;
  /** A participant's read cursor moved. */
  "message-read": (payload: ReadReceipt) => void;
  /** Another socket joined the conversation's room. */
  "user-joined": (payload: MemberEvent) => void;
  /** Another socket left the conversation's room. */
  "user-left": (payload: MemberEvent) => void;
  /** A contact's first device connected. */
  "user-online": (payload: OnlineEvent) => void;
  /** A contact's last device disconnected. */
  "user-offline": (payload: OfflineEvent) => void;
  /** Someone is typing in a joined conversation. */
  "user-typing": (payload: TypingEvent) => void;
  /** Someone stopped typing (or their typing expired). */
  "user-stopped-typing": (payload: TypingEvent) => void;
  /** The user's unread counts changed. */
  "unread-count-updated": (payload: UnreadUpdate) => void;
  /** A conversation the user takes part in was created (its log's first entry, `seq` 1). */
  "conversation-created": (payload: ConversationCreated) => void;
  /** A message of a joined conversation was deleted. */
  "message-deleted": (payload: MessageDeleted) => void;
  /** A log number with nothing to apply (in replays): move past it. */
  "seq-skipped": (payload: SeqMark) => void;
  /** A conversation's latest log number, when a change may not have reached everyone live: a client behind it syncs. */
  "conversation-latest": (payload: SeqMark) => void;
  /** A client event failed (its ack carries the same error). */
  "error": (payload: ErrorEvent) => void;
}

/** Events a client emits; every one is acked. */
export interface ClientToServerEvents {
  /** Join a conversation's room; its history follows as `conversation-history`. */
  "join-conversation": (payload: JoinConversation, ack: (response: Ack<ConversationAck>) => void) => void;
  /** Leave a conversation's room. */
  "leave-conversation": (payload: ConversationRef, ack: (response: Ack<ConversationAck>) => void) => void;
  /** Send a message; acked once it is stored. */
  "send-message": (payload: SendMessage, ack: (response: Ack<Message>) => void) => void;
  /** Move the caller's read cursor to a message (never back). */
  "mark-as-read": (payload: MarkAsRead, ack: (response: Ack<ReadReceipt>) => void) => void;
  /** Mark a conversation read up to its latest message. */
  "mark-conversation-as-read": (payload: ConversationRef, ack: (response: Ack<ReadReceipt>) => void) => void;
  /** The caller is typing in a conversation. */
  "user-typing": (payload: ConversationRef, ack: (response: Ack<Empty>) => void) => void;
  /** The caller stopped typing. */
  "user-stopped-typing": (payload: ConversationRef, ack: (response: Ack<Empty>) => void) => void;
  /** Presence of up to 100 users (contacts only; others read as offline). */
  "get-presence": (payload: GetPresence, ack: (response: Ack<PresenceReport>) => void) => void;
  /** After a reconnect: what happened in each named conversation after the last number seen, the conversations added, the unread totals. */
  "sync": (payload: SyncRequest, ack: (response: Ack<SyncAck>) => void) => void;
  /** Block a user: no conversation started by them, no one-to-one messages, no presence, typing or receipts between you. */
  "block-user": (payload: UserRef, ack: (response: Ack<BlockAck>) => void) => void;
  /** Lift a block. */
  "unblock-user": (payload: UserRef, ack: (response: Ack<BlockAck>) => void) => void;
}
