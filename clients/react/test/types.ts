// Type-level checks, run by `npm run typecheck`: each line under a @ts-expect-error must fail to
// compile (tsc fails if one compiles), so the hook's types are not `any` in disguise.
import { type WsopsClient } from "../../../wsops/static/wsops-client.js";
import { type Room, useRoom } from "../src/index.js";

interface Line {
  text: string;
}

export function useTyped(client: WsopsClient): string[] {
  const room: Room<Line> = useRoom<Line>(client, "chat:lobby", { limit: 10, presence: false });
  const texts: string[] = room.messages.map((m) => m.data.text);
  // @ts-expect-error: publish takes the room's data type
  void room.publish({ txt: "typo" });
  // @ts-expect-error: an unknown option
  useRoom(client, "chat:lobby", { limt: 10 });
  // @ts-expect-error: the messages are read-only
  room.messages.push(room.messages[0]!);
  // @ts-expect-error: not a state of the client
  if (room.state === "connected") texts.push("never");
  // @ts-expect-error: user ids are strings
  const first: number = room.users[0];
  return [...texts, String(first), String(room.gaps), String(room.loading), room.error?.message ?? ""];
}
