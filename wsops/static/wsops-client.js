// wsops-client.js: the wsops protocol v1 client for browsers and Node >= 20, no dependencies.
//
// Served by `wsops serve` at /static/wsops-client.js (types: /static/wsops-client.d.ts).
// The rules are those of the Python client (wsops/client) and PROTOCOL.md:
// - one connection at a time; after it ends, reconnect after uniform(0, min(cap, base * 2^n)) ms
//   ("full jitter"), n counting failed attempts and reset once a connection stayed open a while;
//   after a drain's 1012 close whose reason carries `reconnect=MS`, after uniform(0, MS) instead
//   (at most 60 s), so a drained node's clients come back spread out;
// - every followed room is resubscribed with `since` = the last message delivered, so what the
//   server replays continues the stream exactly once; a replay it cannot do is a `gap` event;
// - requests wait in a bounded queue while disconnected; one sent but unanswered when the
//   connection dropped is sent again on the next (at least once).

export const PROTOCOL_VERSION = 1;
// Offered as the WebSocket subprotocol: a server of this version answers with it and one that
// speaks no version offered refuses the upgrade (HTTP 400). A browser fails a connection whose
// server answers without it (servers from before the negotiation): pass `protocols: []` there.
export const SUBPROTOCOL = "wsops.v1";

const MAX_ID = 2 ** 53;
const CLOSE_TIMEOUT_MS = 5000;
const ABNORMAL_CLOSE = 1006;
// Resubscribe refusals worth retrying on the same connection; any other code drops the room.
const RETRYABLE_CODES = new Set(["unavailable", "rate_limited", "internal"]);
const RETIRED_EPOCHS = 16;
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export class WsopsError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}
export class ServerError extends WsopsError {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}
export class RequestTimeoutError extends WsopsError {}
function finiteOnly(key, value) {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`${value} is not JSON (at ${JSON.stringify(key)}): send null or a string`);
  }
  return value;
}

export class QueueFullError extends WsopsError {}
export class ClientClosedError extends WsopsError {}

export function fullJitter(attempt, baseMs, capMs, random = Math.random) {
  return random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 62));
}

const RECONNECT_HINT_CAP_MS = 60000;
const HINT = /(?:^|[\s;,])reconnect=(\d{1,9})(?:ms)?(?=$|[\s;,])/;

// The window (ms) over which a 1012 close asks its client to spread its reconnect: the
// `reconnect=MS` token of the close reason (PROTOCOL.md), capped at 60 s; null otherwise.
export function reconnectHint(code, reason) {
  if (code !== 1012 || typeof reason !== "string") return null;
  const found = HINT.exec(reason);
  return found === null ? null : Math.min(Number(found[1]), RECONNECT_HINT_CAP_MS);
}

function deferred() {
  const d = { settled: false };
  d.promise = new Promise((resolve, reject) => {
    d.resolve = (v) => { d.settled = true; resolve(v); };
    d.reject = (e) => { d.settled = true; reject(e); };
  });
  d.promise.catch(() => {}); // nobody may be waiting: never an unhandled rejection
  return d;
}

// -- per-room sequencing (the Python client's tracker.py) -------------------------------------

class RoomTracker {
  constructor(room) {
    this.room = room;
    this.offset = null;
    this.epoch = null;
    this.synced = false; // false from a (re)connection until the room's subscribe reply
    this.held = [];
    this.retired = [];
  }

  get positioned() { return this.epoch !== null; }

  since() { return this.epoch === null ? null : { offset: this.offset, epoch: this.epoch }; }

  disconnected() { this.synced = false; this.held = []; }

  // A successful subscribe reply: returns [kind, payload] events (a gap, held messages).
  onReply(offset, epoch, recovered) {
    const events = [];
    if (this.epoch === null) this.move(offset, epoch);
    else if (recovered === true) { /* the replay from our position follows the reply */ }
    else if (recovered === false || offset !== this.offset || epoch !== this.epoch) {
      events.push(["gap", this.gap(offset, epoch)]);
      this.move(offset, epoch);
    }
    this.synced = true;
    const held = this.held;
    this.held = [];
    for (const msg of held) events.push(...this.onMessage(msg));
    return events;
  }

