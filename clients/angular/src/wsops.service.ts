// WsopsService: wsops rooms in Angular components, as signals, over wsops-client.js
// (clients/shared/roomFeed.ts holds the rules: history then live messages, each once; a gap
// reloads history; members).
import {
  DestroyRef,
  type EnvironmentProviders,
  Injectable,
  InjectionToken,
  type Signal,
  computed,
  inject,
  makeEnvironmentProviders,
  signal,
} from "@angular/core";

import { type ClientState, type Message, type PublishAck, WsopsClient } from "../../../wsops/static/wsops-client.js";
import { type RoomOptions, type RoomSnapshot, RoomFeed } from "../../shared/roomFeed.js";

/** The app's one WsopsClient (see provideWsops). */
export const WSOPS_CLIENT = new InjectionToken<WsopsClient>("WsopsClient");

/** Provides the app's WsopsClient: `factory` makes it (and connects it, or not yet); it is
 * closed when the app is destroyed. */
export function provideWsops(factory: () => WsopsClient): EnvironmentProviders {
  return makeEnvironmentProviders([{
    provide: WSOPS_CLIENT,
    useFactory: () => {
      const client = factory();
      inject(DestroyRef).onDestroy(() => void client.close());
      return client;
    },
  }]);
}

export interface WsopsRoom<T> {
  readonly room: string;
  readonly state: Signal<ClientState>;
  readonly messages: Signal<readonly Message<T>[]>;
  readonly users: Signal<readonly string[]>;
  readonly loading: Signal<boolean>;
  readonly gaps: Signal<number>;
  readonly error: Signal<Error | null>;
  /** All of the above at once: a frozen snapshot, replaced on every change. */
  readonly snapshot: Signal<RoomSnapshot<T>>;
  /** Publish to the room; resolves once the server stored the message. */
  publish(data: T): Promise<PublishAck>;
  /** Stop following the room now, before its DestroyRef is destroyed. */
  close(): void;
}

export interface WsopsRoomOptions extends RoomOptions {
  /** Stop following the room when this is destroyed (default: the DestroyRef of the injection
   * context `room()` is called in, such as a component's field initializer). */
  destroyRef?: DestroyRef | undefined;
}

@Injectable({ providedIn: "root" })
export class WsopsService {
  readonly client = inject(WSOPS_CLIENT);
  readonly #state = signal<ClientState>(this.client.state);
  /** The connection's state. */
  readonly state: Signal<ClientState> = this.#state.asReadonly();

  constructor() {
    const off = this.client.on("state", (state) => this.#state.set(state));
    inject(DestroyRef).onDestroy(off);
  }

  /** Follow `room` until the caller is destroyed (see WsopsRoomOptions.destroyRef) or `close()`. */
  room<T = unknown>(room: string, options: WsopsRoomOptions = {}): WsopsRoom<T> {
    const destroyRef = options.destroyRef ?? inject(DestroyRef);
    const feed = new RoomFeed<T>(this.client, room, options);
    const snapshot = signal(feed.snapshot);
    feed.watch((s) => snapshot.set(s));
    feed.start();
    const close = () => feed.stop();
    destroyRef.onDestroy(close);
    return {
      room,
      state: computed(() => snapshot().state),
      messages: computed(() => snapshot().messages),
      users: computed(() => snapshot().users),
      loading: computed(() => snapshot().loading),
      gaps: computed(() => snapshot().gaps),
      error: computed(() => snapshot().error),
      snapshot: snapshot.asReadonly(),
      publish: (data: T) => feed.publish(data),
      close,
    };
  }
}
