// The test side of wsops-client.js: clients by name, recording everything they deliver.
// The same module runs in headless Chromium (page.html) and in Node (node_host.mjs); Python
// tests (test_client_js.py) call `run(method, args)` and read plain JSON back.

export function makeProbe(lib) {
  const clients = new Map();
  const get = (name) => {
    const rec = clients.get(name);
    if (rec === undefined) throw new Error(`no client named ${name}`);
    return rec;
  };

  const methods = {
    async open(name, url, options = {}) {
      const rec = { messages: {}, positions: {}, traceparents: [], gaps: [], presence: [], subscribed: [],
        states: [], disconnects: [], lost: [], tokenCalls: 0 };
      const { tokens, connect = true, ...rest } = options;
      const opts = { backoffBaseMs: 50, backoffCapMs: 1000, ...rest };
      if (tokens) { // a token function: each connection attempt takes the next token
        opts.token = () => tokens[Math.min(rec.tokenCalls++, tokens.length - 1)];
      }
      const client = new lib.WsopsClient(url, opts);
      rec.client = client;
      client.on("message", (m) => {
        (rec.messages[m.room] ??= []).push(m.data);
        (rec.positions[m.room] ??= []).push([m.offset, m.epoch]);
        if (m.traceparent) rec.traceparents.push(m.traceparent);
      });
      client.on("gap", (g) => rec.gaps.push(g));
      client.on("subscribed", (s) => rec.subscribed.push(s));
      client.on("presence", (p) => rec.presence.push(p));
      client.on("state", (s) => rec.states.push(s));
      client.on("disconnect", (d) => rec.disconnects.push(d.code));
      client.on("lost", (l) => rec.lost.push(l));
      clients.set(name, rec);
      if (connect) await client.connect({ timeoutMs: 15000 });
      return client.state;
    },
    subscribe: (name, room, options) => get(name).client.subscribe(room, options),
    unsubscribe: (name, room) => get(name).client.unsubscribe(room),
    publish: (name, room, data, options) => get(name).client.publish(room, data, options),
    presence: (name, room) => get(name).client.presence(room),
    history: (name, room, limit) => get(name).client.history(room, limit),
    // Publish without waiting: what each request ended as, once all ended.
    async publishMany(name, room, datas) {
      const settled = await Promise.allSettled(
        datas.map((d) => get(name).client.publish(room, d)));
      return settled.map((s) => (s.status === "fulfilled" ? s.value : { error: s.reason.name }));
    },
    received: (name, room) => get(name).messages[room] ?? [],
    positions: (name, room) => get(name).positions[room] ?? [],
    summary(name) {
      const { client, messages, positions, ...rest } = get(name);
      const counts = Object.fromEntries(Object.entries(messages).map(([r, m]) => [r, m.length]));
      return { ...rest, counts, state: client.state, reconnects: client.reconnects,
        closeCodes: client.closeCodes, pending: client.pending, rooms: client.rooms };
    },
    async close(name) {
      await get(name).client.close();
      return get(name).client.state;
    },
  };

  return {
    async run(method, args = []) {
      try {
        const value = await methods[method](...args);
        return { ok: true, value: value === undefined ? null : value };
      } catch (err) {
        return { ok: false, error: err?.name ?? "Error", code: err?.code ?? null,
          message: String(err?.message ?? err) };
      }
    },
  };
}