  onMessage(msg) {
    if (!this.synced) { this.held.push(msg); return []; }
    if (this.retired.includes(msg.epoch)) return [];
    if (msg.epoch === this.epoch) {
      if (msg.offset <= this.offset) return []; // replayed or repeated
      if (msg.offset === this.offset + 1) { this.offset = msg.offset; return [["message", msg]]; }
    } else if (msg.offset === 1) { // a new epoch from its start continues the stream
      this.move(msg.offset, msg.epoch);
      return [["message", msg]];
    }
    const gap = this.gap(msg.offset - 1, msg.epoch);
    this.move(msg.offset, msg.epoch);
    return [["gap", gap], ["message", msg]];
  }

  gap(newOffset, newEpoch) {
    return Object.freeze({ room: this.room, lastOffset: this.offset, lastEpoch: this.epoch,
      newOffset, newEpoch });
  }

  move(offset, epoch) {
    if (this.epoch !== null && epoch !== this.epoch && !this.retired.includes(this.epoch)) {
      this.retired.push(this.epoch);
      if (this.retired.length > RETIRED_EPOCHS) this.retired.shift();
    }
    const i = this.retired.indexOf(epoch); // the server went back to an epoch we had left
    if (i >= 0) this.retired.splice(i, 1);
    this.offset = offset;
    this.epoch = epoch;
  }
}

// -- requests: ids, the bounded queue, in-flight (the Python client's requests.py) -------------

class RequestBook {
  constructor(maxQueue) {
    if (!(maxQueue >= 1)) throw new RangeError("maxQueue must be >= 1");
    this.maxQueue = maxQueue;
    this.nextId = 1;
    this.urgent = [];
    this.queue = [];
    this.inFlight = new Map();
  }

  get size() { return this.urgent.length + this.queue.length + this.inFlight.size; }

  add(frame, { urgent = false, resend = true } = {}) {
    if (!urgent && this.queue.length >= this.maxQueue) {
      throw new QueueFullError(`outgoing queue is full (${this.maxQueue} requests)`);
    }
    const id = this.nextId++;
    if (id >= MAX_ID) throw new RangeError("request ids exhausted");
    const pending = { id, frame: { ...frame, id }, reply: deferred(), resend, timer: null,
      entry: null };
    // Encoded now: data that JSON cannot encode (a BigInt, a cycle, NaN or an infinity, which
    // JSON.stringify would silently turn into null) fails its own request at once instead of
    // the connection's send loop.
    pending.text = JSON.stringify(pending.frame, finiteOnly);
    (urgent ? this.urgent : this.queue).push(pending);
    return pending;
  }

  nextToSend() {
    while (this.urgent.length || this.queue.length) {
      const p = (this.urgent.length ? this.urgent : this.queue).shift();
      if (p.reply.settled) continue; // its caller gave up while it was queued
      this.inFlight.set(p.id, p);
      return p;
    }
    return null;
  }

  queuedFor(op, room) {
    return [...this.urgent, ...this.queue].some(
      (p) => p.frame.op === op && p.frame.room === room && !p.reply.settled);
  }

  resolve(reply) {
    const p = this.inFlight.get(reply.id);
    if (p === undefined) return null;
    this.inFlight.delete(reply.id);
    clearTimeout(p.timer);
    p.reply.resolve(reply);
    return p;
  }

  withdraw(p) {
    this.inFlight.delete(p.id);
    clearTimeout(p.timer);
    for (const q of [this.urgent, this.queue]) {
      const i = q.indexOf(p);
      if (i >= 0) q.splice(i, 1);
    }
  }

  // The connection dropped: unanswered requests go back to the front, in id order; the
  // client's own resubscribes are dropped (they are rebuilt from the rooms' positions).
  connectionLost() {
    const again = [...this.inFlight.values()].filter((p) => !p.reply.settled && p.resend);
    for (const p of this.inFlight.values()) if (!p.resend) p.reply.reject(new WsopsError("dropped"));
    for (const p of this.urgent) if (!p.resend) p.reply.reject(new WsopsError("dropped"));
    this.inFlight.clear();
    this.urgent = this.urgent.filter((p) => p.resend);
    again.sort((a, b) => a.id - b.id);
    this.queue.unshift(...again);
  }

  failAll(error) {
    for (const p of [...this.urgent, ...this.queue, ...this.inFlight.values()]) {
      clearTimeout(p.timer);
      p.reply.reject(error);
    }
    this.urgent = [];
    this.queue = [];
    this.inFlight.clear();
  }
}

// -- wire validation ---------------------------------------------------------------------------

const isInt = (v) => Number.isSafeInteger(v);
const isStr = (v) => typeof v === "string";

