// clients/shared/roomFeed.ts under node --test, against a scripted client: the orderings a real
// server rarely produces on cue (a live message racing a history reply, a stale reply after a
// second gap, presence events around the presence reply). test_room_feed.py compiles the module
// and passes its path in ROOM_FEED.
import assert from "node:assert/strict";
import { test } from "node:test";

const { RoomFeed, emptyRoom } = await import(process.env.ROOM_FEED);

const tick = () => new Promise((resolve) => setImmediate(resolve));

// What RoomFeed uses of WsopsClient; each request waits until the test answers it.
class ScriptedClient {
  state = "open";
  listeners = new Map();
  calls = [];
  waiting = { subscribe: [], history: [], presence: [] };

  on(event, listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(listener);
    return () => this.listeners.get(event).delete(listener);
  }

  emit(event, payload) {
    for (const listener of [...(this.listeners.get(event) ?? [])]) listener(payload);
  }

  get listening() {
    return [...this.listeners.values()].reduce((n, set) => n + set.size, 0);
  }

  #request(kind, ...args) {
    this.calls.push([kind, ...args]);
    return new Promise((resolve, reject) => this.waiting[kind].push({ resolve, reject }));
  }

  subscribe(room, options) { return this.#request("subscribe", room, options); }
  history(room, limit) { return this.#request("history", room, limit); }
  presence(room) { return this.#request("presence", room); }
  unsubscribe(room) { this.calls.push(["unsubscribe", room]); return Promise.resolve(); }
  publish(room, data) {
    this.calls.push(["publish", room, data]);
    return Promise.resolve({ room, offset: 1, epoch: "e1", local: false });
  }

  // Answer the oldest (or the newest) waiting request of `kind` (an Error rejects it).
  async answer(kind, value, { newest = false } = {}) {
    const request = newest ? this.waiting[kind].pop() : this.waiting[kind].shift();
    assert.ok(request, `no ${kind} request waiting`);
    if (value instanceof Error) request.reject(value);
    else request.resolve(value);
    await tick();
  }

  count(kind) { return this.calls.filter((c) => c[0] === kind).length; }
}

const msg = (offset, epoch = "e1", room = "r") =>
  Object.freeze({ room, offset, epoch, data: { n: offset }, ts: 0 });
const range = (from, to, epoch = "e1") =>
  Array.from({ length: to - from + 1 }, (_, i) => msg(from + i, epoch));
const shown = (feed) => feed.snapshot.messages.map((m) => `${m.epoch}:${m.offset}`);
const ids = (from, to, epoch = "e1") => range(from, to, epoch).map((m) => `${epoch}:${m.offset}`);

// A feed of room "r", subscribed, its history and presence answered.
async function following(options = {}, history = [], users = []) {
  const client = new ScriptedClient();
  const feed = new RoomFeed(client, "r", options);
  feed.start();
  await client.answer("subscribe", { room: "r", offset: 0, epoch: "e1", recovered: null });
  await client.answer("history", history);
  if (options.presence !== false) await client.answer("presence", users);
  return { client, feed };
}

test("history, then live messages: a live one also in the history reply is shown once", async () => {
  const client = new ScriptedClient();
  const feed = new RoomFeed(client, "r");
  const seen = [];
  feed.watch((s) => seen.push(s));
  feed.start();
  assert.equal(feed.snapshot.loading, true);
  await client.answer("subscribe", { room: "r", offset: 2, epoch: "e1", recovered: null });
  assert.deepEqual(client.calls.slice(0, 3), [["subscribe", "r", { presence: true }],
    ["history", "r", 100], ["presence", "r"]]);
  client.emit("message", msg(3)); // live while the history request is on its way
  client.emit("message", msg(4));
  client.emit("message", msg(9, "e1", "other")); // another room's
  assert.deepEqual(shown(feed), []);
  await client.answer("history", range(1, 3)); // the server stored 3 before it answered
  assert.deepEqual(shown(feed), ids(1, 4));
  assert.equal(feed.snapshot.loading, false);
  client.emit("message", msg(5));
  assert.deepEqual(shown(feed), ids(1, 5));
  assert.ok(seen.every((s) => Object.isFrozen(s) && Object.isFrozen(s.messages)));
});

test("a gap reloads history in place of what was kept; a stale reply is ignored", async () => {
  const { client, feed } = await following({ presence: false }, range(1, 2));
  client.emit("gap", { room: "r", lastOffset: 2, lastEpoch: "e1", newOffset: 0, newEpoch: "e2" });
  assert.equal(feed.snapshot.loading, true);
  assert.equal(feed.snapshot.gaps, 1);
  client.emit("message", msg(1, "e2"));
  client.emit("gap", { room: "r", lastOffset: 1, lastEpoch: "e2", newOffset: 7, newEpoch: "e3" });
  client.emit("message", msg(8, "e3")); // after the second request: not in its reply
  await client.answer("history", range(1, 1, "e2")); // the first reload's reply: stale
  assert.equal(feed.snapshot.loading, true);
  assert.deepEqual(shown(feed), ids(1, 2));
  await client.answer("history", range(5, 7, "e3"));
  assert.deepEqual(shown(feed), ids(5, 8, "e3"));
  assert.equal(feed.snapshot.gaps, 2);
  assert.equal(feed.snapshot.loading, false);
});

test("a message of a new epoch after the history reply is kept after it", async () => {
  const client = new ScriptedClient();
  const feed = new RoomFeed(client, "r", { presence: false });
  feed.start();
  await client.answer("subscribe", { room: "r", offset: 2, epoch: "e1", recovered: null });
  client.emit("message", msg(1, "e2")); // the room's history expired: a new epoch from 1
  await client.answer("history", range(1, 2));
  assert.deepEqual(shown(feed), [...ids(1, 2), "e2:1"]);
});

test("a failed history load keeps what arrived and says why", async () => {
  const client = new ScriptedClient();
  const feed = new RoomFeed(client, "r", { presence: false });
  feed.start();
  await client.answer("subscribe", { room: "r", offset: 4, epoch: "e1", recovered: null });
  client.emit("message", msg(5));
  await client.answer("history", new Error("unavailable"));
  assert.deepEqual(shown(feed), ["e1:5"]);
  assert.equal(feed.snapshot.error.message, "unavailable");
  assert.equal(feed.snapshot.loading, false);
  client.emit("message", msg(6));
  assert.deepEqual(shown(feed), ["e1:5", "e1:6"]);
});

test("at most `limit` messages: history asked for that many, the oldest dropped", async () => {
  const { client, feed } = await following({ limit: 3, presence: false }, range(1, 3));
  assert.deepEqual(client.calls[1], ["history", "r", 3]);
  client.emit("message", msg(4));
  client.emit("message", msg(5));
  assert.deepEqual(shown(feed), ids(3, 5));
  client.emit("gap", { room: "r", lastOffset: 5, lastEpoch: "e1", newOffset: 9, newEpoch: "e1" });
  for (const m of range(10, 14)) client.emit("message", m); // more than `limit` while loading
  await client.answer("history", range(8, 9));
  assert.deepEqual(shown(feed), ids(12, 14));
  assert.throws(() => new RoomFeed(client, "r", { limit: 0 }), RangeError);
  assert.throws(() => new RoomFeed(client, "r", { limit: 1001 }), RangeError);
});

test("presence: the reply, then join and leave events; read again after a resubscribe", async () => {
  const client = new ScriptedClient();
  const feed = new RoomFeed(client, "r");
  feed.start();
  await client.answer("subscribe", { room: "r", offset: 0, epoch: "e1", recovered: null });
  client.emit("subscribed", { room: "r", offset: 0, epoch: "e1", recovered: null });
  client.emit("presence", { kind: "join", room: "r", user: "bob" }); // before the reply
  assert.deepEqual(feed.snapshot.users, ["bob"]);
  await client.answer("presence", ["alice", "bob"]);
  assert.deepEqual(feed.snapshot.users, ["alice", "bob"]);
  client.emit("presence", { kind: "join", room: "r", user: "carol" });
  client.emit("presence", { kind: "join", room: "r", user: "carol" }); // repeated: once
  client.emit("presence", { kind: "join", room: "other", user: "dan" });
  client.emit("presence", { kind: "leave", room: "r", user: "bob" });
  assert.deepEqual(feed.snapshot.users, ["alice", "carol"]);
  assert.equal(client.count("presence"), 1); // the app's own subscribe: read once
  client.emit("subscribed", { room: "r", offset: 0, epoch: "e1", recovered: true });
  client.emit("subscribed", { room: "r", offset: 0, epoch: "e1", recovered: false });
  assert.equal(client.count("presence"), 3);
  await client.answer("presence", ["alice", "erin"], { newest: true });
  await client.answer("presence", ["stale"]); // an older read answered last is ignored
  assert.deepEqual(feed.snapshot.users, ["alice", "erin"]);
});

test("presence: false asks for no events and keeps no members", async () => {
  const { client, feed } = await following({ presence: false });
  assert.deepEqual(client.calls[0], ["subscribe", "r", { presence: false }]);
  client.emit("presence", { kind: "join", room: "r", user: "bob" });
  client.emit("subscribed", { room: "r", offset: 0, epoch: "e1", recovered: true });
  assert.deepEqual(feed.snapshot.users, []);
  assert.equal(client.count("presence"), 0);
});

test("connection state, a refused subscribe and a lost room reach the snapshot", async () => {
  const client = new ScriptedClient();
  client.state = "connecting";
  assert.equal(emptyRoom(client, "r").state, "connecting");
  const feed = new RoomFeed(client, "r");
  feed.start();
  client.emit("state", "open");
  assert.equal(feed.snapshot.state, "open");
  const refused = Object.assign(new Error("not granted"), { code: "forbidden" });
  await client.answer("subscribe", refused);
  assert.equal(feed.snapshot.error, refused);
  assert.equal(feed.snapshot.loading, false);
  assert.equal(client.count("history"), 0);

  const { client: other, feed: lost } = await following({}, [], ["alice"]);
  other.emit("lost", { room: "r", code: "forbidden", message: "token no longer grants r" });
  assert.equal(lost.snapshot.error.code, "forbidden");
  assert.equal(lost.snapshot.error.message, "token no longer grants r");
});

test("feeds of one room share its subscription: the last one stopped unsubscribes", async () => {
  const { client, feed } = await following({}, [], []);
  const second = new RoomFeed(client, "r");
  second.start();
  feed.stop();
  feed.stop(); // twice is once
  assert.equal(client.count("unsubscribe"), 0);
  second.stop();
  assert.equal(client.count("unsubscribe"), 1);
  const third = new RoomFeed(client, "r"); // React's StrictMode: mounted again
  third.start();
  third.stop();
  assert.equal(client.count("unsubscribe"), 2);
});

test("a stopped feed tells nothing more and leaves no listener behind", async () => {
  const client = new ScriptedClient();
  const feed = new RoomFeed(client, "r");
  let told = 0;
  feed.watch(() => { told += 1; });
  feed.start();
  await client.answer("subscribe", { room: "r", offset: 0, epoch: "e1", recovered: null });
  const [before, last] = [told, feed.snapshot];
  feed.stop();
  assert.equal(client.listening, 0);
  client.emit("message", msg(1));
  await client.answer("history", range(1, 1));
  await client.answer("presence", ["alice"]);
  assert.equal(told, before);
  assert.equal(feed.snapshot, last);
  assert.throws(() => feed.start(), /started once/);
  await feed.publish({ text: "hi" });
  assert.deepEqual(client.calls.at(-1), ["publish", "r", { text: "hi" }]);
});
