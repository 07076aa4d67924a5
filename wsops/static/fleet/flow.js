// The flow view of the fleet page: this node's busiest rooms (GET /admin/flow, a bounded
// sketch on the node, never metric labels), with messages/s and bytes/s in and out computed
// from two readings, publishers and subscribers. Rows carry data-room and each number
// data-field and data-value (the raw figure) like the rest of the page.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const TOP = 10;
let previous = null; // {t, rooms: Map(room -> counters)}

function rate(now, room, field) {
  if (!previous) return null;
  const before = previous.rooms.get(room.room);
  const dt = now - previous.t;
  // A room forgotten and tracked again (or first seen) has no earlier reading to compare.
  if (!before || dt <= 0 || before.since !== room.since) return null;
  return Math.max(0, (room[field] - before[field]) / dt);
}

function bytesPerSecond(v) {
  const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? integer.format(v) : oneDecimal.format(v)} ${units[i]}`;
}

const COLUMNS = [
  ["msgs_in_per_second", (v) => oneDecimal.format(v)],
  ["msgs_out_per_second", (v) => oneDecimal.format(v)],
  ["bytes_in_per_second", bytesPerSecond],
  ["bytes_out_per_second", bytesPerSecond],
  ["publishers", (v) => integer.format(v)],
  ["subscribers", (v) => integer.format(v)],
];

function cell(room, field, value, fmt, title) {
  const td = document.createElement("td");
  td.className = "r";
  const span = document.createElement("span");
  span.className = "num";
  span.dataset.room = room;
  span.dataset.field = field;
  const known = typeof value === "number" && Number.isFinite(value);
  span.dataset.value = known ? String(value) : "";
  span.textContent = known ? fmt(value) : "…";
  if (title) span.title = title;
  td.append(span);
  return td;
}

export function renderFlow(data) {
  const section = document.querySelector("#flow");
  const tbody = section.querySelector("tbody");
  const now = data.generated_at;
  const rows = [];
  for (const room of data.rooms || []) {
    const tr = document.createElement("tr");
    tr.dataset.room = room.room;
    const name = document.createElement("td");
    name.textContent = room.room;
    tr.append(name);
    const figures = {
      msgs_in_per_second: rate(now, room, "msgs_in"),
      msgs_out_per_second: rate(now, room, "msgs_out"),
      bytes_in_per_second: rate(now, room, "bytes_in"),
      bytes_out_per_second: rate(now, room, "bytes_out"),
      publishers: room.publishers,
      subscribers: room.subscribers,
    };
    for (const [field, fmt] of COLUMNS) {
      const title = field === "publishers" && room.publishers_capped ? "at least (counted up to a cap)" : "";
      tr.append(cell(room.room, field, figures[field], fmt, title));
    }
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  section.hidden = false;
  const note = section.querySelector(".flow-note");
  note.textContent = `${data.tracked} room${data.tracked === 1 ? "" : "s"} followed` +
    (data.forgotten ? `, ${data.forgotten} quieter ones forgotten to stay bounded` : "") +
    (previous ? "" : "; rates from the next refresh");
  previous = { t: now, rooms: new Map((data.rooms || []).map((r) => [r.room, r])) };
}

// Fetches the flow of this node; false when the node has none (a plain instrumented app: 404).
export async function pollFlow() {
  const resp = await fetch(`/admin/flow?top=${TOP}`, { cache: "no-store", credentials: "same-origin" });
  if (resp.status === 404) return false;
  if (!resp.ok) throw new Error(`flow: HTTP ${resp.status}`);
  renderFlow(await resp.json());
  return true;
}