function toMessage(f) {
  if (!isStr(f.room) || !isInt(f.offset) || !isStr(f.epoch)) return null;
  const msg = { room: f.room, offset: f.offset, epoch: f.epoch, data: f.data,
    ts: isInt(f.ts) ? f.ts : 0 };
  if (isStr(f.from)) msg.from = f.from;
  if (isStr(f.traceparent)) msg.traceparent = f.traceparent;
  return Object.freeze(msg);
}

function position(reply, what) {
  if (!isInt(reply.offset) || !isStr(reply.epoch)) {
    throw new ServerError("bad_reply", `${what} reply without offset/epoch`);
  }
  return { offset: reply.offset, epoch: reply.epoch };
}

function pageTraceparent() {
  const meta = globalThis.document?.querySelector?.('meta[name="traceparent"]');
  return meta?.getAttribute("content") ?? null;
}

function socketUrl(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  return u;
}

// -- the client --------------------------------------------------------------------------------

export class WsopsClient {
  #opts;
  #book;
  #rooms = new Map(); // name -> { tracker, ready: deferred, presence, retries }
  #listeners = new Map();
  #state = "closed";
  #ws = null; // the open connection
  #attemptWs = null; // a connection being opened
  #closing = false;
  #error = null;
  #attempt = 0; // failed attempts since the last stable connection
  #openedAt = 0;
  #wasOpen = false;
  #firstOpen = null;
  #timers = new Set();
  #retryTimer = null;
  #closed = null; // resolves when close() finished
  #onOnline = null;

