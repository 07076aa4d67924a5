// Type-level checks, run by `npm run typecheck`: each line under a @ts-expect-error must fail to
// compile (ngc fails if one compiles), so the service's types are not `any` in disguise.
import { type WsopsRoom, WsopsService } from "../src/index.js";

interface Line {
  text: string;
}

export function typed(service: WsopsService): string[] {
  const room: WsopsRoom<Line> = service.room<Line>("chat:lobby", { limit: 10, presence: false });
  const texts: string[] = room.messages().map((m) => m.data.text);
  // @ts-expect-error: publish takes the room's data type
  void room.publish({ txt: "typo" });
  // @ts-expect-error: an unknown option
  service.room("chat:lobby", { limt: 10 });
  // @ts-expect-error: signals of the room are read-only
  room.state.set("open");
  // @ts-expect-error: not a state of the client
  if (service.state() === "connected") texts.push("never");
  // @ts-expect-error: user ids are strings
  const first: number = room.users()[0];
  return [...texts, String(first), String(room.gaps()), room.error()?.message ?? ""];
}
