// Deterministic tests of wsops-client.js's sequencing and state machine, with a scripted
// socket passed as `options.WebSocket` (node --test; run by test_unit_js.py). The live
// scenarios against real servers are in test_client_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  QueueFullError, ServerError, WsopsClient, reconnectHint,
} from "../../wsops/static/wsops-client.js";

class FakeSocket {
  static all = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }

  send(text) { this.sent.push(JSON.parse(text)); }

  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason: "" }));
  }

  // -- the test's side --
  open() { this.readyState = 1; this.onopen?.({}); }
  receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  reply(request, fields = {}) { this.receive({ op: "reply", id: request.id, ok: true, ...fields }); }
  refuse(request, code) {
    this.receive({ op: "reply", id: request.id, ok: false, error: { code, message: code } });
  }
  message(room, offset, epoch, data = offset) {
    this.receive({ op: "message", room, offset, epoch, data, ts: 1 });
  }
  drop(code = 1006, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const latest = () => FakeSocket.all[FakeSocket.all.length - 1];

async function connected(options = {}) {
  const client = new WsopsClient("ws://server/ws", { WebSocket: FakeSocket, random: () => 0, ...options });
  const ready = client.connect();
  latest().open();
  await ready;
  const log = { messages: [], gaps: [], lost: [], subscribed: [] };
  client.on("message", (m) => log.messages.push(`${m.offset}@${m.epoch}`));
  client.on("gap", (g) => log.gaps.push(g));
  client.on("lost", (l) => log.lost.push(l.code));
  client.on("subscribed", (s) => log.subscribed.push(s.recovered));
  return { client, ws: latest(), log };
}

async function subscribed(client, ws, room, offset, epoch) {
  const pending = client.subscribe(room);
  ws.reply(ws.sent.at(-1), { room, offset, epoch });
  return pending;
}

// Every test ends here: closed, and nothing left that would keep Node running.
async function closed(client) {
  await client.close();
  assert.equal(client.state, "closed");
  assert.ok(!process.getActiveResourcesInfo().includes("Timeout"), "a timer outlived close()");
}

test("a stale subscribe reply does not touch the room subscribed again", async () => {
  const { client, ws, log } = await connected();
  const first = client.subscribe("r");
  const s1 = ws.sent.at(-1);
  const unsubscribing = client.unsubscribe("r");
  const u = ws.sent.at(-1);
  const second = client.subscribe("r");
  const s2 = ws.sent.at(-1);
  ws.refuse(s1, "rate_limited");
  ws.reply(u, { room: "r" });
  ws.reply(s2, { room: "r", offset: 5, epoch: "e" });
  await assert.rejects(first, ServerError);
  await unsubscribing;
  assert.equal((await second).offset, 5);
  assert.deepEqual(client.rooms, ["r"]);
  ws.message("r", 6, "e");
  assert.deepEqual(log.messages, ["6@e"]);
  assert.deepEqual(log.gaps, []);
  await closed(client);
});

test("data JSON cannot encode fails its own request, not the ones after it", async () => {
  const client = new WsopsClient("ws://server/ws", { WebSocket: FakeSocket, random: () => 0 });
  const ready = client.connect();
  await assert.rejects(client.publish("r", 1n), TypeError); // queued while connecting
  // Non-finite numbers are not JSON: JSON.stringify would send null; the client refuses them.
  await assert.rejects(client.publish("r", NaN), /NaN is not JSON/);
  await assert.rejects(client.publish("r", { x: [1, -Infinity] }), /-Infinity is not JSON/);
  const ok = client.publish("r", "ok");
  latest().open();
  await ready;
  const ws = latest();
  assert.deepEqual(ws.sent.map((f) => f.data), ["ok"]);
  ws.reply(ws.sent[0], { room: "r", offset: 1, epoch: "e" });
  assert.equal((await ok).offset, 1);
  await closed(client);
});

test("a resume delivers held, replayed and live messages once each, in order", async () => {
  const { client, ws, log } = await connected();
  await subscribed(client, ws, "r", 2, "e");
  ws.message("r", 3, "e");
  ws.drop(1012);
  assert.equal(client.state, "reconnecting");
  await tick();
  const again = latest();
  again.open();
  const resub = again.sent.at(-1);
  assert.deepEqual(resub.since, { offset: 3, epoch: "e" });
  again.message("r", 3, "e"); // before the reply: held, then dropped as already seen
  again.message("r", 4, "e");
  again.reply(resub, { room: "r", offset: 6, epoch: "e", recovered: true });
  for (const offset of [4, 5, 6, 7]) again.message("r", offset, "e"); // the replay, then live
  assert.deepEqual(log.messages, ["3@e", "4@e", "5@e", "6@e", "7@e"]);
  assert.deepEqual(log.gaps, []);
  assert.deepEqual(log.subscribed, [null, true]);
  assert.equal(client.reconnects, 1);
  await closed(client);
});

test("history that cannot cover the disconnect is a gap, never a silent one", async () => {
  const { client, ws, log } = await connected();
  await subscribed(client, ws, "r", 2, "e");
  ws.drop();
  await tick();
  latest().open();
  latest().reply(latest().sent.at(-1), { room: "r", offset: 9, epoch: "e", recovered: false });
  latest().message("r", 10, "e");
  assert.equal(log.gaps.length, 1);
  const [gap] = log.gaps;
  assert.deepEqual([gap.lastOffset, gap.lastEpoch, gap.newOffset, gap.newEpoch], [2, "e", 9, "e"]);
  assert.deepEqual(log.messages, ["10@e"]);
  await closed(client);
});

test("a new epoch from offset 1 continues; a jump is a gap; an old epoch's late message is dropped", async () => {
  const { client, ws, log } = await connected();
  await subscribed(client, ws, "r", 4, "e");
  ws.message("r", 1, "f");
  ws.message("r", 2, "f");
  ws.message("r", 5, "e"); // the retired epoch
  ws.message("r", 4, "f");
  assert.deepEqual(log.messages, ["1@f", "2@f", "4@f"]);
  assert.equal(log.gaps.length, 1);
  assert.deepEqual([log.gaps[0].lastOffset, log.gaps[0].newOffset], [2, 3]);
  await closed(client);
});

test("a resubscribe refused for a while is retried; a forbidden room is lost", async () => {
  const { client, ws, log } = await connected();
  await subscribed(client, ws, "a", 1, "e");
  await subscribed(client, ws, "b", 1, "e");
  ws.drop();
  await tick();
  const again = latest();
  again.open();
  const [ra, rb] = again.sent.slice(-2);
  again.refuse(ra, "unavailable");
  again.refuse(rb, "forbidden");
  assert.deepEqual(log.lost, ["forbidden"]);
  assert.deepEqual(client.rooms, ["a"]);
  await tick();
  const retry = again.sent.at(-1);
  assert.equal(retry.room, "a");
  assert.deepEqual(retry.since, { offset: 1, epoch: "e" });
  again.reply(retry, { room: "a", offset: 1, epoch: "e", recovered: true });
  again.message("a", 2, "e");
  again.message("b", 2, "e");
  assert.deepEqual(log.messages, ["2@e"]);
  await closed(client);
});

test("a server-side unsubscribe drops the room: lost, no more messages, not resubscribed", async () => {
  const { client, ws, log } = await connected();
  const reasons = [];
  client.on("lost", (l) => reasons.push([l.room, l.message]));
  await subscribed(client, ws, "a", 1, "e");
  await subscribed(client, ws, "b", 1, "e");
  ws.receive({ op: "unsubscribed", room: "a", reason: "muted" });
  ws.receive({ op: "unsubscribed", room: "nope", reason: "not followed: ignored" });
  assert.deepEqual(log.lost, ["unsubscribed"]);
  assert.deepEqual(reasons, [["a", "muted"]]);
  assert.deepEqual(client.rooms, ["b"]);
  ws.message("a", 2, "e");
  ws.message("b", 2, "e");
  assert.deepEqual(log.messages, ["2@e"]);
  ws.drop();
  await tick();
  const again = latest();
  again.open();
  assert.deepEqual(again.sent.map((f) => [f.op, f.room]), [["subscribe", "b"]]);
  again.reply(again.sent[0], { room: "b", offset: 2, epoch: "e", recovered: true });
  await closed(client);
});

test("a stale unsubscribed event leaves a subscribe under way alone", async () => {
  const { client, ws, log } = await connected();
  const pending = client.subscribe("r");
  const s = ws.sent.at(-1);
  ws.receive({ op: "unsubscribed", room: "r", reason: "an earlier one" });
  ws.reply(s, { room: "r", offset: 5, epoch: "e" });
  assert.equal((await pending).offset, 5);
  assert.deepEqual(log.lost, []);
  assert.deepEqual(client.rooms, ["r"]);
  ws.receive({ op: "unsubscribed", room: "r", reason: "muted" });
  assert.deepEqual(log.lost, ["unsubscribed"]);
  assert.deepEqual(client.rooms, []);
  await closed(client);
});

test("requests wait while disconnected, bounded; unanswered ones are sent again", async () => {
  const { client, ws } = await connected({ maxQueue: 2 });
  const inFlight = client.publish("r", "x");
  ws.drop();
  const queued = client.publish("r", "y");
  await assert.rejects(client.publish("r", "z"), QueueFullError);
  await tick();
  const again = latest();
  again.open();
  assert.deepEqual(again.sent.map((f) => f.data), ["x", "y"]);
  again.sent.forEach((f, i) => again.reply(f, { room: "r", offset: i + 1, epoch: "e" }));
  assert.deepEqual([(await inFlight).offset, (await queued).offset], [1, 2]);
  await closed(client);
});

test("close() during a token function that never answers stops everything", async () => {
  const client = new WsopsClient("ws://server/ws", {
    WebSocket: FakeSocket, token: () => new Promise(() => {}), connectTimeoutMs: 3000,
  });
  const ready = client.connect();
  await tick();
  await closed(client);
  await assert.rejects(ready);
  assert.deepEqual(client.closeCodes, []);
});

test("a listener that unsubscribes sees no more of that room, even from the same frame batch", async () => {
  const { client, ws, log } = await connected();
  await subscribed(client, ws, "r", 0, "e");
  client.on("gap", () => { client.unsubscribe("r").catch(() => {}); });
  ws.message("r", 3, "e"); // a gap, then the message: the message must not come
  assert.equal(log.gaps.length, 1);
  assert.deepEqual(log.messages, []);
  await closed(client);
});

test("a message carries its server-attested sender; a non-string from is left out", async () => {
  const { client, ws } = await connected();
  await subscribed(client, ws, "r", 0, "e");
  const got = [];
  client.on("message", (m) => got.push(m));
  ws.receive({ op: "message", room: "r", offset: 1, epoch: "e", data: { from: "x" }, ts: 1, from: "ann" });
  ws.receive({ op: "message", room: "r", offset: 2, epoch: "e", data: 2, ts: 1, from: 7 });
  assert.deepEqual(got.map((m) => [m.from, m.data]), [["ann", { from: "x" }], [undefined, 2]]);
  assert.ok(!("from" in got[1]));
  const history = client.history("r", 5);
  ws.reply(ws.sent.at(-1), { room: "r", offset: 2, epoch: "e",
    messages: [{ offset: 1, epoch: "e", data: 1, ts: 1, from: "ann" }] });
  assert.equal((await history)[0].from, "ann");
  await closed(client);
});

test("a drain's reconnect hint is read from a 1012 close only, and capped", () => {
  assert.equal(reconnectHint(1012, "draining; reconnect=5000"), 5000);
  assert.equal(reconnectHint(1012, "reconnect=250ms"), 250);
  assert.equal(reconnectHint(1012, "draining; reconnect=999999999"), 60000);
  assert.equal(reconnectHint(1012, "draining"), null);
  assert.equal(reconnectHint(1012, "draining; xreconnect=5000"), null);
  assert.equal(reconnectHint(1001, "draining; reconnect=5000"), null);
  assert.equal(reconnectHint(1012, undefined), null);
});

test("after a hinted 1012 the client waits a draw over the server's window, not its backoff", async () => {
  const { client, ws } = await connected({ random: () => 0.5, backoffBaseMs: 10, backoffCapMs: 10 });
  const waits = [];
  client.on("disconnect", (d) => waits.push(d.retryInMs));
  ws.drop(1012, "draining; reconnect=4000");
  assert.deepEqual(waits, [2000]);  // 0.5 of the 4 s window (the backoff would say 5 ms)
  await closed(client);
});

test("the protocol version is offered as the subprotocol, unless protocols: [] asks for none", async () => {
  const { client, ws } = await connected();
  assert.deepEqual(ws.protocols, ["wsops.v1"]);
  await closed(client);
  const legacy = await connected({ protocols: [] });
  assert.equal(legacy.ws.protocols, undefined);
  await closed(legacy.client);
});
