// The wsops fleet page: polls /admin/fleet (one request per interval, nothing per connection)
// and draws per-node rows, fleet totals and SVG sparklines of the last five minutes.
// Every number element carries data-node, data-field and data-value (the raw figure).

import { pollFlow } from "./flow.js";

const KEEP_SECONDS = 300;
const MIN_INTERVAL = 0.5;
const SVG = "http://www.w3.org/2000/svg";
// Memory per connection (RSS above each process's RSS at its start, divided by connections) is
// shown from this many connections up, as in wsops status (wsops/memory_per_connection.py:
// MIN_CONNECTIONS); below, allocator noise would be most of the figure.
const MEMORY_MIN_CONNECTIONS = 100;
const MEMORY_NOT_SHOWN = `n/a (fewer than ${MEMORY_MIN_CONNECTIONS} connections)`;

const state = {
  interval: null, // seconds; null until the server or ?interval= says
  timer: null,
  inFlight: false,
  updates: 0,
  flow: true, // false once the node said it has no rooms (a plain instrumented app)
  lastOk: null, // Date of the last good snapshot
  fleet: [], // [{t, connections, in, out, delivery, lag}]
  perNode: new Map(), // id -> [{t, v}]
  rows: new Map(), // id -> <tr>
};

const $ = (sel) => document.querySelector(sel);

function requestedInterval() {
  const raw = new URLSearchParams(location.search).get("interval");
  const n = raw === null ? NaN : Number(raw);
  return Number.isFinite(n) && n > 0 ? Math.max(MIN_INTERVAL, n) : null;
}

// -- formatting -------------------------------------------------------------------------------

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

function fmtBytes(v) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? integer.format(v) : oneDecimal.format(v)} ${units[i]}`;
}

function fmtMs(seconds) {
  const ms = seconds * 1000;
  const digits = ms < 10 ? 2 : ms < 100 ? 1 : 0;
  return `${ms.toFixed(digits)} ms`;
}

function fmtDuration(s) {
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

const FORMATS = {
  connections: (v) => integer.format(v),
  messages_in_per_second: (v) => oneDecimal.format(v),
  messages_out_per_second: (v) => oneDecimal.format(v),
  delivery_p99_seconds: fmtMs,
  loop_lag_p99_seconds: fmtMs,
  memory_per_connection_bytes: fmtBytes,
  rss_bytes: fmtBytes,
  messages_in_total: (v) => integer.format(v),
  messages_out_total: (v) => integer.format(v),
  uptime_seconds: fmtDuration,
};

function setNumber(el, node, field, value) {
  el.dataset.node = node;
  el.dataset.field = field;
  const known = typeof value === "number" && Number.isFinite(value);
  el.dataset.value = known ? String(value) : "";
  el.textContent = known ? (FORMATS[field] || integer.format)(value) : "—";
  el.removeAttribute("title");
}

// stats: a node's (or the fleet totals'); "n/a" below MEMORY_MIN_CONNECTIONS (`short`: in a
// table cell, the reason in its tooltip).
function setMemoryPerConnection(el, node, stats, short) {
  const field = "memory_per_connection_bytes";
  const value = stats ? stats[field] : null;
  const conns = stats ? Number(stats.connections) || 0 : 0;
  if (typeof value !== "number" || conns >= MEMORY_MIN_CONNECTIONS) {
    setNumber(el, node, field, value);
    return;
  }
  setNumber(el, node, field, null);
  el.textContent = "n/a";
  if (!short) {
    const why = document.createElement("small");
    why.textContent = ` ${MEMORY_NOT_SHOWN.slice("n/a ".length)}`;
    el.append(why);
  }
  el.title = MEMORY_NOT_SHOWN;
}

// -- sparklines -------------------------------------------------------------------------------

function sparkline(series, { width = 240, height = 44, title = "" } = {}) {
  // series: [{points: [{t, v}], cls}]; y from 0 to the largest value shown.
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  if (title) {
    const t = document.createElementNS(SVG, "title");
    t.textContent = title;
    svg.append(t);
  }
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.v));
  if (all.length === 0) return svg;
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t));
  const top = Math.max(...all.map((p) => p.v)) || 1;
  const pad = 2;
  const x = (t) => (t1 === t0 ? width - pad : pad + ((t - t0) / (t1 - t0)) * (width - 2 * pad));
  const y = (v) => height - pad - (v / top) * (height - 2 * pad);
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p.v));
    if (pts.length === 0) continue;
    const line = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    if (s.fill) {
      const area = document.createElementNS(SVG, "polygon");
      const base = (height - pad).toFixed(1);
      area.setAttribute("points",
        `${x(pts[0].t).toFixed(1)},${base} ${line} ${x(pts[pts.length - 1].t).toFixed(1)},${base}`);
      area.setAttribute("class", `area ${s.cls}`);
      svg.append(area);
    }
    const poly = document.createElementNS(SVG, "polyline");
    poly.setAttribute("points", pts.length === 1 ? `${line} ${line}` : line);
    poly.setAttribute("class", `line ${s.cls}`);
    poly.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(poly);
  }
  return svg;
}

function drawChart(id, series, title) {
  const box = document.querySelector(`#${id} .spark`);
  box.replaceChildren(sparkline(series, { title }));
}

