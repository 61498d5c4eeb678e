// The package's public types, over the wire types of ./parloir.js.
import type { Socket } from 'socket.io-client';
import type {
  Ack,
  Attachment,
  ClientMessageId,
  ClientToServerEvents,
  ConversationId,
  ServerToClientEvents,
  UnreadReport,
} from './parloir.js';
import type { ParloirError } from './errors.js';

export type ParloirSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** How an event reached the app. */
export interface EventMeta {
  /** Its number in its conversation's log, for numbered events. */
  seq?: number;
  /**
   * Caught up from the log (a resumed join or a `sync`) rather than received
   * live; a live event landing while a resumed join is answered counts too.
   * For the app's own choices (no sound for a catch-up), never for ordering.
   */
  replayed: boolean;
}

type Payload<E extends keyof ServerToClientEvents> = Parameters<ServerToClientEvents[E]>[0];

/** What the client emits to the app. */
export type ClientEvents = {
  [E in Exclude<keyof ServerToClientEvents, 'seq-skipped' | 'conversation-latest'>]: [
    payload: Payload<E>,
    meta: EventMeta,
  ];
} & {
  /**
   * The server no longer holds the part of this conversation's log the app
   * missed: drop what you hold of it. If it is joined, a `conversation-history`
   * page follows and events resume from there; otherwise `join` it again when needed.
   */
  reload: [event: { conversationId: ConversationId }];
  /** Unread totals, recounted by the server at each sync. */
  unread: [report: UnreadReport];
  /** A (re)connection's catch-up is done: the app is up to date with the server. */
  resumed: [event: { syncedAt: string | null }];
  /** A sync or a resumed join failed; it is retried by itself. */
  'sync-error': [error: ParloirError];
};

export interface ClientOptions {
  /** How long events may wait behind a hole before the missing numbers are asked for (ms). */
  gapMs?: number;
  /** Deadline of every ack (ms). */
  ackTimeoutMs?: number;
  /** Tries of one `send` (the first included) on outcomes that may be retried. */
  sendAttempts?: number;
  /** Delay before the first retry, doubled for each next one (ms). */
  retryDelayMs?: number;
  /** Where the app stood when it last stopped (from `state()`): resumed on connect. */
  restore?: ClientState;
}

/** What the client knows, to persist with the app's data and `restore` later. */
export interface ClientState {
  /** Conversation id → the last number the app applied. */
  conversations: Record<ConversationId, number>;
  /** The last sync's `syncedAt`: conversations added after it are caught up on connect. */
  since?: string;
}

export interface JoinOptions {
  /** Size of the history page when there is no number to resume from (1–100). */
  limit?: number;
  /** Ignore the number the client knows: the app gets a fresh history page. */
  fresh?: boolean;
}

export interface JoinResult {
  conversationId: ConversationId;
  /** True when the join replayed what the app missed; false when it loaded a history page. */
  resumed: boolean;
  latestSeq?: number;
}

export interface SendOptions {
  attachments?: Attachment[];
  /** Generated when absent; give your own to retry a send across app restarts. */
  clientMessageId?: ClientMessageId;
}

export type AckData<E extends keyof ClientToServerEvents> = ClientToServerEvents[E] extends (
  payload: never,
  ack: (response: Ack<infer T>) => void,
) => void
  ? T
  : never;
