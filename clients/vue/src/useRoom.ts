// useRoom: one wsops room in a Vue component, over wsops-client.js (clients/shared/roomFeed.ts
// holds the rules: history then live messages, each once; a gap reloads history; members).
import { type ComputedRef, type MaybeRefOrGetter, type ShallowRef, computed, shallowRef, toValue, watch } from "vue";

import { type ClientState, type Message, type PublishAck, type WsopsClient } from "../../../wsops/static/wsops-client.js";
import { type RoomOptions, type RoomSnapshot, RoomFeed, emptyRoom } from "../../shared/roomFeed.js";

export interface Room<T> {
  readonly state: ComputedRef<ClientState>;
  readonly messages: ComputedRef<readonly Message<T>[]>;
  readonly users: ComputedRef<readonly string[]>;
  readonly loading: ComputedRef<boolean>;
  readonly gaps: ComputedRef<number>;
  readonly error: ComputedRef<Error | null>;
  /** All of the above at once: a frozen snapshot, replaced on every change. */
  readonly snapshot: Readonly<ShallowRef<RoomSnapshot<T>>>;
  /** Publish to the room; resolves once the server stored the message. */
  publish(data: T): Promise<PublishAck>;
}

/** Follow `room` (a ref or getter may change it) until the calling component, or effect scope,
 * goes away. The client is the app's one WsopsClient, connected by the app: this only subscribes. */
export function useRoom<T = unknown>(client: WsopsClient, room: MaybeRefOrGetter<string>, options: RoomOptions = {}): Room<T> {
  const snapshot = shallowRef<RoomSnapshot<T>>(emptyRoom(client, toValue(room)));
  // The watcher stops with the component's scope, and a stopped watcher runs its cleanup.
  watch(() => toValue(room), (name, _old, onCleanup) => {
    const feed = new RoomFeed<T>(client, name, options);
    const unwatch = feed.watch((s) => { snapshot.value = s; });
    feed.start();
    onCleanup(() => {
      unwatch();
      feed.stop();
    });
  }, { immediate: true });
  return {
    state: computed(() => snapshot.value.state),
    messages: computed(() => snapshot.value.messages),
    users: computed(() => snapshot.value.users),
    loading: computed(() => snapshot.value.loading),
    gaps: computed(() => snapshot.value.gaps),
    error: computed(() => snapshot.value.error),
    snapshot,
    publish: (data: T) => client.publish(toValue(room), data),
  };
}