// -- one snapshot -----------------------------------------------------------------------------

function nodeState(node) {
  const s = node.stats;
  if (!s) return { key: "unreachable", text: "unreachable", detail: node.error || "" };
  if (s.draining) {
    const d = s.drain || {};
    const progress = d.total ? ` ${d.closed || 0}/${d.total} closed` : "";
    return { key: "draining", text: "draining", detail: progress.trim() };
  }
  if (s.ready === false) {
    return { key: "not-ready", text: "not ready", detail: (s.not_ready_reasons || []).join("; ") };
  }
  if (s.ready !== true) return { key: "unknown", text: "unknown", detail: node.error || "" };
  return { key: "ready", text: "ready", detail: "" };
}

function totals(nodes) {
  const up = nodes.filter((n) => n.stats);
  const sum = (k) => up.reduce((acc, n) => acc + (Number(n.stats[k]) || 0), 0);
  const worst = (k) => {
    const vals = up.map((n) => n.stats[k]).filter((v) => typeof v === "number");
    return vals.length ? Math.max(...vals) : null;
  };
  const conns = sum("connections");
  const weighted = up.reduce((acc, n) =>
    acc + (Number(n.stats.memory_per_connection_bytes) || 0) * (Number(n.stats.connections) || 0), 0);
  const states = nodes.map((n) => nodeState(n).key);
  return {
    nodes: nodes.length,
    ready_nodes: states.filter((k) => k === "ready").length,
    draining_nodes: states.filter((k) => k === "draining").length,
    unreachable_nodes: states.filter((k) => k === "unreachable").length,
    connections: conns,
    messages_in_per_second: sum("messages_in_per_second"),
    messages_out_per_second: sum("messages_out_per_second"),
    delivery_p99_seconds: worst("delivery_p99_seconds"),
    loop_lag_p99_seconds: worst("loop_lag_p99_seconds"),
    memory_per_connection_bytes: conns ? weighted / conns : 0,
    rss_bytes: sum("rss_bytes"),
    messages_in_total: sum("messages_in_total"),
    messages_out_total: sum("messages_out_total"),
  };
}

const COLUMNS = ["connections", "messages_in_per_second", "messages_out_per_second",
  "delivery_p99_seconds", "loop_lag_p99_seconds", "memory_per_connection_bytes", "rss_bytes",
  "messages_in_total", "messages_out_total", "uptime_seconds"];

function makeRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.node = id;
  const name = document.createElement("td");
  name.className = "node";
  const st = document.createElement("td");
  st.className = "state";
  tr.append(name, st);
  for (const field of COLUMNS) {
    const td = document.createElement("td");
    td.className = "r";
    const span = document.createElement("span");
    span.className = "num";
    td.append(span);
    tr.append(td);
    if (field === "connections") {
      const spark = document.createElement("td");
      spark.className = "spark-col";
      tr.append(spark);
    }
  }
  return tr;
}

