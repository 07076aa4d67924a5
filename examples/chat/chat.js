// The wsops chat example's page: rooms, presence and history over wsops-client.js.
//
// No framework and no build step. User text only ever reaches the page through textContent
// (or dataset), never innerHTML. Elements have stable ids for tests: #name, #join, #room,
// #switch, #text, #send, #leave, #state[data-state], #messages li.msg (.from, .text),
// #messages li.gap, #presence li[data-user].
import { WsopsClient } from "/static/wsops-client.js";

const HISTORY = 50; // messages shown when entering a room, and reloaded after a gap
const DEFAULT_ROOMS = ["chat:lobby", "chat:random", "chat:ops"];
const USER_NAME = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_NAME = /^[A-Za-z0-9_.:@/-]{1,128}$/; // PROTOCOL.md's room rule
const STATE_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  open: "connected",
  reconnecting: "reconnecting…",
  closed: "disconnected",
};

const $ = (id) => document.getElementById(id);

let client = null; // the WsopsClient while joined
let me = null; // our user name (the token's sub)
let lastDisconnect = null;
// The room on screen: its messages seen (by epoch:offset, history and live overlap), the
// live messages held while history loads, and who is present.
let view = null;
const rooms = new Set(DEFAULT_ROOMS);

// -- the connection -------------------------------------------------------------------------

async function fetchToken(user) {
  // DEMO ONLY: chat.py signs a token for any name it is asked for (see its /token handler).
  const resp = await fetch(`/token?user=${encodeURIComponent(user)}`, { cache: "no-store" });
  if (!resp.ok) throw new Error((await resp.text()) || `token: HTTP ${resp.status}`);
  return (await resp.json()).token;
}

