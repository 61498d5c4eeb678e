// parloir demo page: the product's protocol (shared/PROTOCOL.md) spoken by the
// official socket.io-client v4 (web/vendor/socket.io.min.js), no framework.
//
// Rules this file keeps:
// - message content and every other server string reach the DOM through
//   textContent / text nodes only (never innerHTML);
// - the token travels in `auth: {token}` and `Authorization: Bearer`, never in a URL;
// - attachment URLs are used only when they parse as http(s) URLs.
'use strict';

(() => {
  const SESSION_KEY = 'parloir-demo-session';
  const HISTORY_PAGE = 30;
  const GAP_MS = 1000; // events waiting this long behind a missing number: ask the log for it
  const SYNC_MAX = 100; // conversations per `sync`
  const SYNC_ROUNDS_MAX = 50; // `hasMore` rounds per catch-up
  const TYPING_REPEAT_MS = 2000; // emit `user-typing` at most this often while typing
  const TYPING_IDLE_MS = 3000; // then `user-stopped-typing` after this much quiet
  const TYPING_SHOWN_MAX_MS = 7000; // hide a typist we stopped hearing from (missed event)
  const ACK_TIMEOUT_MS = 10000;
  const NEAR_BOTTOM_PX = 48;
  const BANNER_MS = 12000;

  const $ = (id) => document.getElementById(id);
  const el = {
    banner: $('banner'), bannerText: $('banner-text'), bannerClose: $('banner-close'),
    signin: $('signin'), signinForm: $('signin-form'), signinUser: $('signin-user'),
    signinName: $('signin-name'), signinError: $('signin-error'),
    app: $('app'), meAvatar: $('me-avatar'), meName: $('me-name'), meMeta: $('me-meta'),
    signout: $('signout'), conn: $('conn-status'),
    newConv: $('new-conversation'), newConvUser: $('new-conversation-user'),
    newConvError: $('new-conversation-error'),
    totalUnread: $('total-unread'), convList: $('conversation-list'), convEmpty: $('conversation-empty'),
    chatEmpty: $('chat-empty'), chatMain: $('chat-main'), back: $('back'),
    peerAvatar: $('peer-avatar'), peerName: $('peer-name'), peerDot: $('peer-dot'),
    peerStatus: $('peer-status-text'),
    messages: $('messages'), loadOlder: $('load-older'), messageList: $('message-list'),
    typing: $('typing'),
    composer: $('composer'), composerText: $('composer-text'),
    composerAttachments: $('composer-attachments'), composerError: $('composer-error'),
  };

  // ---------------------------------------------------------------- state

  let session = null; // {token, userId, role, name, expiresAt}; only the identity is stored
  let socket = null;
  /** conversation id -> {id, participantIds, title, createdAt, lastMessageAt, lastMessage, unreadCount} */
  const conversations = new Map();
  /** user id -> {online, lastSeen} */
  const presence = new Map();
  /** conversation id -> Map(user id -> message id read up to), from `message-read` */
  const readCursors = new Map();
  /** conversation id -> 'initial': a join in flight that asked for a history page */
  const pendingJoins = new Map();
  let totalUnread = 0;
  /** The open conversation, or null. */
  let view = null;
  /** Refused handshakes since the last successful connect (stops a refresh loop). */
  let refusedHandshakes = 0;

  // ---------------------------------------------------------------- DOM helpers

  /** Builds an element. Strings become text nodes: never parsed as HTML. */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function hueOf(text) {
    let hash = 0;
    for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return hash % 360;
  }

  function paintAvatar(node, id, label) {
    node.textContent = (label || id || '?').trim().charAt(0).toUpperCase() || '?';
    node.style.setProperty('--hue', String(hueOf(id || '')));
  }

  let bannerTimer = null;

  /** Shows an error. `kind: 'connection'` stays until the socket connects; others fade after a while. */
  function showBanner(text, kind = 'event') {
    clearTimeout(bannerTimer);
    el.banner.dataset.kind = kind;
    el.bannerText.textContent = text;
    el.banner.hidden = false;
    if (kind !== 'connection') bannerTimer = setTimeout(hideBanner, BANNER_MS);
  }

  function hideBanner() {
    clearTimeout(bannerTimer);
    el.banner.hidden = true;
  }

  function timeOf(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    const now = new Date();
    if (d.toDateString() === now.toDateString()) {
      return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    }
    return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
  }

  function lastSeenText(iso) {
    if (!iso) return 'offline';
    const d = new Date(iso);
    const seconds = Math.round((Date.now() - d.getTime()) / 1000);
    if (seconds < 60) return 'last seen just now';
    if (seconds < 3600) return `last seen ${Math.floor(seconds / 60)} min ago`;
    if (d.toDateString() === new Date().toDateString()) {
      return `last seen today at ${d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
    }
    return `last seen ${d.toLocaleDateString([], { day: 'numeric', month: 'short' })}`;
  }

  function newClientMessageId() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
  }

  // ---------------------------------------------------------------- sign-in

  /** The identity signed in with in this tab (never the token: a reload mints a fresh one). */
  function savedIdentity() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      if (saved && typeof saved.userId === 'string' && typeof saved.role === 'string') return saved;
    } catch {
      // a corrupt entry is the same as none
    }
    return null;
  }

  function saveIdentity() {
    try {
      const { userId, role, name } = session;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify({ userId, role, name }));
    } catch {
      // storage may be unavailable (private mode); the session then lasts the page
    }
  }

  function forgetIdentity() {
    try {
      sessionStorage.removeItem(SESSION_KEY);
    } catch {
      // nothing to remove
    }
  }

  async function signIn(userId, role, name) {
    const minted = await mintToken(userId, role, name);
    session = { token: minted.token, userId: minted.userId, role, name, expiresAt: minted.expiresAt };
    saveIdentity();
    start();
  }

  async function mintToken(userId, role, name) {
    const res = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ userId, role, name: name || null }),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const message = body && body.error ? body.error.message : `HTTP ${res.status}`;
      throw new Error(message);
    }
    return body;
  }

  el.signinForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    el.signinError.textContent = '';
    const userId = el.signinUser.value.trim();
    const role = new FormData(el.signinForm).get('role') || 'client';
    const name = el.signinName.value.trim();
    if (!userId) {
      el.signinError.textContent = 'Choose a user id.';
      el.signinUser.focus();
      return;
    }
    const button = el.signinForm.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await signIn(userId, role, name);
    } catch (e) {
      el.signinError.textContent = `Sign-in failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });

  el.signout.addEventListener('click', () => {
    forgetIdentity();
    if (socket) socket.disconnect();
    window.location.reload();
  });

  /** Dev sign-in again with the same identity (expired or refused token). */
  async function refreshToken() {
    try {
      const minted = await mintToken(session.userId, session.role, session.name);
      session.token = minted.token;
      session.expiresAt = minted.expiresAt;
      return true;
    } catch (e) {
      showBanner(`Could not renew the session: ${e.message}. Sign out and in again.`, 'connection');
      return false;
    }
  }

  // ---------------------------------------------------------------- HTTP API

  async function api(method, path, body, retried) {
    const headers = { Authorization: `Bearer ${session.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (res.status === 401 && !retried && (await refreshToken())) {
      return api(method, path, body, true);
    }
    if (!res.ok) {
      const error = new Error(data && data.error ? data.error.message : `HTTP ${res.status}`);
      error.code = data && data.error ? data.error.code : `HTTP_${res.status}`;
      throw error;
    }
    return data;
  }

  // ---------------------------------------------------------------- socket

  function start() {
    el.signin.hidden = true;
    el.app.hidden = false;
    paintAvatar(el.meAvatar, session.userId, session.name);
    el.meName.textContent = session.name || session.userId;
    el.meMeta.textContent = `${session.userId} · ${session.role}`;
    document.title = `${session.name || session.userId} — parloir demo`;

    // `auth` as a function: every (re)connection sends the current token.
    socket = io('/messaging', { auth: (cb) => cb({ token: session.token }) });

    socket.on('connect', () => {
      refusedHandshakes = 0;
      setConnection('online', 'Connected');
      if (el.banner.dataset.kind === 'connection') hideBanner();
      if (view) joinOpen(view);
      if (syncedAt === null) {
        // First connection: the list over HTTP, and the point later syncs resume from.
        syncConversations();
        syncLogs([], true);
      } else {
        resume();
      }
    });
    socket.on('disconnect', async (reason) => {
      setConnection('offline', 'Reconnecting…');
      pendingJoins.clear();
      // Typing state is re-announced by the server when we rejoin.
      stopTyping();
      clearTypists();
      if (reason === 'io server disconnect') {
        // The server closed us (an expired token, or it is shutting down):
        // the client does not reconnect by itself then. Renew and reconnect.
        await refreshToken();
        socket.connect();
      }
    });
    socket.on('connect_error', async (err) => {
      const message = err && err.message ? err.message : 'unknown error';
      setConnection('offline', 'Offline');
      showBanner(`Cannot connect to the server: ${message}. Retrying…`, 'connection');
      if (message === 'unauthorized' || message === 'token_expired') {
        // A refused handshake is not retried by the client: renew and retry, twice at most.
        refusedHandshakes += 1;
        if (refusedHandshakes > 2) {
          showBanner('The server refuses this session. Sign out and sign in again.', 'connection');
        } else if (await refreshToken()) {
          socket.connect();
        }
      }
    });
    socket.on('error', (e) => {
      const code = e && e.code ? e.code : 'ERROR';
      const what = e && e.event ? `${e.event}: ` : '';
      // TOKEN_EXPIRED is followed by a server disconnect, which renews the token.
      showBanner(`${what}${e && e.message ? e.message : 'failed'} (${code})`);
    });

    socket.on('unread-count-updated', onUnread);
    for (const type of ['conversation-created', 'new-message', 'message-read', 'message-deleted', 'seq-skipped']) {
      socket.on(type, (data) => offerEvent(type, data, false));
    }
    socket.on('conversation-latest', onLatest);
    socket.on('conversation-history', onHistory);
    socket.on('user-typing', (e) => onTyping(e, true));
    socket.on('user-stopped-typing', (e) => onTyping(e, false));
    socket.on('user-online', (e) => setPresence(e.userId, true, null));
    socket.on('user-offline', (e) => setPresence(e.userId, false, e.lastSeenAt || null));

    setInterval(() => {
      renderConversationList();
      renderPeerStatus();
    }, 30000);
  }

  function setConnection(state, text) {
    el.conn.dataset.state = state;
    el.conn.textContent = text;
  }

  /** Emits with an ack and a deadline; resolves to the ack's `data`, rejects with its error. */
  function request(event, payload) {
    return new Promise((resolve, reject) => {
      socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
        if (err) reject(Object.assign(new Error('no answer from the server'), { code: 'TIMEOUT' }));
        else if (!ack || !ack.ok) {
          const error = ack && ack.error ? ack.error : { code: 'ERROR', message: 'failed' };
          reject(Object.assign(new Error(error.message), { code: error.code }));
        } else resolve(ack.data);
      });
    });
  }

  // ---------------------------------------------------------------- the conversation log

  // Every change to a conversation is numbered (PROTOCOL.md §8). The page keeps
  // the last number it applied for each conversation it shows or lists, and
  // applies events in that order, each once: two nodes may deliver out of
  // order, a replay and a live event may overlap. A number still missing
  // after GAP_MS is a lost broadcast, asked of `sync`; after a reconnect the
  // page asks for all it missed (the open conversation rejoins from its
  // number, the listed ones sync) instead of reloading.

  /** conversation id -> {seq (null: not known), early: Map(seq -> [type, data, replayed]), timer} */
  const logs = new Map();
  /** The last sync's `syncedAt` (null before the first): the next lists conversations added after it. */
  let syncedAt = null;
  let syncing = Promise.resolve();

  /** The page holds the conversation up to `seq` (a history page, a list entry): go on from there. */
  function startLog(id, seq) {
    let log = logs.get(id);
    if (!log) {
      log = { seq: null, early: new Map(), timer: null };
      logs.set(id, log);
    }
    // May go back (a page older than what the list had seen): applying an
    // event twice changes nothing here (messages by id, reads only forward).
    log.seq = seq;
    for (const n of log.early.keys()) if (n <= seq) log.early.delete(n);
    drainLog(id, log);
    return log;
  }

  /** A numbered event, live or replayed: applied in order, once. */
  function offerEvent(type, data, replayed) {
    const id = type === 'conversation-created' ? data.id : data.conversationId;
    const log = logs.get(id) || (type === 'conversation-created' && data.seq === 1 ? startLog(id, 0) : null);
    if (!log || typeof data.seq !== 'number') {
      applyEvent(type, data, replayed);
      return;
    }
    if ((log.seq !== null && data.seq <= log.seq) || log.early.has(data.seq)) return;
    log.early.set(data.seq, [type, data, replayed]);
    drainLog(id, log);
  }

  function drainLog(id, log) {
    if (log.seq === null) return;
    for (let next = log.early.get(log.seq + 1); next; next = log.early.get(log.seq + 1)) {
      log.early.delete(log.seq + 1);
      log.seq += 1;
      applyEvent(...next);
    }
    if (!log.early.size) {
      clearTimeout(log.timer);
      log.timer = null;
    } else if (!log.timer) {
      log.timer = setTimeout(() => {
        log.timer = null;
        if (log.early.size) syncLogs([id]);
      }, GAP_MS);
    }
  }

  function applyEvent(type, data, replayed) {
    // Replays refresh presence once, when the catch-up is done.
    if (type === 'new-message') {
      if (!replayed) learnOfPeer(data.senderId);
      onNewMessage(data);
    } else if (type === 'message-read') {
      if (!replayed) learnOfPeer(data.userId);
      onMessageRead(data);
    } else if (type === 'message-deleted') {
      onMessageDeleted(data);
    } else if (type === 'conversation-created') {
      upsertConversation(data);
      renderConversationList();
      if (!replayed) refreshPresence();
    }
    // `seq-skipped`: a number with nothing to apply.
  }

  /** The server says where a log stands: behind it, a broadcast was lost. */
  function onLatest(e) {
    const log = logs.get(e.conversationId);
    if (log && log.seq !== null && e.seq > log.seq) syncLogs([e.conversationId]);
  }

  /** After a reconnect: conversations added meanwhile, and what the listed ones missed. */
  function resume() {
    const listed = [...logs.keys()].filter((id) => !(view && view.id === id));
    syncLogs(listed, true).then(refreshPresence);
  }

  /** Asks `sync` what these conversations missed (and, with `discover`, which were added); one at a time. */
  function syncLogs(ids, discover = false) {
    syncing = syncing
      .then(() => runSync(ids, discover))
      .catch((e) => {
        if (socket.connected) showBanner(`Could not catch up: ${e.message}`);
      });
    return syncing;
  }

  async function runSync(ids, discover) {
    if (!socket.connected) return; // the next connection catches up
    const since = () => (syncedAt === null ? {} : { since: syncedAt });
    let todo = [...ids];
    if (discover) {
      const data = await request('sync', { conversations: {}, ...since() });
      // Without a `since` the list is the last 30 days: the HTTP list covers those.
      if (syncedAt !== null) {
        for (const conv of data.conversationsAdded) {
          if (logs.has(conv.id)) continue;
          upsertConversation(conv);
          startLog(conv.id, 0);
          todo.push(conv.id);
        }
      }
      syncedAt = data.syncedAt;
      applyUnread(data.unread);
    }
    for (let round = 0; todo.length && round < SYNC_ROUNDS_MAX; round += 1) {
      const more = [];
      const known = [...new Set(todo)].filter((id) => logs.has(id) && logs.get(id).seq !== null);
      for (let i = 0; i < known.length; i += SYNC_MAX) {
        const conversations = {};
        for (const id of known.slice(i, i + SYNC_MAX)) conversations[id] = logs.get(id).seq;
        const data = await request('sync', { conversations, ...since() });
        applyUnread(data.unread);
        for (const [id, replay] of Object.entries(data.conversations)) {
          if (replay.recovered === false) {
            reloadConversation(id);
            continue;
          }
          for (const e of replay.events) offerEvent(e.type, e.data, true);
          if (replay.hasMore) more.push(id);
        }
      }
      todo = more;
    }
  }

  function applyUnread(report) {
    totalUnread = report.totalUnread;
    for (const conv of conversations.values()) conv.unreadCount = report.conversations[conv.id] || 0;
    renderConversationList();
  }

  /** `recovered: false`: what the page missed is no longer in the log. Load the conversation afresh. */
  function reloadConversation(id) {
    logs.delete(id);
    if (view && view.id === id) {
      clearTypists();
      view = null;
      openConversation(id);
    } else {
      refreshPreview(id);
    }
  }

  // ---------------------------------------------------------------- conversations

  function otherParticipants(conv) {
    return (conv.participantIds || []).filter((id) => id !== session.userId);
  }

  function conversationName(conv) {
    if (conv.title) return conv.title;
    const others = otherParticipants(conv);
    return others.length ? others.join(', ') : session.userId;
  }

  function upsertConversation(conv) {
    const known = conversations.get(conv.id) || { unreadCount: 0, lastMessage: null };
    conversations.set(conv.id, { ...known, ...conv });
  }

  async function syncConversations() {
    try {
      const list = await api('GET', '/conversations?limit=100');
      for (const conv of list.conversations) {
        upsertConversation(conv);
        // The list holds each conversation up to its last message: a later sync goes on from there.
        if (!logs.has(conv.id)) startLog(conv.id, conv.lastMessage ? conv.lastMessage.seq : 0);
      }
      renderConversationList();
      refreshPresence();
    } catch (e) {
      showBanner(`Could not load conversations: ${e.message}`);
    }
  }

  // Presence flows only between users who both took part in a conversation
  // (the server's rule): a peer who sends or reads has just taken part, and
  // may be visible now where they were not.
  function learnOfPeer(userId) {
    if (!userId || userId === session.userId) return;
    const known = presence.get(userId);
    if (!known || !known.online) refreshPresence();
  }

  function refreshPresence() {
    const ids = new Set();
    for (const conv of conversations.values()) for (const id of otherParticipants(conv)) ids.add(id);
    const userIds = [...ids].slice(0, 100);
    if (!userIds.length || !socket.connected) return;
    request('get-presence', { userIds })
      .then((data) => {
        for (const id of userIds) {
          presence.set(id, { online: !!data.online[id], lastSeen: data.lastSeen[id] || null });
        }
        renderConversationList();
        renderPeerStatus();
      })
      .catch(() => {
        // the `error` event already shows the failure
      });
  }

  function setPresence(userId, online, lastSeen) {
    presence.set(userId, { online, lastSeen: online ? null : lastSeen });
    renderConversationList();
    renderPeerStatus();
  }

  function activityOf(conv) {
    return conv.lastMessageAt || (conv.lastMessage && conv.lastMessage.createdAt) || conv.createdAt || '';
  }

  function previewOf(conv) {
    const m = conv.lastMessage;
    if (!m) return 'No messages yet';
    const who = m.senderId === session.userId ? 'You: ' : '';
    if (m.content) return who + m.content;
    const first = (m.attachments || [])[0];
    return `${who}📎 ${first ? first.name || attachmentName(first.url) : 'attachment'}`;
  }

  function renderConversationList() {
    const focusedId = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.conversationId : undefined;
    const sorted = [...conversations.values()].sort((a, b) => activityOf(b).localeCompare(activityOf(a)));
    const items = sorted.map((conv) => {
      const others = otherParticipants(conv);
      const peer = others.length === 1 ? presence.get(others[0]) : null;
      const avatar = h('span', { class: 'avatar', 'aria-hidden': 'true' });
      paintAvatar(avatar, others[0] || conv.id, conversationName(conv));
      if (peer && peer.online) avatar.append(h('span', { class: 'dot online' }));
      const unread = conv.unreadCount || 0;
      const time = activityOf(conv);
      const button = h('button', {
        type: 'button',
        class: 'conversation',
        'data-conversation-id': conv.id,
        'aria-current': view && view.id === conv.id ? 'true' : null,
        onclick: () => openConversation(conv.id),
      },
      avatar,
      h('span', { class: 'conversation-body' },
        h('span', { class: 'conversation-top' },
          h('span', { class: 'conversation-name', text: conversationName(conv) }),
          conv.lastMessage ? h('time', { class: 'conversation-time small', datetime: time, text: timeOf(time) }) : null),
        h('span', { class: 'conversation-bottom' },
          h('span', { class: 'conversation-preview small', text: previewOf(conv) }),
          unread > 0
            ? h('span', { class: 'badge', 'aria-label': `${unread} unread`, text: String(unread) })
            : null)));
      return h('li', null, button);
    });
    el.convList.replaceChildren(...items);
    el.convEmpty.hidden = items.length > 0;
    if (focusedId) {
      const again = el.convList.querySelector(`[data-conversation-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    el.totalUnread.hidden = totalUnread === 0;
    el.totalUnread.textContent = String(totalUnread);
    el.totalUnread.setAttribute('aria-label', `${totalUnread} unread in total`);
    const base = `${session.name || session.userId} — parloir demo`;
    document.title = totalUnread > 0 ? `(${totalUnread}) ${base}` : base;
  }

  const previewFetches = new Map();
  /** A conversation we are not joined to changed: fetch its newest message for the list. */
  function refreshPreview(conversationId) {
    clearTimeout(previewFetches.get(conversationId));
    previewFetches.set(conversationId, setTimeout(async () => {
      previewFetches.delete(conversationId);
      try {
        const page = await api('GET', `/conversations/${encodeURIComponent(conversationId)}/messages?limit=1`);
        const conv = conversations.get(conversationId);
        const last = page.messages[page.messages.length - 1];
        // Reloaded after `recovered: false`: the list goes on from this page.
        if (!logs.has(conversationId)) startLog(conversationId, last ? last.seq : 0);
        if (conv && last) {
          conv.lastMessage = last;
          conv.lastMessageAt = last.createdAt;
          renderConversationList();
        }
      } catch {
        // the list stays as it was; the next event retries
      }
    }, 150));
  }

  function onUnread(e) {
    if (typeof e.totalUnread === 'number') totalUnread = e.totalUnread;
    if (e.conversationId) {
      const conv = conversations.get(e.conversationId);
      if (!conv) {
        syncConversations();
        return;
      }
      const before = conv.unreadCount || 0;
      conv.unreadCount = e.conversationUnread || 0;
      if (conv.unreadCount > before && !(view && view.id === e.conversationId)) refreshPreview(e.conversationId);
    }
    renderConversationList();
  }

  el.newConv.addEventListener('submit', async (event) => {
    event.preventDefault();
    el.newConvError.textContent = '';
    const other = el.newConvUser.value.trim();
    if (!other) {
      el.newConvError.textContent = 'Enter the user id of the person to talk to.';
      el.newConvUser.focus();
      return;
    }
    if (other === session.userId) {
      el.newConvError.textContent = 'Choose someone else: a conversation needs two people.';
      return;
    }
    try {
      const conv = await api('POST', '/conversations', { participantIds: [other] });
      upsertConversation(conv);
      el.newConvUser.value = '';
      renderConversationList();
      refreshPresence();
      openConversation(conv.id);
    } catch (e) {
      el.newConvError.textContent = e.message;
    }
  });

  // ---------------------------------------------------------------- the open conversation

  function openConversation(id) {
    const conv = conversations.get(id);
    if (!conv) return;
    if (view && view.id === id) {
      el.app.classList.add('chat-open');
      el.composerText.focus();
      return;
    }
    if (view) {
      stopTyping();
      clearTypists();
      if (socket.connected) socket.emit('leave-conversation', { conversationId: view.id });
    }
    view = {
      id,
      messages: new Map(), // id -> Message
      order: [], // message ids, oldest first (UUIDv7 strings sort by time)
      nodes: new Map(), // message id -> <li>
      pending: new Map(), // clientMessageId -> {message, node, state, error}
      typists: new Map(), // user id -> {name, timer}
      hasOlder: false,
      loadingOlder: false,
      readUpTo: '', // our own cursor, as far as this page moved it
      loaded: false, // its history page arrived: the page holds it up to its log number
    };
    el.messageList.replaceChildren();
    stickToBottom = true;
    el.loadOlder.hidden = true;
    el.typing.textContent = '';
    el.chatEmpty.hidden = true;
    el.chatMain.hidden = false;
    el.app.classList.add('chat-open');
    paintAvatar(el.peerAvatar, otherParticipants(conv)[0] || id, conversationName(conv));
    el.peerName.textContent = conversationName(conv);
    renderPeerStatus();
    renderConversationList();
    if (socket.connected) joinOpen(view);
    el.composerText.focus();
  }

  /**
   * Joins the open conversation: the newest page, or (after a reconnect) every
   * numbered event after the last one the page applied.
   */
  function joinOpen(v) {
    const log = logs.get(v.id);
    const resuming = v.loaded && log && log.seq !== null;
    const payload = resuming
      ? { conversationId: v.id, afterSeq: log.seq }
      : { conversationId: v.id, limit: HISTORY_PAGE };
    if (!resuming) pendingJoins.set(v.id, 'initial');
    request('join-conversation', payload)
      .then((ack) => {
        if (resuming && view === v) {
          // The replay came before this ack, as ordinary events.
          if (ack.recovered === false) reloadConversation(v.id);
          else if (ack.hasMore || ack.latestSeq > (logs.has(v.id) ? logs.get(v.id).seq : 0)) syncLogs([v.id]);
        }
        // Opening a conversation is taking part in it: its people may be visible now.
        refreshPresence();
      })
      .catch((e) => {
        pendingJoins.delete(v.id);
        showBanner(`Could not open the conversation: ${e.message}`);
      });
  }

  function onHistory(history) {
    const initial = pendingJoins.get(history.conversationId) === 'initial';
    pendingJoins.delete(history.conversationId);
    if (!view || view.id !== history.conversationId) return;
    addMessages(history.messages);
    if (initial) {
      view.hasOlder = history.hasMore;
      el.loadOlder.hidden = !view.hasOlder;
      scrollToBottom();
      view.loaded = true;
      // A page carries messages only: the reads and deletions after its
      // newest one (✓✓ included) come from the log.
      startLog(view.id, history.messages.reduce((n, m) => Math.max(n, m.seq || 0), 0));
      syncLogs([view.id]);
    }
    maybeMarkRead();
  }

  el.loadOlder.addEventListener('click', async () => {
    const v = view;
    if (!v || v.loadingOlder || !v.order.length) return;
    v.loadingOlder = true;
    el.loadOlder.disabled = true;
    el.loadOlder.textContent = 'Loading…';
    try {
      const page = await api('GET', `/conversations/${encodeURIComponent(v.id)}/messages?limit=${HISTORY_PAGE}&before=${encodeURIComponent(v.order[0])}`);
      if (view !== v) return;
      const fromBottom = el.messages.scrollHeight - el.messages.scrollTop;
      addMessages(page.messages);
      el.messages.scrollTop = el.messages.scrollHeight - fromBottom;
      v.hasOlder = page.hasMore;
    } catch (e) {
      showBanner(`Could not load older messages: ${e.message}`);
    } finally {
      v.loadingOlder = false;
      el.loadOlder.disabled = false;
      el.loadOlder.textContent = 'Load older messages';
      el.loadOlder.hidden = !(view === v && v.hasOlder);
    }
  });

  function onNewMessage(message) {
    const conv = conversations.get(message.conversationId);
    // A replay marks a message deleted since: no preview (its deletion follows).
    if (conv && !message.deletedAt) {
      conv.lastMessage = message;
      conv.lastMessageAt = message.createdAt;
      renderConversationList();
    }
    if (!view || view.id !== message.conversationId) return;
    const mine = message.senderId === session.userId;
    const wasNearBottom = followsBottom();
    if (!mine) removeTypist(message.senderId);
    addMessages([message]);
    if (mine || wasNearBottom) scrollToBottom();
    maybeMarkRead();
  }

  function onMessageDeleted(e) {
    const conv = conversations.get(e.conversationId);
    if (conv && conv.lastMessage && conv.lastMessage.id === e.messageId) refreshPreview(e.conversationId);
    if (!view || view.id !== e.conversationId) return;
    const node = view.nodes.get(e.messageId);
    if (node) showDeleted(node);
  }

  function showDeleted(node) {
    node.classList.add('deleted');
    const body = node.querySelector('.bubble-body');
    if (body) body.replaceChildren(h('em', { text: 'This message was deleted.' }));
    const button = node.querySelector('button.delete');
    if (button) button.remove();
  }

  async function deleteMessage(messageId) {
    try {
      // The room's `message-deleted` updates the page, this one included.
      await api('DELETE', `/messages/${encodeURIComponent(messageId)}`);
    } catch (e) {
      showBanner(`Could not delete the message: ${e.message}`);
    }
  }

  function addMessages(messages) {
    for (const message of messages) addMessage(message);
  }

  function addMessage(message) {
    const v = view;
    if (message.clientMessageId && v.pending.has(message.clientMessageId)) {
      v.pending.get(message.clientMessageId).node.remove();
      v.pending.delete(message.clientMessageId);
    }
    if (v.messages.has(message.id)) return;
    v.messages.set(message.id, message);
    let i = v.order.length;
    while (i > 0 && v.order[i - 1] > message.id) i -= 1;
    v.order.splice(i, 0, message.id);
    const node = renderMessage(message);
    v.nodes.set(message.id, node);
    const next = i + 1 < v.order.length
      ? v.nodes.get(v.order[i + 1])
      : el.messageList.querySelector('li.pending');
    el.messageList.insertBefore(node, next || null);
  }

  function renderMessage(message, pendingState) {
    const mine = message.senderId === session.userId;
    const body = h('div', { class: 'bubble-body' });
    const conv = conversations.get(message.conversationId);
    if (!mine && conv && (conv.participantIds || []).length > 2) {
      body.append(h('span', { class: 'sender small', text: message.senderId }));
    }
    if (message.content) body.append(h('p', { class: 'content', text: message.content }));
    const attachments = (message.attachments || []).map(renderAttachment).filter(Boolean);
    if (attachments.length) body.append(h('div', { class: 'attachments' }, ...attachments));
    const meta = h('span', { class: 'meta small' },
      h('time', { datetime: message.createdAt, title: new Date(message.createdAt).toLocaleString(), text: timeOf(message.createdAt) }));
    if (mine) meta.append(receipt(message, pendingState));
    if (mine && message.id && !pendingState) {
      meta.append(h('button', {
        type: 'button',
        class: 'link delete',
        title: 'Delete this message for everyone',
        'aria-label': 'Delete message',
        text: 'Delete',
        onclick: () => deleteMessage(message.id),
      }));
    }
    const sender = mine ? 'You' : message.senderId;
    const node = h('li', {
      class: `message ${mine ? 'mine' : 'theirs'}${pendingState ? ' pending' : ''}`,
      'data-message-id': message.id || null,
      'data-client-message-id': message.clientMessageId || null,
    },
    h('span', { class: 'sr-only', text: `${sender}: ` }),
    h('div', { class: 'bubble' }, body, meta));
    // Replays carry messages deleted since, emptied.
    if (message.deletedAt) showDeleted(node);
    return node;
  }

  function receipt(message, pendingState) {
    if (pendingState === 'sending') {
      return h('span', { class: 'receipt', 'data-state': 'sending', title: 'Sending', text: '◷' },
        h('span', { class: 'sr-only', text: ' sending' }));
    }
    if (pendingState === 'failed') {
      return h('span', { class: 'receipt', 'data-state': 'failed', title: 'Not sent', text: '!' });
    }
    const read = isReadByOthers(message.id);
    return h('span', {
      class: 'receipt',
      'data-state': read ? 'read' : 'sent',
      title: read ? 'Read' : 'Sent',
      text: read ? '✓✓' : '✓',
    }, h('span', { class: 'sr-only', text: read ? ' read' : ' sent' }));
  }

  function isReadByOthers(messageId) {
    const conv = conversations.get(view.id);
    const cursors = readCursors.get(view.id);
    if (!conv || !cursors) return false;
    const others = otherParticipants(conv);
    return others.length > 0 && others.every((id) => (cursors.get(id) || '') >= messageId);
  }

  function renderReceipts() {
    for (const [id, node] of view.nodes) {
      const message = view.messages.get(id);
      if (message.senderId !== session.userId) continue;
      const old = node.querySelector('.receipt');
      if (old) old.replaceWith(receipt(message));
    }
  }

  function onMessageRead(e) {
    if (e.userId === session.userId) return; // our own devices; unread counts follow
    let cursors = readCursors.get(e.conversationId);
    if (!cursors) {
      cursors = new Map();
      readCursors.set(e.conversationId, cursors);
    }
    if ((cursors.get(e.userId) || '') < e.messageId) cursors.set(e.userId, e.messageId);
    if (view && view.id === e.conversationId) renderReceipts();
  }

  function attachmentName(url) {
    try {
      const last = new URL(url).pathname.split('/').filter(Boolean).pop();
      return last ? decodeURIComponent(last) : url;
    } catch {
      return url;
    }
  }

  function renderAttachment(a) {
    let url;
    try {
      url = new URL(a.url);
    } catch {
      return null;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
    const name = a.name || attachmentName(a.url);
    const link = h('a', { href: url.href, target: '_blank', rel: 'noopener noreferrer', class: 'attachment' });
    if (typeof a.type === 'string' && a.type.startsWith('image/')) {
      link.classList.add('image');
      const img = h('img', { src: url.href, alt: name, referrerpolicy: 'no-referrer' });
      img.addEventListener('load', () => {
        if (stickToBottom) scrollToBottom();
        maybeMarkRead();
      });
      // An image that cannot load becomes a plain link.
      img.addEventListener('error', () => {
        link.classList.remove('image');
        link.replaceChildren(h('span', { 'aria-hidden': 'true', text: '📎 ' }), name);
      });
      link.append(img);
    } else {
      link.append(h('span', { 'aria-hidden': 'true', text: '📎 ' }), name);
    }
    return link;
  }

  // ---------------------------------------------------------------- read cursor

  // Whether the reader keeps to the newest messages: set by their scrolling,
  // so content that grows later (an image loading) keeps them there.
  let stickToBottom = true;

  function isNearBottom() {
    const box = el.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
  }

  function followsBottom() {
    return stickToBottom || isNearBottom();
  }

  function scrollToBottom() {
    stickToBottom = true;
    el.messages.scrollTop = el.messages.scrollHeight;
  }

  /** Marks the open conversation read up to its newest message, when the reader can see it. */
  function maybeMarkRead() {
    if (!view || !socket || !socket.connected || document.visibilityState !== 'visible') return;
    if (el.app.hidden || el.chatMain.hidden || !isNearBottom()) return;
    const lastId = view.order[view.order.length - 1];
    if (!lastId || lastId <= view.readUpTo) return;
    const conv = conversations.get(view.id);
    const unreadFromOthers = view.order.some((id) => id > view.readUpTo
      && view.messages.get(id).senderId !== session.userId);
    if (!unreadFromOthers && !(conv && conv.unreadCount > 0)) return;
    view.readUpTo = lastId;
    const v = view;
    request('mark-as-read', { messageId: lastId }).catch(() => {
      if (v.readUpTo === lastId) v.readUpTo = '';
    });
  }

  document.addEventListener('visibilitychange', maybeMarkRead);
  let lastScrollTop = 0;
  el.messages.addEventListener('scroll', () => {
    const top = el.messages.scrollTop;
    if (isNearBottom()) stickToBottom = true;
    else if (top < lastScrollTop) stickToBottom = false; // the reader scrolled up
    lastScrollTop = top;
    if (stickToBottom) maybeMarkRead();
  }, { passive: true });

  // ---------------------------------------------------------------- presence

  function renderPeerStatus() {
    if (!view) return;
    const conv = conversations.get(view.id);
    const others = conv ? otherParticipants(conv) : [];
    if (others.length !== 1) {
      el.peerDot.dataset.state = 'none';
      el.peerStatus.textContent = `${others.length + 1} participants`;
      return;
    }
    const p = presence.get(others[0]);
    const online = !!(p && p.online);
    el.peerDot.dataset.state = online ? 'online' : 'offline';
    el.peerStatus.textContent = online ? 'online' : lastSeenText(p ? p.lastSeen : null);
  }

  // ---------------------------------------------------------------- typing

  function onTyping(e, typing) {
    if (!view || e.conversationId !== view.id || e.userId === session.userId) return;
    if (!typing) {
      removeTypist(e.userId);
      return;
    }
    const known = view.typists.get(e.userId);
    if (known) clearTimeout(known.timer);
    const timer = setTimeout(() => removeTypist(e.userId), TYPING_SHOWN_MAX_MS);
    view.typists.set(e.userId, { name: e.userName || e.userId, timer });
    renderTypists();
  }

  function removeTypist(userId) {
    if (!view) return;
    const known = view.typists.get(userId);
    if (!known) return;
    clearTimeout(known.timer);
    view.typists.delete(userId);
    renderTypists();
  }

  function clearTypists() {
    if (!view) return;
    for (const t of view.typists.values()) clearTimeout(t.timer);
    view.typists.clear();
    renderTypists();
  }

  function renderTypists() {
    const names = view ? [...view.typists.values()].map((t) => t.name) : [];
    if (!names.length) el.typing.textContent = '';
    else if (names.length === 1) el.typing.textContent = `${names[0]} is typing…`;
    else el.typing.textContent = `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
  }

  // Our own typing: at most one `user-typing` per TYPING_REPEAT_MS while keys
  // come, `user-stopped-typing` after TYPING_IDLE_MS of quiet or on send.
  let typingIn = null;
  let typingSentAt = 0;
  let typingIdle = null;

  function noteTyping() {
    if (!view || !socket.connected) return;
    if (!el.composerText.value.trim()) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (typingIn !== view.id || now - typingSentAt >= TYPING_REPEAT_MS) {
      if (typingIn && typingIn !== view.id) stopTyping();
      socket.emit('user-typing', { conversationId: view.id });
      typingIn = view.id;
      typingSentAt = now;
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(typingIdle);
    typingIdle = null;
    if (typingIn && socket.connected) socket.emit('user-stopped-typing', { conversationId: typingIn });
    typingIn = null;
    typingSentAt = 0;
  }

  // ---------------------------------------------------------------- sending

  function guessType(url) {
    const ext = (url.pathname.split('.').pop() || '').toLowerCase();
    const images = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', svg: 'image/svg+xml', avif: 'image/avif' };
    if (images[ext]) return images[ext];
    if (ext === 'pdf') return 'application/pdf';
    return 'application/octet-stream';
  }

  /** The attachment field: URLs separated by spaces. Throws with a message for the user. */
  function parseAttachments(text) {
    const parts = text.split(/\s+/).filter(Boolean);
    if (parts.length > 10) throw new Error('At most 10 attachments.');
    return parts.map((raw) => {
      let url;
      try {
        url = new URL(raw);
      } catch {
        throw new Error(`Not a URL: ${raw}`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`Not an http(s) URL: ${raw}`);
      return { url: url.href, type: guessType(url), name: attachmentName(url.href) };
    });
  }

  function send() {
    if (!view) return;
    el.composerError.textContent = '';
    const content = el.composerText.value.trim();
    let attachments;
    try {
      attachments = parseAttachments(el.composerAttachments.value);
    } catch (e) {
      el.composerError.textContent = e.message;
      return;
    }
    if (!content && !attachments.length) return;
    const message = {
      conversationId: view.id,
      senderId: session.userId,
      content,
      attachments,
      clientMessageId: newClientMessageId(),
      createdAt: new Date().toISOString(),
    };
    el.composerText.value = '';
    el.composerAttachments.value = '';
    autosize();
    stopTyping();
    const pending = { message, node: null, state: 'sending' };
    view.pending.set(message.clientMessageId, pending);
    emitSend(view, pending);
  }

  function emitSend(v, pending) {
    const { message } = pending;
    pending.state = 'sending';
    renderPending(v, pending);
    scrollToBottom();
    const payload = {
      conversationId: message.conversationId,
      content: message.content,
      clientMessageId: message.clientMessageId,
    };
    if (message.attachments.length) payload.attachments = message.attachments;
    request('send-message', payload)
      .then((stored) => {
        if (view !== v) return;
        addMessage(stored);
        renderReceipts();
      })
      .catch((e) => {
        if (view !== v || !v.pending.has(message.clientMessageId)) return;
        // Perhaps stored: the same clientMessageId settles it (and the
        // server announces it if it was).
        if ((e.code === 'UNKNOWN_OUTCOME' || e.code === 'TIMEOUT') && (pending.retries ?? 0) < 3) {
          pending.retries = (pending.retries ?? 0) + 1;
          setTimeout(() => emitSend(v, pending), 1000 * pending.retries);
          return;
        }
        pending.state = 'failed';
        pending.error = e.message;
        renderPending(v, pending);
      });
  }

  function renderPending(v, pending) {
    const node = renderMessage(pending.message, pending.state);
    if (pending.state === 'failed') {
      node.querySelector('.bubble').append(h('span', { class: 'failure small' },
        `Not sent: ${pending.error}. `,
        h('button', { type: 'button', class: 'link', onclick: () => emitSend(v, pending), text: 'Retry' })));
    }
    if (pending.node) pending.node.replaceWith(node);
    else el.messageList.append(node);
    pending.node = node;
  }

  function autosize() {
    const t = el.composerText;
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
  }

  el.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  el.composerText.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  el.composerText.addEventListener('input', () => {
    autosize();
    noteTyping();
  });
  el.back.addEventListener('click', () => {
    el.app.classList.remove('chat-open');
    const current = view && el.convList.querySelector(`[data-conversation-id="${CSS.escape(view.id)}"]`);
    if (current) current.focus();
  });
  el.bannerClose.addEventListener('click', hideBanner);

  // The browser knows the network is gone long before a ping timeout tells
  // the socket (up to ~45 s): close the connection at once, and reconnect as
  // soon as it is back, which catches up on what was missed meanwhile.
  window.addEventListener('offline', () => {
    if (!socket) return;
    socket.disconnect(); // also stops reconnection attempts, which would only fail
    setConnection('offline', 'Offline');
  });
  window.addEventListener('online', () => {
    if (socket && !socket.connected) socket.connect();
  });

  // ---------------------------------------------------------------- boot

  const identity = savedIdentity();
  if (identity) {
    el.signinUser.value = identity.userId;
    el.signinName.value = identity.name || '';
    const radio = el.signinForm.querySelector(`input[name=role][value="${CSS.escape(identity.role)}"]`);
    if (radio) radio.checked = true;
    el.signin.hidden = true; // no flash of the form while the saved identity signs in again
    signIn(identity.userId, identity.role, identity.name).catch((e) => {
      forgetIdentity();
      el.signin.hidden = false;
      el.signinError.textContent = `Sign-in failed: ${e.message}`;
      el.signinUser.focus();
    });
  } else {
    el.signinUser.focus();
  }
})();
