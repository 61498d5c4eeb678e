// @parloir/client: a parloir conversation client over the official
// socket.io-client, giving the app every numbered event of the conversations
// it follows exactly once and in order, across lost broadcasts, duplicates,
// reorderings between nodes and reconnects (PROTOCOL.md §8).
//
// It takes a socket the app made (see README: one copy of socket.io-client,
// the app's own connection options) and never imports socket.io-client at run time.
import type {
  Ack,
  ClientMessageId,
  ClientToServerEvents,
  ConversationAck,
  ConversationId,
  History,
  JoinConversation,
  Message,
  SendMessage,
  SeqMark,
  SyncAck,
  SyncRequest,
} from './parloir.js';
import { Emitter } from './emitter.js';
import { ParloirError, type FailureCode } from './errors.js';
import { Sequencer, type NumberedEvent } from './sequencer.js';
import type {
  AckData,
  ClientEvents,
  ClientOptions,
  ClientState,
  JoinOptions,
  JoinResult,
  ParloirSocket,
  SendOptions,
} from './types.js';

export type * from './parloir.js';
export type * from './types.js';
export { ParloirError, type FailureCode } from './errors.js';

/** A conversation the app follows. */
interface Followed {
  id: ConversationId;
  log: Sequencer;
  /** The app wants the room: rejoined on every connection. */
  joined: boolean;
  limit?: number;
  /** A plain join is in flight: the history page it answers sets the starting point. */
  loadingHistory: boolean;
  /** The starting point came from a history page and no replay has confirmed it yet. */
  fromHistory: boolean;
  /** A resumed join is in flight: what arrives for the conversation is (mostly) its replay. */
  replaying: boolean;
  gapTimer?: ReturnType<typeof setTimeout>;
  joinWaiters: { resolve: (r: JoinResult) => void; reject: (e: unknown) => void }[];
}

/** `sync` takes at most this many conversations per call. */
const SYNC_MAX = 100;
/** `conversationsAdded` lists at most this many. */
const ADDED_MAX = 100;
/** Pages of added conversations looked at per sync (a stop, should the server misbehave). */
const ADDED_PAGES_MAX = 50;
/** Failures that say nothing about the request itself: it may succeed later. */
const TRANSIENT = new Set<FailureCode>(['UNKNOWN_OUTCOME', 'UNAVAILABLE', 'RATE_LIMITED', 'TIMEOUT', 'DISCONNECTED', 'INTERNAL']);
/** Sends answered so may be retried with the same clientMessageId: nothing or the same message is stored. */
const RETRYABLE = new Set<FailureCode>(['UNKNOWN_OUTCOME', 'UNAVAILABLE', 'RATE_LIMITED', 'TIMEOUT', 'DISCONNECTED']);

export class ParloirClient extends Emitter<ClientEvents> {
  readonly socket: ParloirSocket;
  private readonly gapMs: number;
  private readonly ackTimeoutMs: number;
  private readonly sendAttempts: number;
  private readonly retryDelayMs: number;
  private readonly followed = new Map<ConversationId, Followed>();
  private since: string | undefined;
  private readonly toSync = new Set<ConversationId>();
  /** The conversations added since the last sync are to be looked for. */
  private discoveryWanted = false;
  private syncing: Promise<void> | null = null;
  /** The connection whose catch-up is under way (0: none). */
  private resuming = 0;
  /** Bumped on every connect and disconnect: work begun on an older connection stops. */
  private connection = 0;
  private closed = false;
  private readonly detach: () => void;

  constructor(socket: ParloirSocket, options: ClientOptions = {}) {
    super();
    this.socket = socket;
    this.gapMs = options.gapMs ?? 1000;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 10_000;
    this.sendAttempts = options.sendAttempts ?? 4;
    this.retryDelayMs = options.retryDelayMs ?? 500;
    this.since = options.restore?.since;
    for (const [id, seq] of Object.entries(options.restore?.conversations ?? {})) this.follow(id, seq);

    const onAny = (event: string, ...args: unknown[]) => this.incoming(event, args[0]);
    const onConnect = () => void this.resume();
    const onDisconnect = () => {
      this.connection += 1;
    };
    socket.onAny(onAny);
    socket.on('connect', onConnect);
    socket.on('disconnect', onDisconnect);
    this.detach = () => {
      socket.offAny(onAny);
      socket.off('connect', onConnect);
      socket.off('disconnect', onDisconnect);
    };
    if (socket.connected) void this.resume();
  }