function wsUrl() {
  const url = new URL("/ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function roomFrom(input) {
  const name = input.trim();
  return name.startsWith("chat:") ? name : `chat:${name}`;
}

async function join(event) {
  event.preventDefault();
  const name = $("name").value.trim();
  const room = roomFrom($("login-room").value || "lobby");
  if (!USER_NAME.test(name)) return loginError("Name: 1-32 letters, digits, _ . or -");
  if (!ROOM_NAME.test(room)) return loginError("Room: letters, digits and _ . : @ / - only");
  loginError("");
  $("join").disabled = true;
  try {
    // The first token is fetched here, so a refused name is an error on this form; the
    // client calls the function again before every reconnect (tokens expire).
    let first = await fetchToken(name);
    me = name;
    lastDisconnect = null;
    client = new WsopsClient(wsUrl(), {
      token: () => {
        const token = first;
        first = null;
        return token ?? fetchToken(me);
      },
    });
    listen(client);
    showState(client.state);
    await client.connect({ timeoutMs: 10000 });
    $("login").hidden = true;
    $("chat").hidden = false;
    $("whoami").textContent = me;
    $("whoami").hidden = false;
    await enterRoom(room);
    $("text").focus();
  } catch (err) {
    await leave();
    loginError(`Could not join: ${describe(err)}`);
  } finally {
    $("join").disabled = false;
  }
}

function listen(c) {
  c.on("state", (state) => {
    if (c === client) showState(state);
  });
  c.on("subscribed", (sub) => {
    // Presence is authoritative and events may have been missed while disconnected: read it
    // again once the room is resubscribed after a reconnect (messages need nothing: the client
    // resumes the room, or says "gap").
    if (c === client && view && sub.room === view.room && sub.recovered !== null) {
      refreshPresence(view);
    }
  });
  c.on("disconnect", (d) => {
    lastDisconnect = d;
    if (c === client) showState(c.state);
  });
  c.on("message", (m) => {
    if (c !== client || !view || m.room !== view.room) return;
    if (view.loading) view.buffer.push(m);
    else addMessage(view, m);
  });
  c.on("gap", (gap) => {
    if (c !== client || !view || gap.room !== view.room) return;
    const what = `Some messages were missed${
      gap.lastEpoch !== gap.newEpoch ? " (the room's history was reset)" : ""}`;
    const li = addLine("gap", `${what}: reloading history…`);
    li.dataset.lastOffset = gap.lastOffset;
    li.dataset.newOffset = gap.newOffset;
    // What history still holds of them follows this line (the rest is lost for good).
    loadHistory(view).then(() => { li.textContent = `${what}; reloaded the latest history.`; });
  });
  c.on("presence", (p) => {
    if (c !== client || !view || p.room !== view.room) return;
    const had = view.users.has(p.user);
    if (p.kind === "join") view.users.add(p.user);
    else view.users.delete(p.user);
    renderPresence(view);
    // Events may repeat around reconnects: only a change is worth a line.
    if (p.user !== me && had !== (p.kind === "join")) {
      addLine("event", `${p.user} ${p.kind === "join" ? "joined" : "left"}`);
    }
  });
  c.on("lost", (lost) => {
    if (c !== client || !view || lost.room !== view.room) return;
    addLine("error", `Dropped from ${lost.room}: ${lost.code}: ${lost.message}`);
  });
}

async function leave() {
  const c = client;
  client = null;
  view = null;
  if (c) await c.close().catch(() => {});
  showState("idle");
  $("chat").hidden = true;
  $("login").hidden = false;
  $("whoami").hidden = true;
}

// -- rooms ----------------------------------------------------------------------------------

async function enterRoom(room) {
  if (!client || (view && view.room === room)) return;
  const previous = view;
  const v = { room, seen: new Set(), loading: 0, buffer: [], users: new Set() };
  view = v;
  rooms.add(room);
  renderRooms();
  $("room-title").textContent = room;
  $("messages").replaceChildren();
  renderPresence(v);
  // Events of the previous room stop at once; its reply need not be awaited.
  if (previous) client.unsubscribe(previous.room).catch(() => {});
  try {
    await client.subscribe(room, { presence: true });
    if (view !== v) return;
    await Promise.all([loadHistory(v), refreshPresence(v)]);
  } catch (err) {
    if (view === v) addLine("error", `Could not join ${room}: ${describe(err)}`);
  }
}

async function loadHistory(v) {
  v.loading += 1; // live messages wait in v.buffer meanwhile (history overlaps them)
  try {
    const messages = await client.history(v.room, HISTORY);
    if (view === v) for (const m of messages) addMessage(v, m);
  } catch (err) {
    if (view === v) addLine("error", `History unavailable: ${describe(err)}`);
  } finally {
    v.loading -= 1;
    if (!v.loading && view === v) for (const m of v.buffer.splice(0)) addMessage(v, m);
  }
}

async function refreshPresence(v) {
  try {
    const users = await client.presence(v.room);
    if (view !== v) return;
    v.users = new Set(users);
    renderPresence(v);
  } catch (err) {
    if (view === v) addLine("error", `Presence unavailable: ${describe(err)}`);
  }
}

async function send(event) {
  event.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (!text || !client || !view) return;
  input.value = "";
  try {
    // Our own message comes back as a room message like everyone else's: no local echo. Who
    // sent it is the message's `from`, set by the server from our token: not in the data.
    await client.publish(view.room, { text });
  } catch (err) {
    addLine("error", `Not sent: ${describe(err)}`);
    if (!input.value) input.value = text;
  }
}

function switchRoom(event) {
  event.preventDefault();
  const room = roomFrom($("room").value);
  if (!ROOM_NAME.test(room)) return addLine("error", "Room: letters, digits and _ . : @ / - only");
  $("room").value = "";
  enterRoom(room);
}

// -- rendering (textContent only) -----------------------------------------------------------

function addMessage(v, m) {
  const key = `${m.epoch}:${m.offset}`;
  if (v.seen.has(key)) return;
  v.seen.add(key);
  const data = m.data && typeof m.data === "object" ? m.data : {};
  const from = m.from ?? "?"; // attested by the server: a `from` inside data is only data
  const text = typeof data.text === "string" ? data.text : JSON.stringify(m.data);
  const li = document.createElement("li");
  li.className = from === me ? "msg mine" : "msg";
  li.dataset.offset = m.offset;
  li.dataset.epoch = m.epoch;
  li.dataset.from = from;
  li.append(
    span("time", new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
    span("from", from),
    span("text", text),
  );
  append(li);
}

function addLine(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  append(li);
  return li;
}

function append(li) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

function renderPresence(v) {
  const items = [...v.users].sort().map((user) => {
    const li = document.createElement("li");
    li.dataset.user = user;
    li.textContent = user;
    if (user === me) li.append(span("you", " (you)"));
    return li;
  });
  $("presence").replaceChildren(...items);
  $("presence-count").textContent = `(${items.length})`;
}

function renderRooms() {
  const items = [...rooms].map((room) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.room = room;
    button.textContent = room;
    if (view && view.room === room) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => enterRoom(room));
    li.append(button);
    return li;
  });
  $("rooms").replaceChildren(...items);
}

function showState(state) {
  const el = $("state");
  el.dataset.state = state;
  $("chat").dataset.state = state; // the presence list is dimmed while it may be stale
  let text = STATE_TEXT[state] ?? state;
  if (state === "reconnecting" && lastDisconnect) {
    const secs = (lastDisconnect.retryInMs / 1000).toFixed(1);
    text = `reconnecting (closed ${lastDisconnect.code}, retry in ${secs} s)`;
  }
  el.textContent = text;
}

function loginError(text) {
  $("login-error").textContent = text;
  $("login-error").hidden = !text;
}

function describe(err) {
  const text = String(err?.message ?? err);
  return err?.code ? `${err.code}: ${text}` : text; // a ServerError: PROTOCOL.md's code first
}

$("login").addEventListener("submit", join);
$("room-form").addEventListener("submit", switchRoom);
$("send-form").addEventListener("submit", send);
$("leave").addEventListener("click", leave);
renderRooms();

// For the console (and tests): the live client and the room on screen.
window.chat = {
  get client() { return client; },
  get room() { return view?.room ?? null; },
};