  constructor(url, options = {}) {
    this.url = url;
    socketUrl(url); // a malformed URL fails here, not on the first attempt
    this.#opts = {
      backoffBaseMs: 200, backoffCapMs: 10000, stableAfterMs: 5000, maxQueue: 1000,
      requestTimeoutMs: 10000, connectTimeoutMs: 10000, random: Math.random,
      protocols: [SUBPROTOCOL], ...options,
    };
    const { backoffBaseMs: base, backoffCapMs: cap } = this.#opts;
    if (!(base > 0) || !(cap >= base)) throw new RangeError("need 0 < backoffBaseMs <= backoffCapMs");
    this.#book = new RequestBook(this.#opts.maxQueue);
    this.reconnects = 0;
    this.closeCodes = [];
  }

  get state() { return this.#state; }
  get rooms() { return [...this.#rooms.keys()]; }
  get pending() { return this.#book.size; }

  // -- events --

  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) { this.#listeners.get(event)?.delete(listener); }

  #emit(event, payload) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(payload);
      } catch (err) {
        console.error(`wsops client: a '${event}' listener failed`, err);
      }
    }
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  // -- lifecycle --

  connect({ timeoutMs = 0 } = {}) {
    if (this.#closing) return Promise.reject(this.#error ?? new ClientClosedError("client is closed"));
    if (this.#firstOpen === null) {
      this.#firstOpen = deferred();
      this.#setState("connecting");
      if (globalThis.addEventListener && globalThis.removeEventListener) {
        // Back online: retry now instead of at the end of a long backoff.
        this.#onOnline = () => { if (this.#retryTimer !== null) this.#retryNow(); };
        globalThis.addEventListener("online", this.#onOnline);
      }
      this.#open();
    }
    if (!(timeoutMs > 0)) return this.#firstOpen.promise;
    return new Promise((resolve, reject) => {
      const timer = this.#later(timeoutMs, () => {
        this.close();
        reject(new RequestTimeoutError(`no connection within ${timeoutMs} ms`));
      });
      this.#firstOpen.promise.then(
        (v) => { this.#clear(timer); resolve(v); },
        (e) => { this.#clear(timer); reject(e); });
    });
  }

  close() {
    if (this.#closed !== null) return this.#closed;
    this.#closing = true;
    this.#clear(this.#retryTimer);
    this.#retryTimer = null;
    const ws = this.#ws ?? this.#attemptWs;
    this.#closed = new Promise((resolve) => {
      if (ws === null || ws.readyState > 1) { resolve(); return; }
      this.#onFinalClose = resolve;
      this.#later(CLOSE_TIMEOUT_MS, resolve);
      try { ws.close(1000, "client closed"); } catch { resolve(); }
    }).then(() => this.#shutdown(this.#error ?? new ClientClosedError("client closed")));
    return this.#closed;
  }

  #onFinalClose = null;

  #shutdown(error) {
    this.#closing = true;
    this.#error = error;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    if (this.#onOnline) globalThis.removeEventListener("online", this.#onOnline);
    this.#book.failAll(error);
    for (const room of this.#rooms.values()) room.ready.reject(error);
    this.#rooms.clear();
    this.#firstOpen?.reject(error);
    this.#ws = null;
    this.#attemptWs = null;
    this.#setState("closed");
  }

  #later(ms, fn) {
    const t = setTimeout(() => { this.#timers.delete(t); fn(); }, ms);
    this.#timers.add(t);
    return t;
  }

  #clear(t) {
    if (t !== null) { clearTimeout(t); this.#timers.delete(t); }
  }

  async #open() {
    this.#retryTimer = null;
    let ws;
    try {
      const url = socketUrl(this.url);
      const source = this.#opts.token;
      const token = typeof source === "function"
        ? await this.#within(Promise.resolve().then(source), this.#opts.connectTimeoutMs, "the token function")
        : source;
      if (this.#closing) return;
      if (token) url.searchParams.set("token", token);
      const WS = this.#opts.WebSocket ?? globalThis.WebSocket;
      if (!WS) throw new WsopsError("no WebSocket: pass options.WebSocket (Node 20: the 'ws' package, or run node --experimental-websocket)");
      const { protocols } = this.#opts;
      ws = protocols.length ? new WS(url.toString(), protocols) : new WS(url.toString());
    } catch (err) {
      if (this.#closing) return;
      console.warn(`wsops client: connection attempt failed: ${err?.message ?? err}`);
      this.#ended(null, ABNORMAL_CLOSE, String(err?.message ?? err));
      return;
    }
    this.#attemptWs = ws;
    let opened = false;
    let finished = false;
    const finish = (code, reason) => { // once per socket, whichever event comes first
      if (finished) return;
      finished = true;
      this.#clear(timer);
      this.#ended(ws, code, reason);
    };
    // A socket that never opened is given up on its first error or at the timeout: some
    // implementations (Node 20's) report a refused connection with an error and no close.
    const fail = (reason) => {
      if (opened || finished) return;
      finish(ABNORMAL_CLOSE, reason);
      try { ws.close(); } catch { /* already failed */ }
    };
    const timer = this.#later(this.#opts.connectTimeoutMs, () => fail("connection timed out"));
    ws.onopen = () => {
      if (finished) { try { ws.close(); } catch { /* gone */ } return; }
      opened = true;
      this.#clear(timer);
      this.#opened(ws);
    };
    ws.onmessage = (ev) => {
      if (ws === this.#ws && typeof ev.data === "string") this.#onText(ev.data);
    };
    ws.onclose = (ev) => finish(ev.code || ABNORMAL_CLOSE, ev.reason ?? "");
    ws.onerror = () => fail("connection failed"); // an open socket's close event follows
  }

  #opened(ws) {
    this.#attemptWs = null;
    if (this.#closing) { ws.close(1000, "client closed"); return; }
    this.#ws = ws;
    this.#openedAt = Date.now();
    if (this.#wasOpen) this.reconnects += 1;
    this.#wasOpen = true;
    for (const room of this.#rooms.values()) {
      const frame = this.#resubscribeFrame(room);
      if (frame) this.#book.add(frame, { urgent: true, resend: false }).entry = room;
    }
    this.#setState("open");
    this.#firstOpen?.resolve();
    this.#flush();
  }

  #ended(ws, code, reason) {
    const wasOpen = ws !== null && ws === this.#ws;
    const wasAttempt = ws !== null && ws === this.#attemptWs;
    if (ws !== null && !wasOpen && !wasAttempt) { // one opened while close() was under way
      if (this.#closing) this.#onFinalClose?.();
      return;
    }
    if (wasAttempt) this.#attemptWs = null;
    this.#ws = null;
    this.closeCodes.push(code);
    if (wasOpen) {
      this.#book.connectionLost();
      for (const room of this.#rooms.values()) room.tracker.disconnected();
      if (Date.now() - this.#openedAt >= this.#opts.stableAfterMs) this.#attempt = 0;
    }
    if (this.#closing) {
      this.#onFinalClose?.();
      return;
    }
    const { backoffBaseMs, backoffCapMs, random } = this.#opts;
    const spread = reconnectHint(code, reason);
    const delay = spread !== null ? random() * spread
      : fullJitter(this.#attempt, backoffBaseMs, backoffCapMs, random);
    this.#attempt += 1;
    this.#setState(this.#wasOpen ? "reconnecting" : "connecting");
    this.#emit("disconnect", Object.freeze({ code, reason, retryInMs: delay }));
    this.#retryTimer = this.#later(delay, () => this.#open());
  }

  #retryNow() {
    this.#clear(this.#retryTimer);
    this.#open();
  }

  #flush() {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== 1) return;
    for (let p = this.#book.nextToSend(); p !== null; p = this.#book.nextToSend()) {
      try {
        ws.send(p.text);
      } catch { // the socket broke: its close event requeues what is in flight
        return;
      }
    }
  }

  // -- incoming frames --

  #onText(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      console.warn("wsops client: a frame that is not JSON:", text.slice(0, 200));
      return;
    }
    if (f === null || typeof f !== "object") return;
    let events = [];
    if (f.op === "message") {
      const msg = toMessage(f);
      const room = msg && this.#rooms.get(msg.room);
      if (room) events = room.tracker.onMessage(msg);
    } else if (f.op === "join" || f.op === "leave") {
      if (this.#rooms.has(f.room) && isStr(f.user)) {
        events = [["presence", Object.freeze({ kind: f.op, room: f.room, user: f.user })]];
      }
    } else if (f.op === "unsubscribed") {
      // The server took this connection out of the room: no longer followed (not resubscribed
      // after a reconnect); the app hears it as "lost" with code "unsubscribed".
      // Sent after a subscribe's reply, frames in order: one that finds the app's subscribe
      // still unanswered was for a subscription the app has since left.
      const room = isStr(f.room) ? this.#rooms.get(f.room) : undefined;
      if (room && room.ready.settled) {
        const reason = isStr(f.reason) ? f.reason : "";
        this.#discard(room);
        events = [["lost", Object.freeze({ room: f.room, code: "unsubscribed", message: reason })]];
      }
    } else if (f.op === "reply") {
      const p = isInt(f.id) ? this.#book.resolve(f) : null;
      if (p === null && f.ok !== true) console.warn("wsops client: unmatched error reply", f.error);
      else if (p !== null && p.frame.op === "subscribe") events = this.#onSubscribeReply(p.entry, f);
    }
    for (const [kind, payload] of events) {
      if (this.#closing) return;
      if (kind !== "lost" && !this.#rooms.has(payload.room)) continue; // unsubscribed meanwhile
      this.#emit(kind, payload);
    }
  }

  // Position the room from its subscribe reply, before any later frame is read. The reply is
  // for the entry that sent the request: one unsubscribed (and maybe subscribed again) since
  // has nothing to do with it.
  #onSubscribeReply(room, reply) {
    const name = room?.tracker.room;
    if (room === null || this.#rooms.get(name) !== room) return [];
    let err;
    if (reply.ok === true) {
      try {
        const { offset, epoch } = position(reply, "subscribe");
        const recovered = typeof reply.recovered === "boolean" ? reply.recovered : null;
        room.retries = 0;
        const result = Object.freeze({ room: name, offset, epoch, recovered });
        const events = [["subscribed", result], ...room.tracker.onReply(offset, epoch, recovered)];
        room.ready.resolve(result);
        return events;
      } catch (e) {
        err = e;
      }
    } else {
      err = new ServerError(reply.error?.code ?? "unknown", reply.error?.message ?? "");
    }
    if (!room.tracker.positioned) { // the app's own subscribe failed: subscribe() rejects
      this.#discard(room, err);
      return [];
    }
    if (RETRYABLE_CODES.has(err.code)) {
      room.retries += 1;
      this.#scheduleResubscribe(room);
      return [];
    }
    this.#discard(room);
    return [["lost", Object.freeze({ room: name, code: err.code, message: err.message })]];
  }

  #resubscribeFrame(room) {
    const since = room.tracker.since();
    if (since === null) return null; // the app's first subscribe is still queued or in flight
    const frame = { op: "subscribe", room: room.tracker.room, since };
    if (room.presence) frame.presence = true;
    return frame;
  }

  #scheduleResubscribe(room) {
    const ws = this.#ws;
    const { backoffBaseMs, backoffCapMs, random } = this.#opts;
    this.#later(fullJitter(room.retries - 1, backoffBaseMs, backoffCapMs, random), () => {
      if (this.#ws !== ws || this.#rooms.get(room.tracker.room) !== room || room.tracker.synced) return;
      const frame = this.#resubscribeFrame(room);
      if (frame) {
        this.#book.add(frame, { urgent: true, resend: false }).entry = room;
        this.#flush();
      }
    });
  }

  #discard(room, error) {
    if (this.#rooms.get(room.tracker.room) === room) this.#rooms.delete(room.tracker.room);
    if (error) room.ready.reject(error);
  }

  // -- requests --

  async subscribe(room, { presence = false, timeoutMs } = {}) {
    const entry = this.#rooms.get(room);
    if (entry !== undefined) { // already followed, or its first subscribe is under way
      if (!entry.ready.settled) await this.#within(entry.ready.promise, timeoutMs);
      const since = entry.tracker.since();
      return Object.freeze({ room, offset: since.offset, epoch: since.epoch, recovered: null });
    }
    const added = { tracker: new RoomTracker(room), ready: deferred(), presence, retries: 0 };
    this.#rooms.set(room, added);
    const frame = { op: "subscribe", room };
    if (presence) frame.presence = true;
    try {
      const reply = await this.#request(frame, timeoutMs, added);
      if (this.#rooms.get(room) !== added) throw new WsopsError(`unsubscribed from '${room}'`);
      const { offset, epoch } = position(reply, "subscribe");
      return Object.freeze({ room, offset, epoch, recovered: null });
    } catch (err) {
      if (!added.tracker.positioned) this.#discard(added, err);
      throw err;
    }
  }

  async unsubscribe(room, { timeoutMs } = {}) {
    const entry = this.#rooms.get(room);
    if (entry !== undefined) this.#discard(entry, new WsopsError(`unsubscribed from '${room}'`));
    if (this.#state !== "open" && !this.#book.queuedFor("subscribe", room)) return;
    try {
      await this.#request({ op: "unsubscribe", room }, timeoutMs);
    } catch (err) {
      if (!(err instanceof ServerError && err.code === "not_subscribed")) throw err;
    }
  }

  async publish(room, data, { timeoutMs } = {}) {
    const reply = await this.#request({ op: "publish", room, data }, timeoutMs);
    const { offset, epoch } = position(reply, "publish");
    return Object.freeze({ room, offset, epoch, local: reply.local === true });
  }

  async presence(room, { timeoutMs } = {}) {
    const reply = await this.#request({ op: "presence", room }, timeoutMs);
    if (!Array.isArray(reply.users)) throw new ServerError("bad_reply", "presence reply without users");
    return reply.users.filter(isStr);
  }

  async history(room, limit = 100, { timeoutMs } = {}) {
    if (!isInt(limit) || limit < 1 || limit > 1000) throw new RangeError("limit must be in 1..1000");
    const reply = await this.#request({ op: "history", room, limit }, timeoutMs);
    if (!Array.isArray(reply.messages)) throw new ServerError("bad_reply", "history reply without messages");
    return reply.messages.map((m) => toMessage({ ...m, room })).filter((m) => m !== null);
  }

  #request(frame, timeoutMs, entry = null) {
    if (this.#closing) return Promise.reject(this.#error ?? new ClientClosedError("client is closed"));
    const source = this.#opts.traceparent;
    const trace = source === undefined ? pageTraceparent() : typeof source === "function" ? source() : source;
    if (trace && TRACEPARENT.test(trace)) frame.traceparent = trace;
    let p;
    try {
      p = this.#book.add(frame);
      p.entry = entry;
    } catch (err) {
      return Promise.reject(err);
    }
    const ms = timeoutMs ?? this.#opts.requestTimeoutMs;
    if (ms > 0) {
      p.timer = setTimeout(() => {
        this.#book.withdraw(p);
        p.reply.reject(new RequestTimeoutError(`no reply to '${frame.op}' within ${ms} ms`));
      }, ms);
    }
    this.#flush();
    return p.reply.promise.then((reply) => {
      if (reply.ok !== true) {
        throw new ServerError(reply.error?.code ?? "unknown", reply.error?.message ?? "");
      }
      return reply;
    });
  }

  #within(promise, timeoutMs, what = "no reply") {
    const ms = timeoutMs ?? this.#opts.requestTimeoutMs;
    if (!(ms > 0)) return promise;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = this.#later(ms, () => reject(new RequestTimeoutError(`${what}: nothing within ${ms} ms`)));
    });
    return Promise.race([promise, timeout]).finally(() => this.#clear(timer));
  }
}