  /** Stops listening to the socket (which stays open: it is the app's). */
  close(): void {
    this.closed = true;
    this.detach();
    const closed = new ParloirError('DISCONNECTED', 'the client was closed');
    for (const f of this.followed.values()) {
      clearTimeout(f.gapTimer);
      for (const w of f.joinWaiters.splice(0)) w.reject(closed);
    }
  }

  /** Where the app stands in each conversation it follows, to persist and give back as `restore`. */
  state(): ClientState {
    const conversations: Record<ConversationId, number> = {};
    for (const f of this.followed.values()) if (f.log.seq !== null) conversations[f.id] = f.log.seq;
    return this.since === undefined ? { conversations } : { conversations, since: this.since };
  }

  /** Follows a conversation from `seq`, the last number the app holds (restored from its own storage). */
  track(conversationId: ConversationId, seq: number): void {
    const f = this.followed.get(conversationId);
    if (f) {
      for (const ready of f.log.startAt(seq)) this.deliver(ready);
      this.watchGap(f);
    } else {
      this.follow(conversationId, seq);
    }
    this.fill(conversationId);
  }

  /**
   * Joins a conversation's room. Where the client knows the app's last number
   * it resumes from it (the missed events arrive, in order); otherwise the app
   * gets a `conversation-history` page and every event after it.
   */
  join(conversationId: ConversationId, options: JoinOptions = {}): Promise<JoinResult> {
    let f = this.followed.get(conversationId);
    if (f && options.fresh) {
      f.log.unknown();
      this.watchGap(f);
    }
    f ??= this.follow(conversationId, null);
    f.joined = true;
    f.limit = options.limit;
    if (this.socket.connected) return this.joinRoom(f);
    // Offline: the next connection joins it.
    const followed = f;
    return new Promise((resolve, reject) => followed.joinWaiters.push({ resolve, reject }));
  }

  /** Leaves the room; the conversation stays followed (caught up on the next connection). */
  async leave(conversationId: ConversationId): Promise<void> {
    const f = this.followed.get(conversationId);
    if (f) f.joined = false;
    // Offline, the socket is in no room: there is nothing to leave.
    if (this.socket.connected) await this.request('leave-conversation', { conversationId });
  }

  /** Stops following a conversation (leaving its room if joined): the next `join` loads a history page. */
  async forget(conversationId: ConversationId): Promise<void> {
    const f = this.followed.get(conversationId);
    if (!f) return;
    clearTimeout(f.gapTimer);
    this.followed.delete(conversationId);
    this.toSync.delete(conversationId);
    if (f.joined && this.socket.connected) await this.request('leave-conversation', { conversationId });
  }

  /**
   * Sends a message with a clientMessageId (generated unless given), retrying
   * outcomes that may or may not have stored it (UNKNOWN_OUTCOME, no ack in
   * time) with the same id, so it is stored once. Rejects with a ParloirError
   * that carries the id.
   */
  async send(conversationId: ConversationId, content: string, options: SendOptions = {}): Promise<Message> {
    const clientMessageId = options.clientMessageId ?? newClientMessageId();
    const payload: SendMessage = { conversationId, content, clientMessageId };
    if (options.attachments) payload.attachments = options.attachments;
    let failure = new ParloirError('DISCONNECTED', 'not sent');
    for (let attempt = 0; attempt < this.sendAttempts; attempt += 1) {
      if (attempt > 0) await delay(this.retryDelayMs * 2 ** (attempt - 1));
      if (!(await this.connectedWithin(this.ackTimeoutMs))) {
        failure = new ParloirError('DISCONNECTED', 'no connection to send on');
        continue;
      }
      try {
        return await this.request('send-message', payload);
      } catch (error) {
        failure = asParloirError(error);
        if (!RETRYABLE.has(failure.code)) break;
      }
    }
    failure.clientMessageId = clientMessageId;
    throw failure;
  }

