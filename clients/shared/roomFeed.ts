// One room as a page shows it, kept from wsops-client.js's events: connection state, messages
// (history, then live ones, each once and in order), members. Framework-free: the React hook,
// the Vue composable and the Angular service of clients/ each wrap a RoomFeed in their own kind
// of reactive value, so the rules below live in one place.
//
// The client already resumes every room after a reconnect, exactly once while history covers the
// outage. What is left to the page:
// - history and live messages overlap: a message live-delivered while `history` is on its way is
//   also in the reply. Live messages are held during the load and merged after it, each kept once
//   by its (epoch, offset).
// - a `gap` (history could not cover an outage, or the room's stream jumped) reloads history.
// - members: `presence` read after each (re)subscribe, join/leave events applied in between.
import {
  type ClientState,
  type Message,
  type PublishAck,
  ServerError,
  type WsopsClient,
} from "../../wsops/static/wsops-client.js";

export interface RoomOptions {
  /** Messages loaded with `history` (on subscribe and after a gap), and the most kept (1..1000,
   * default 100: older ones are dropped as new ones arrive). */
  limit?: number | undefined;
  /** Keep the room's members from `presence` and join/leave events (default true). */
  presence?: boolean | undefined;
}

export interface RoomSnapshot<T> {
  readonly room: string;
  readonly state: ClientState;
  /** Oldest first, each message once: the room's history, then the live messages after it. */
  readonly messages: readonly Message<T>[];
  /** Sorted ids of the users in the room (always empty with `presence: false`). */
  readonly users: readonly string[];
  /** True until history is loaded, and again while a gap reloads it. */
  readonly loading: boolean;
  /** Gaps seen: after each, `messages` was reloaded from history (some were missed). */
  readonly gaps: number;
  /** The last failure: the subscribe refused, `history` or `presence` failed, or the room was
   * dropped on a resubscribe (`lost`, for example `forbidden`). */
  readonly error: Error | null;
}

/** The snapshot of a room not followed yet (what a component shows before its first effect). */
export function emptyRoom<T>(client: WsopsClient, room: string): RoomSnapshot<T> {
  return Object.freeze({ room, state: client.state, messages: Object.freeze([]),
    users: Object.freeze([]), loading: true, gaps: 0, error: null });
}

// Rooms followed per client, counted: two feeds of one room share its subscription (the first
// one's `presence` option says whether join/leave events come) and the last one stopped
// unsubscribes (React's StrictMode mounts, unmounts and mounts again).
const following = new WeakMap<WsopsClient, Map<string, number>>();

function follow(client: WsopsClient, room: string, delta: 1 | -1): number {
  let rooms = following.get(client);
  if (rooms === undefined) following.set(client, (rooms = new Map()));
  const count = (rooms.get(room) ?? 0) + delta;
  if (count > 0) rooms.set(room, count);
  else rooms.delete(room);
  return count;
}

/** Follows one room of `client` from `start()` to `stop()`; `watch` is told every change. A feed
 * is used once: make a new one to follow the room again. `T` is what the page publishes to the
 * room: received data is not checked, as for `WsopsClient.history<T>`. */
export class RoomFeed<T = unknown> {
  readonly client: WsopsClient;
  readonly room: string;
  readonly #limit: number;
  readonly #presence: boolean;
  #snapshot: RoomSnapshot<T>;
  readonly #listeners = new Set<(snapshot: RoomSnapshot<T>) => void>();
  #offs: (() => void)[] = [];
  #held: Message<T>[] | null = []; // live messages that arrived while history loads
  #load = 0; // the current history load: an older reply is stale
  #roll = 0; // the current presence read
  #started = false;
  #stopped = false;