function renderRow(tr, node, now) {
  const [name, st] = tr.children;
  name.replaceChildren(document.createTextNode(node.id));
  if (node.self) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "this node";
    name.append(" ", tag);
  }
  const workers = node.stats && Array.isArray(node.stats.workers) ? node.stats.workers.length : 0;
  if (workers) name.append(` (${workers} workers)`);
  // A peer's figures are what it last wrote to the fleet registry (every heartbeat).
  const age = typeof node.as_of === "number" ? Math.max(0, now - node.as_of) : null;
  name.title = [node.admin_url || "", node.self || age === null ? "" : `as of ${age.toFixed(1)} s ago`]
    .filter(Boolean).join(" · ");
  const s = nodeState(node);
  st.replaceChildren();
  const badge = document.createElement("span");
  badge.className = `badge ${s.key}`;
  badge.dataset.node = node.id;
  badge.dataset.field = "state";
  badge.dataset.value = s.key;
  badge.textContent = s.text;
  st.append(badge);
  if (s.detail) {
    const small = document.createElement("small");
    small.textContent = ` ${s.detail}`;
    st.append(small);
  }
  const nums = tr.querySelectorAll("span.num");
  COLUMNS.forEach((field, i) => {
    if (field === "memory_per_connection_bytes") {
      setMemoryPerConnection(nums[i], node.id, node.stats, true);
    } else {
      setNumber(nums[i], node.id, field, node.stats ? node.stats[field] : null);
    }
  });
  const history = (state.perNode.get(node.id) || []).filter((p) => p.t >= now - KEEP_SECONDS);
  if (node.stats) history.push({ t: now, v: Number(node.stats.connections) || 0 });
  state.perNode.set(node.id, history);
  tr.querySelector("td.spark-col").replaceChildren(
    sparkline([{ points: history, cls: "conn", fill: true }],
      { width: 120, height: 24, title: `${node.id}: connections` }));
  tr.classList.toggle("down", !node.stats);
}

// The broker as this node sees it: one row per Redis Cluster shard (slots, master, state, the
// rooms this node follows there), or one row for a single Redis; hidden with the memory broker.
function renderBroker(own) {
  const broker = own && own.stats && own.stats.broker;
  const section = $("#broker");
  if (!broker || broker.name !== "redis") { section.hidden = true; return; }
  const shards = broker.shards || [{ slots: [[0, 16383]], master: broker.url, healthy: true,
    up: broker.redis_up, rooms: broker.rooms, replicas: [] }];
  $("#broker-what").textContent = broker.shards
    ? `Redis Cluster · ${shards.length} shard${shards.length === 1 ? "" : "s"} · ${broker.url}`
    : `Redis · ${broker.url}`;
  const rows = shards.map((shard) => {
    const tr = document.createElement("tr");
    tr.dataset.shard = shard.master || "";
    const state = shard.up ? (shard.healthy ? "up" : "failing") : "down";
    const cells = [
      ["slots", shard.slots.map(([a, b]) => `${a}-${b}`).join(", ")],
      ["master", shard.master || "—"],
      ["state", state],
      ["rooms", String(shard.rooms ?? "")],
      ["replicas", (shard.replicas || []).join(", ") || "—"],
    ];
    for (const [field, text] of cells) {
      const td = document.createElement("td");
      if (field === "rooms") td.className = "r";
      td.dataset.field = field;
      td.dataset.value = text;
      if (field === "state") {
        const badge = document.createElement("span");
        badge.className = `badge ${{ up: "ready", failing: "draining", down: "not-ready" }[state]}`;
        badge.textContent = text;
        td.append(badge);
      } else {
        td.textContent = text;
      }
      tr.append(td);
    }
    return tr;
  });
  section.querySelector("tbody").replaceChildren(...rows);
  section.hidden = false;
}