  /** Any other client event (mark-as-read, typing, presence, blocks…): resolves with the ack's data. */
  async request<E extends keyof ClientToServerEvents>(
    event: E,
    payload: Parameters<ClientToServerEvents[E]>[0],
  ): Promise<AckData<E>> {
    if (!this.socket.connected) throw new ParloirError('DISCONNECTED', `${event}: not connected`);
    // The typed overloads cannot follow a generic event name; the ack's shape is AckData<E>.
    const timed = this.socket.timeout(this.ackTimeoutMs) as unknown as {
      emitWithAck(event: string, payload: unknown): Promise<Ack<AckData<E>>>;
    };
    let ack: Ack<AckData<E>>;
    try {
      ack = await timed.emitWithAck(event, payload);
    } catch {
      const code = this.socket.connected ? 'TIMEOUT' : 'DISCONNECTED';
      throw new ParloirError(code, `${event}: no answer within ${this.ackTimeoutMs} ms`);
    }
    if (!ack.ok) throw new ParloirError(ack.error.code, ack.error.message);
    return ack.data;
  }

  /** Catches up on every followed conversation now (the client does it by itself on each connection). */
  sync(): Promise<void> {
    this.discoveryWanted = true;
    for (const f of this.followed.values()) if (f.log.seq !== null) this.toSync.add(f.id);
    return this.pump();
  }

  // ------------------------------------------------------------------ incoming events

  private incoming(event: string, payload: unknown): void {
    if (this.closed) return;
    if (event === 'conversation-latest') return this.onLatest(payload as SeqMark);
    if (event === 'conversation-history') return this.onHistory(payload as History);
    const numbered = numberOf(event, payload);
    if (numbered) {
      // A resumed join's replay comes as ordinary events, before its ack.
      const replayed = this.followed.get(numbered.conversationId)?.replaying ?? false;
      this.offer(numbered.conversationId, { seq: numbered.seq, type: event, data: payload, replayed });
    }
    else this.dispatch(event, [payload, { replayed: false }]);
  }

  private offer(conversationId: ConversationId, event: NumberedEvent): void {
    let f = this.followed.get(conversationId);
    if (!f) {
      // A new conversation of the user's: the app has it from its first number.
      if (event.type === 'conversation-created' && event.seq === 1) f = this.follow(conversationId, 0);
      else return this.deliver(event); // a room the app joined by itself: passed on as it came
    }
    for (const ready of f.log.offer(event)) this.deliver(ready);
    this.watchGap(f);
  }

  private deliver(event: NumberedEvent): void {
    if (event.type === 'seq-skipped') return;
    this.dispatch(event.type, [event.data, { seq: event.seq, replayed: event.replayed }]);
  }

  private onHistory(history: History): void {
    this.dispatch('conversation-history', [history, { replayed: false }]);
    const f = this.followed.get(history.conversationId);
    if (!f || !f.loadingHistory) return;
    f.loadingHistory = false;
    f.fromHistory = true;
    const newest = history.messages.reduce((max, m) => Math.max(max, m.seq ?? 0), 0);
    for (const ready of f.log.startAt(newest)) this.deliver(ready);
    this.watchGap(f);
    // A page carries messages only: the reads and deletions after its newest
    // message, and the number the log stands at, come from the log.
    this.fill(f.id);
  }

  private onLatest(mark: SeqMark): void {
    const f = this.followed.get(mark.conversationId);
    if (f && f.log.seq !== null && mark.seq > f.log.seq) this.fill(f.id);
  }

  /** Events waiting behind a hole for `gapMs` mean a lost broadcast: ask the log. */
  private watchGap(f: Followed): void {
    if (!f.log.hasGap) {
      clearTimeout(f.gapTimer);
      f.gapTimer = undefined;
      return;
    }
    f.gapTimer ??= setTimeout(() => {
      f.gapTimer = undefined;
      if (f.log.hasGap) this.fill(f.id);
    }, this.gapMs);
  }

  // ------------------------------------------------------------------ resuming

  private async resume(): Promise<void> {
    const connection = ++this.connection;
    // Rooms do not outlive a connection: rejoin, from where the app stands.
    // One at a time, since each replays up to 64 packets into the socket's queue.
    for (const f of [...this.followed.values()]) {
      if (connection !== this.connection || this.closed) return;
      if (!f.joined || this.followed.get(f.id) !== f) continue;
      try {
        await this.joinRoom(f);
      } catch (error) {
        if (connection === this.connection) this.emit('sync-error', asParloirError(error));
      }
    }
    if (connection !== this.connection || this.closed) return;
    this.resuming = connection;
    await this.sync();
  }

