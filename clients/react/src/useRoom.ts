// useRoom: one wsops room in a React component, over wsops-client.js (clients/shared/roomFeed.ts
// holds the rules: history then live messages, each once; a gap reloads history; members).
import { useCallback, useEffect, useState } from "react";

import { type PublishAck, type WsopsClient } from "../../../wsops/static/wsops-client.js";
import { type RoomOptions, type RoomSnapshot, RoomFeed, emptyRoom } from "../../shared/roomFeed.js";

export interface Room<T> extends RoomSnapshot<T> {
  /** Publish to the room; resolves once the server stored the message. */
  publish: (data: T) => Promise<PublishAck>;
}

/** Follow `room` while the component is mounted (and `client` and `room` stay the same). The
 * client is the page's one WsopsClient, connected by the page: the hook only subscribes. */
export function useRoom<T = unknown>(client: WsopsClient, room: string, options: RoomOptions = {}): Room<T> {
  const { limit, presence } = options;
  const [snapshot, setSnapshot] = useState<RoomSnapshot<T>>(() => emptyRoom(client, room));
  useEffect(() => {
    const feed = new RoomFeed<T>(client, room, { limit, presence });
    const unwatch = feed.watch(setSnapshot);
    feed.start();
    return () => {
      unwatch();
      feed.stop();
    };
  }, [client, room, limit, presence]);
  const publish = useCallback((data: T) => client.publish(room, data), [client, room]);
  // A new room shows nothing of the last one, even before its effect ran.
  const current = snapshot.room === room ? snapshot : emptyRoom<T>(client, room);
  return { ...current, publish };
}