function render(data) {
  const now = (data.generated_at || Date.now() / 1000);
  const nodes = data.nodes || [];
  const t = totals(nodes);
  for (const el of document.querySelectorAll('[data-node="fleet"][data-field]')) {
    if (el.dataset.field === "memory_per_connection_bytes") {
      setMemoryPerConnection(el, "fleet", t, false);
    } else {
      setNumber(el, "fleet", el.dataset.field, t[el.dataset.field]);
    }
  }
  state.fleet.push({ t: now, connections: t.connections, in: t.messages_in_per_second,
    out: t.messages_out_per_second, delivery: t.delivery_p99_seconds, lag: t.loop_lag_p99_seconds });
  state.fleet = state.fleet.filter((p) => p.t >= now - KEEP_SECONDS);
  const pts = (k) => state.fleet.map((p) => ({ t: p.t, v: p[k] === null ? NaN : p[k] }));
  drawChart("chart-connections", [{ points: pts("connections"), cls: "conn", fill: true }],
    "connections, last 5 minutes");
  drawChart("chart-messages", [{ points: pts("in"), cls: "in" }, { points: pts("out"), cls: "out" }],
    "messages per second in and out, last 5 minutes");
  drawChart("chart-delivery", [{ points: pts("delivery"), cls: "delivery", fill: true }],
    "delivery p99, last 5 minutes");
  drawChart("chart-lag", [{ points: pts("lag"), cls: "lag", fill: true }],
    "event-loop lag p99, last 5 minutes");

  const tbody = $("#nodes tbody");
  const seen = new Set();
  for (const node of nodes) {
    seen.add(node.id);
    let tr = state.rows.get(node.id);
    if (!tr) { tr = makeRow(node.id); state.rows.set(node.id, tr); }
    renderRow(tr, node, now);
    tbody.append(tr); // keeps the server's order: this node first, then by id
  }
  for (const [id, tr] of state.rows) {
    if (!seen.has(id)) { tr.remove(); state.rows.delete(id); state.perNode.delete(id); }
  }

  $("#title").textContent = data.fleet ? `fleet · ${nodes.length} node${nodes.length === 1 ? "" : "s"}`
    : `node ${data.node_id}`;
  document.title = `wsops ${$("#title").textContent}`;
  $("#seen-from").textContent = data.fleet ? `seen from ${data.node_id}` : "";
  renderBroker(nodes.find((n) => n.self));
  const note = $("#note");
  note.hidden = !data.registry_error;
  note.textContent = data.registry_error || "";
}

// -- polling ----------------------------------------------------------------------------------

function setStatus(text, cls) {
  const el = $("#status");
  el.textContent = text;
  el.className = `status ${cls}`;
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(tick, (state.interval || 2) * 1000);
}

async function tick() {
  state.timer = null;
  if (document.visibilityState === "hidden" || state.inFlight) return; // resumed when visible
  state.inFlight = true;
  try {
    const resp = await fetch("/admin/fleet", { cache: "no-store", credentials: "same-origin" });
    if (resp.status === 401 || resp.status === 403) {
      throw new Error("not signed in: open / with ?token=<admin token> again");
    }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const data = await resp.json();
    if (state.interval === null) state.interval = requestedInterval() || data.interval || 2;
    render(data);
    if (state.flow) state.flow = await pollFlow();
    state.updates += 1;
    state.lastOk = new Date();
    document.body.dataset.updates = String(state.updates);
    document.body.classList.remove("stale");
    const upd = $("#updated");
    upd.textContent = state.lastOk.toLocaleTimeString();
    upd.dateTime = state.lastOk.toISOString();
    $("#every").textContent = String(state.interval);
    setStatus("live", "ok");
  } catch (err) {
    document.body.classList.add("stale");
    const since = state.lastOk ? state.lastOk.toLocaleTimeString() : "the start";
    setStatus(`stale since ${since}: ${err.message || err}`, "stale");
  } finally {
    state.inFlight = false;
    if (document.visibilityState !== "hidden") schedule();
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.timer === null) tick();
});

state.interval = requestedInterval();
if (state.interval !== null) $("#every").textContent = String(state.interval);
tick();