  constructor(client: WsopsClient, room: string, { limit = 100, presence = true }: RoomOptions = {}) {
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) {
      throw new RangeError("limit must be in 1..1000");
    }
    this.client = client;
    this.room = room;
    this.#limit = limit;
    this.#presence = presence;
    this.#snapshot = emptyRoom(client, room);
  }

  get snapshot(): RoomSnapshot<T> {
    return this.#snapshot;
  }

  /** Call `listener` with each new snapshot (frozen, arrays too: replaced on every change). */
  watch(listener: (snapshot: RoomSnapshot<T>) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): void {
    if (this.#started) throw new Error("a RoomFeed is started once");
    this.#started = true;
    const { client, room } = this;
    this.#offs = [
      client.on("state", (state) => this.#set({ state })),
      client.on("message", (m) => { if (m.room === room) this.#receive(m as Message<T>); }),
      client.on("gap", (g) => {
        if (g.room !== room) return;
        this.#set({ gaps: this.#snapshot.gaps + 1 });
        this.#reload();
      }),
      // A resubscribe after a reconnect (`recovered` set): who is here may have changed.
      client.on("subscribed", (s) => { if (s.room === room && s.recovered !== null) this.#readPresence(); }),
      client.on("presence", (p) => {
        if (p.room !== room || !this.#presence) return;
        const users = new Set(this.#snapshot.users); // events may repeat around node deaths
        if (p.kind === "join") users.add(p.user);
        else users.delete(p.user);
        this.#set({ users: Object.freeze([...users].sort()) });
      }),
      client.on("lost", (l) => { if (l.room === room) this.#set({ error: new ServerError(l.code, l.message) }); }),
    ];
    this.#set({ state: client.state });
    follow(client, room, 1);
    client.subscribe(room, { presence: this.#presence }).then(() => {
      if (this.#stopped) return;
      this.#reload();
      this.#readPresence();
    }, (err: unknown) => { // refused (forbidden, invalid_room...): nothing will load
      this.#held = null;
      this.#set({ loading: false });
      this.#fail(err);
    });
  }

  /** Stop listening; the last feed of the room unsubscribes it. */
  stop(): void {
    if (!this.#started || this.#stopped) return;
    this.#stopped = true;
    for (const off of this.#offs) off();
    this.#listeners.clear();
    if (follow(this.client, this.room, -1) === 0) this.client.unsubscribe(this.room).catch(() => {});
  }

  /** Publish `data` to the room (resolves with its offset once the server stored it). */
  publish(data: T): Promise<PublishAck> {
    return this.client.publish(this.room, data);
  }

  #set(change: Partial<RoomSnapshot<T>>): void {
    if (this.#stopped) return;
    this.#snapshot = Object.freeze({ ...this.#snapshot, ...change });
    for (const listener of [...this.#listeners]) listener(this.#snapshot);
  }

  #fail(err: unknown): void {
    this.#set({ error: err instanceof Error ? err : new Error(String(err)) });
  }

  #receive(m: Message<T>): void {
    if (this.#held !== null) {
      this.#held.push(m);
      if (this.#held.length > this.#limit) this.#held.shift(); // the load keeps only `limit`
    } else {
      this.#set({ messages: this.#append(this.#snapshot.messages, [m]) });
    }
  }

  // Each message once: one at or before the last kept of its epoch is already there. The client
  // delivers a room's live messages in order, so only the tail of a history reply can overlap.
  #append(kept: readonly Message<T>[], more: readonly Message<T>[]): readonly Message<T>[] {
    const out = [...kept];
    for (const m of more) {
      const last = out[out.length - 1];
      if (last !== undefined && last.epoch === m.epoch && m.offset <= last.offset) continue;
      out.push(m);
    }
    return Object.freeze(out.length > this.#limit ? out.slice(-this.#limit) : out);
  }

  #reload(): void {
    const load = ++this.#load;
    this.#held = []; // what arrived before this request is in its reply
    this.#set({ loading: true });
    this.client.history<T>(this.room, this.#limit).then((history) => {
      if (load !== this.#load || this.#stopped) return;
      const held = this.#held ?? [];
      this.#held = null;
      this.#set({ messages: this.#append(history, held), loading: false });
    }, (err: unknown) => {
      if (load !== this.#load) return;
      const held = this.#held ?? []; // keep what did arrive: the page shows the error
      this.#held = null;
      this.#set({ messages: this.#append(this.#snapshot.messages, held), loading: false });
      this.#fail(err);
    });
  }

  #readPresence(): void {
    if (!this.#presence) return;
    const roll = ++this.#roll;
    this.client.presence(this.room).then((users) => {
      if (roll === this.#roll) this.#set({ users: Object.freeze([...users]) });
    }, (err: unknown) => this.#fail(err));
  }
}
