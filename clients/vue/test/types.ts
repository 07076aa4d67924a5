// Type-level checks, run by `npm run typecheck`: each line under a @ts-expect-error must fail to
// compile (vue-tsc fails if one compiles), so the composable's types are not `any` in disguise.
import { ref } from "vue";

import { type WsopsClient } from "../../../wsops/static/wsops-client.js";
import { type Room, useRoom } from "../src/index.js";

interface Line {
  text: string;
}

export function useTyped(client: WsopsClient): string[] {
  const room: Room<Line> = useRoom<Line>(client, ref("chat:lobby"), { limit: 10, presence: false });
  const texts: string[] = room.messages.value.map((m) => m.data.text);
  // @ts-expect-error: publish takes the room's data type
  void room.publish({ txt: "typo" });
  // @ts-expect-error: an unknown option
  useRoom(client, "chat:lobby", { limt: 10 });
  // @ts-expect-error: the state is computed, not writable
  room.state.value = "open";
  // @ts-expect-error: not a state of the client
  if (room.state.value === "connected") texts.push("never");
  // @ts-expect-error: user ids are strings
  const first: number = room.users.value[0];
  return [...texts, String(first), String(room.gaps.value), room.error.value?.message ?? ""];
}