  private async joinRoom(f: Followed): Promise<JoinResult> {
    const resumed = f.log.seq !== null;
    const payload: JoinConversation = { conversationId: f.id };
    if (f.log.seq !== null) payload.afterSeq = f.log.seq;
    else if (f.limit !== undefined) payload.limit = f.limit;
    f.loadingHistory = !resumed;
    f.replaying = resumed;
    let ack: ConversationAck;
    try {
      ack = await this.request('join-conversation', payload);
    } catch (error) {
      f.loadingHistory = false;
      if (!TRANSIENT.has(asParloirError(error).code)) {
        // Refused (not the user's, say): not rejoined on every connection.
        f.joined = false;
        if (f.log.seq === null) this.followed.delete(f.id);
      }
      for (const w of f.joinWaiters.splice(0)) w.reject(error);
      throw error;
    } finally {
      f.replaying = false;
    }
    let result: JoinResult = { conversationId: f.id, resumed };
    if (resumed) {
      // A history page follows instead (after `reload`).
      if (ack.recovered === false) {
        result = { conversationId: f.id, resumed: false };
        this.lost(f);
      }
      // The replay arrived before its ack: what is still missing comes from sync.
      else if (ack.hasMore || (f.log.seq !== null && (ack.latestSeq ?? 0) > f.log.seq)) this.fill(f.id);
      else f.fromHistory = false;
    }
    if (ack.latestSeq !== undefined) result.latestSeq = ack.latestSeq;
    for (const w of f.joinWaiters.splice(0)) w.resolve(result);
    return result;
  }

  /** `recovered: false`: the missed part of the log is gone, the app must reload. */
  private lost(f: Followed): void {
    if (f.log.seq === null) return; // already reloading
    if (f.fromHistory) {
      // It just loaded a page and the log still lacks what follows it (an
      // empty page of a conversation whose log was trimmed): reloading again
      // would loop, so start from the number the log stands at.
      void this.startAtLatest(f);
      return;
    }
    clearTimeout(f.gapTimer);
    f.gapTimer = undefined;
    f.log.unknown();
    this.toSync.delete(f.id);
    if (!f.joined) this.followed.delete(f.id);
    this.emit('reload', { conversationId: f.id });
    if (f.joined && this.socket.connected) {
      this.joinRoom(f).catch((error) => this.emit('sync-error', asParloirError(error)));
    }
  }

  private async startAtLatest(f: Followed): Promise<void> {
    f.fromHistory = false;
    try {
      // A number past any real one replays nothing and answers where the log stands.
      const data = await this.request('sync', { conversations: { [f.id]: Number.MAX_SAFE_INTEGER } });
      const replay = data.conversations[f.id];
      if (!replay || 'recovered' in replay) return;
      const waiting = f.log.lowestWaiting;
      const start = waiting === undefined ? replay.latestSeq : Math.min(replay.latestSeq, waiting - 1);
      for (const ready of f.log.startAt(Math.max(start, f.log.seq ?? 0))) this.deliver(ready);
      this.watchGap(f);
    } catch (error) {
      this.emit('sync-error', asParloirError(error));
    }
  }

  private fill(conversationId: ConversationId): void {
    this.toSync.add(conversationId);
    void this.pump();
  }

  /** Runs the wanted syncs, one call at a time. */
  private async pump(): Promise<void> {
    while (this.syncing) await this.syncing;
    if (!this.toSync.size && !this.discoveryWanted) return;
    const run = this.drainSyncs();
    this.syncing = run;
    try {
      await run;
    } finally {
      if (this.syncing === run) this.syncing = null;
    }
    // A failed call is retried later by another pump: the catch-up is done
    // only once nothing is left to sync on this connection.
    const done = !this.toSync.size && !this.discoveryWanted && this.socket.connected;
    if (done && this.resuming === this.connection && !this.closed) {
      this.resuming = 0;
      this.emit('resumed', { syncedAt: this.since ?? null });
    }
  }

  private async drainSyncs(): Promise<void> {
    const connection = this.connection;
    const current = () => !this.closed && this.socket.connected && connection === this.connection;
    while (current()) {
      let ids: ConversationId[] = [];
      try {
        if (this.discoveryWanted) {
          await this.discover();
          this.discoveryWanted = false;
          continue;
        }
        ids = this.takeToSync();
        if (!ids.length) return;
        const request: SyncRequest = { conversations: {} };
        for (const id of ids) request.conversations[id] = this.followed.get(id)?.log.seq ?? 0;
        // Only to keep the answer small: conversations added are found by `discover`.
        if (this.since !== undefined) request.since = this.since;
        this.applySync(await this.request('sync', request));
      } catch (error) {
        for (const id of ids) this.toSync.add(id);
        if (!current()) return;
        this.emit('sync-error', asParloirError(error));
        setTimeout(() => void this.pump(), this.retryDelayMs);
        return;
      }
    }
  }

