// A typed use of wsops-client.js: `tsc --noEmit -p tests/client_js/typed` must accept it
// (tests/client_js/test_types.py). It imports the .js module, so TypeScript reads the
// wsops-client.d.ts beside it, exactly as an application importing the served file would.
import {
  ClientClosedError,
  type ClientState,
  type Gap,
  type Message,
  type PresenceEvent,
  type PublishAck,
  QueueFullError,
  RequestTimeoutError,
  ServerError,
  type SubscribeResult,
  WsopsClient,
  fullJitter,
  PROTOCOL_VERSION,
} from "../../../wsops/static/wsops-client.js";

interface ChatLine {
  user: string;
  text: string;
}

function isChatLine(data: unknown): data is ChatLine {
  return typeof data === "object" && data !== null && "text" in data && "user" in data;
}

export async function main(url: string, fetchToken: () => Promise<string>): Promise<number> {
  const client = new WsopsClient(url, {
    token: fetchToken,
    backoffBaseMs: 100,
    backoffCapMs: 5000,
    maxQueue: 100,
    requestTimeoutMs: 5000,
    traceparent: () => document.querySelector<HTMLMetaElement>("meta[name=traceparent]")?.content,
  });
  const lines: ChatLine[] = [];
  const stopMessages: () => void = client.on("message", (msg: Message) => {
    if (isChatLine(msg.data)) lines.push(msg.data);
    const when: Date = new Date(msg.ts);
    console.log(msg.room, msg.offset, msg.epoch, when, msg.traceparent ?? "no trace");
  });
  client.on("gap", (gap: Gap) => {
    console.log(`lost ${gap.room} after ${gap.lastOffset}@${gap.lastEpoch} up to ${gap.newOffset}@${gap.newEpoch}`);
  });
  client.on("presence", (event: PresenceEvent) => console.log(event.kind === "join" ? "+" : "-", event.user));
  client.on("state", (state: ClientState) => console.log("state", state));
  client.on("disconnect", ({ code, reason, retryInMs }) => console.log(code, reason, retryInMs.toFixed(0)));
  client.on("lost", ({ room, code, message }) => console.log(room, code, message));

  await client.connect({ timeoutMs: 10000 });
  const sub: SubscribeResult = await client.subscribe("chat:lobby", { presence: true });
  const recovered: boolean | null = sub.recovered;
  const users: string[] = await client.presence("chat:lobby");
  const recent: Message<ChatLine>[] = await client.history<ChatLine>("chat:lobby", 50);
  lines.push(...recent.map((m) => m.data));
  try {
    const ack: PublishAck = await client.publish("chat:lobby", { user: users[0] ?? "me", text: "hi" });
    if (ack.local) console.log("stored on one node only for now");
  } catch (err) {
    if (err instanceof ServerError) console.log(err.code, err.message);
    else if (err instanceof QueueFullError || err instanceof RequestTimeoutError) console.log("retry later");
    else if (err instanceof ClientClosedError) return -1;
    else throw err;
  }
  console.log(client.state, client.rooms, client.reconnects, client.closeCodes, client.pending, recovered);
  await client.unsubscribe("chat:lobby");
  stopMessages();
  await client.close();
  return PROTOCOL_VERSION + fullJitter(3, 100, 5000) + lines.length;
}