  /** Up to one call's worth of the conversations to sync that can be (not loading a page, still followed). */
  private takeToSync(): ConversationId[] {
    const ids: ConversationId[] = [];
    for (const id of this.toSync) {
      if (ids.length === SYNC_MAX) break;
      this.toSync.delete(id);
      if (this.followed.get(id)?.log.seq != null) ids.push(id);
    }
    return ids;
  }

  /**
   * The conversations the user was added to since the last sync, followed
   * from their first number. Asked without naming any conversation: the
   * server picks the 100 oldest before leaving out the named ones, so a call
   * naming many could hide newer additions.
   */
  private async discover(): Promise<void> {
    let since = this.since;
    let syncedAt: string | undefined;
    for (let page = 0; page < ADDED_PAGES_MAX; page += 1) {
      const data = await this.request('sync', since === undefined ? { conversations: {} } : { conversations: {}, since });
      syncedAt ??= data.syncedAt;
      this.emit('unread', data.unread);
      // Without a `since` the list is the last 30 days, not what was added
      // while the app was away: an app starting afresh loads its list itself.
      if (since === undefined) break;
      for (const conversation of data.conversationsAdded) {
        if (this.followed.has(conversation.id)) continue;
        // Its log from the start: the app gets `conversation-created` and all that followed.
        this.follow(conversation.id, 0);
        this.toSync.add(conversation.id);
      }
      const last = data.conversationsAdded[data.conversationsAdded.length - 1];
      if (!last || data.conversationsAdded.length < ADDED_MAX) break;
      // A full page: go on after its last one, a millisecond back so that none
      // created within the same millisecond is skipped (those seen are skipped above).
      since = new Date(Date.parse(last.createdAt) - 1).toISOString();
    }
    if (syncedAt !== undefined) this.since = syncedAt;
  }

  private applySync(data: SyncAck): void {
    this.emit('unread', data.unread);
    for (const [id, replay] of Object.entries(data.conversations)) {
      const f = this.followed.get(id);
      if (!f) continue;
      if ('recovered' in replay) {
        this.lost(f);
        continue;
      }
      // The log holds what follows the app's starting point.
      f.fromHistory = false;
      for (const e of replay.events) this.offer(id, { seq: e.seq, type: e.type, data: e.data, replayed: true });
      if (replay.hasMore) this.toSync.add(id);
    }
  }

  // ------------------------------------------------------------------ helpers

  private follow(id: ConversationId, seq: number | null): Followed {
    const f: Followed = {
      id,
      log: new Sequencer(seq),
      joined: false,
      loadingHistory: false,
      fromHistory: false,
      replaying: false,
      joinWaiters: [],
    };
    this.followed.set(id, f);
    return f;
  }

  private connectedWithin(ms: number): Promise<boolean> {
    if (this.socket.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onConnect = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.socket.off('connect', onConnect);
        resolve(this.socket.connected);
      }, ms);
      this.socket.once('connect', onConnect);
    });
  }
}

/** Wraps a socket made with `io(url + "/messaging", { auth: { token } })`. */
export function createClient(socket: ParloirSocket, options?: ClientOptions): ParloirClient {
  return new ParloirClient(socket, options);
}

/** The conversation and number of a numbered event, or null for the others (typing, presence…). */
function numberOf(event: string, payload: unknown): { conversationId: ConversationId; seq: number } | null {
  if (typeof payload !== 'object' || payload === null) return null;
  const p = payload as { seq?: unknown; conversationId?: unknown; id?: unknown };
  if (typeof p.seq !== 'number' || !Number.isInteger(p.seq) || p.seq < 1) return null;
  // `conversation-created` is the Conversation itself: its id is `id`.
  const conversationId = typeof p.conversationId === 'string' ? p.conversationId
    : event === 'conversation-created' && typeof p.id === 'string' ? p.id : null;
  return conversationId === null ? null : { conversationId, seq: p.seq };
}

function asParloirError(error: unknown): ParloirError {
  if (error instanceof ParloirError) return error;
  return new ParloirError('INTERNAL', error instanceof Error ? error.message : String(error));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function newClientMessageId(): ClientMessageId {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  // randomUUID exists only in secure contexts (https, localhost).
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
