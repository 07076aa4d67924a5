// TypeScript definitions for wsops-client.js: the wsops protocol v1 client for browsers and
// Node >= 20. See PROTOCOL.md for the wire format and README.md ("Browser client") for examples.

/** Where the client's connection is. */
export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

/** A room message, delivered once and in offset order within an epoch. */
export interface Message<T = unknown> {
  readonly room: string;
  readonly offset: number;
  readonly epoch: string;
  readonly data: T;
  /** The server's time of the publish, milliseconds since the Unix epoch. */
  readonly ts: number;
  /** Who published it: the publishing connection's user, set by the server (a client cannot
   * forge it): the token's `sub`, or `anon-...` for an anonymous connection. */
  readonly from?: string;
  /** W3C trace context of the publish, when the server sent one. */
  readonly traceparent?: string;
}

/**
 * Messages between two positions of a room are lost to the client: the server could not
 * replay them after a reconnect, or the room's stream jumped. Everything up to
 * (lastOffset, lastEpoch) was delivered and everything after (newOffset, newEpoch) will be;
 * reload what lies between (for example with `history`) or tell the user.
 */
export interface Gap {
  readonly room: string;
  readonly lastOffset: number;
  readonly lastEpoch: string;
  readonly newOffset: number;
  readonly newEpoch: string;
}

/** A user's first connection joined, or its last connection left, a room (a connection that
 * subscribes with `presence: true` gets its own user's join too). */
export interface PresenceEvent {
  readonly kind: "join" | "leave";
  readonly room: string;
  readonly user: string;
}

/** A room is dropped: it could not be resubscribed after a reconnect (for example `forbidden`),
 * or the server took the connection out of it (`code` "unsubscribed", `message` its reason). */
export interface SubscriptionLost {
  readonly room: string;
  readonly code: string;
  readonly message: string;
}

/** The reply to `subscribe`: the room's position when the subscription started. */
export interface SubscribeResult {
  readonly room: string;
  readonly offset: number;
  readonly epoch: string;
  /** null for a fresh subscription, true/false for a resume with `since`. */
  readonly recovered: boolean | null;
}

/** Where the server stored a published message. */
export interface PublishAck {
  readonly room: string;
  readonly offset: number;
  readonly epoch: string;
  /** A fleet node without Redis delivered it locally only for now (PROTOCOL.md "Fleets"). */
  readonly local: boolean;
}

/** A connection (or a connection attempt) ended, as the `disconnect` event reports it. */
export interface Disconnect {
  /** The close code (1006 when the connection ended without a close frame). */
  readonly code: number;
  readonly reason: string;
  /** Milliseconds until the next connection attempt. */
  readonly retryInMs: number;
}

/** The events of `WsopsClient.on`, with the payload each listener receives. */
export interface ClientEvents {
  /** A room's subscribe reply was applied: the app's own subscribe, and each resubscribe after
   * a reconnect (`recovered` true or false), before the room's replayed and live messages. A
   * good moment to re-read `presence`. */
  subscribed: SubscribeResult;
  message: Message;
  gap: Gap;
  presence: PresenceEvent;
  lost: SubscriptionLost;
  state: ClientState;
  disconnect: Disconnect;
}

export type TokenSource = string | null | undefined | (() => string | null | undefined | Promise<string | null | undefined>);

/** The WebSocket constructor to use (the global one by default; in Node 20, `ws`'s). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** The part of the WHATWG WebSocket interface the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onclose: ((ev: { code: number; reason: string }) => any) | null;
  onerror: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ClientOptions {
  /** A JWT sent as `?token=` (browsers cannot set headers on a WebSocket); a function is called
   * before every connection attempt, so a refreshed token is used after a reconnect. A function
   * that throws or takes longer than `connectTimeoutMs` fails that attempt (retried with backoff). */
  token?: TokenSource;
  /** Smallest reconnect window in ms (default 200): the n-th retry waits uniform(0, min(cap, base * 2^n)). */
  backoffBaseMs?: number;
  /** Largest reconnect window in ms (default 10000). */
  backoffCapMs?: number;
  /** A connection open this long resets the backoff (ms, default 5000). */
  stableAfterMs?: number;
  /** Requests waiting to be sent beyond which `publish` & co. reject with QueueFullError (default 1000). */
  maxQueue?: number;
  /** Default time to wait for a reply in ms (default 10000; 0 waits forever). */
  requestTimeoutMs?: number;
  /** Bound on each connection attempt in ms (default 10000). */
  connectTimeoutMs?: number;
  /** W3C traceparent sent with every request. Default: the page's
   * `<meta name="traceparent" content="...">`, when there is one. */
  traceparent?: string | (() => string | null | undefined);
  /** WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols offered (default `[SUBPROTOCOL]`, "wsops.v1": the protocol version). A browser
   * fails a connection whose server does not answer with one, as servers from before the
   * negotiation do not: pass `[]` to talk to those. */
  protocols?: string[];
  /** Random source in [0, 1) for the backoff jitter (default Math.random; tests pin it). */
  random?: () => number;
}

export interface SubscribeOptions {
  /** Also deliver the room's join/leave events. */
  presence?: boolean;
  timeoutMs?: number;
}

export interface RequestOptions {
  timeoutMs?: number;
}

/** Base class of the client's errors. */
export class WsopsError extends Error {}
/** The server refused a request: `code` is one of PROTOCOL.md's error codes, `message` the
 * server's explanation. */
export class ServerError extends WsopsError {
  readonly code: string;
  constructor(code: string, message: string);
}
/** No reply within the request's timeout (the request may still be done). */
export class RequestTimeoutError extends WsopsError {}
/** The outgoing queue is at `maxQueue`: nothing was queued. */
export class QueueFullError extends WsopsError {}
/** The client was closed before the request completed. */
export class ClientClosedError extends WsopsError {}

/**
 * A wsops protocol v1 client that survives disconnects without losing or repeating messages.
 *
 * Subscriptions persist across reconnects: each room resumes after the last message delivered
 * to the application, and a server that cannot replay produces a `gap` event, never a silent
 * hole. Requests made while disconnected wait in a bounded queue and go out in order on the next
 * connection; a request sent but unanswered when the connection dropped is sent again (at least
 * once: a publish may then be stored twice).
 */
export class WsopsClient {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  /** The rooms the client follows (subscribed or subscribing). */
  readonly rooms: string[];
  /** Connections opened after the first one. */
  readonly reconnects: number;
  /** The close code of every connection or attempt that ended, oldest first (1006: no close
   * frame, as for a refused attempt or a token function that failed). */
  readonly closeCodes: readonly number[];
  /** Requests not answered yet (queued or in flight). */
  readonly pending: number;

  /** Start connecting; resolves once the first connection is open. Failed attempts are retried
   * with backoff (a refused token too: browsers do not show the HTTP status) for as long as it
   * takes, or until `timeoutMs` (default 0: no limit): then the client is closed and the promise
   * rejects with RequestTimeoutError. */
  connect(options?: { timeoutMs?: number }): Promise<void>;
  /** Close (code 1000), stop reconnecting and reject what is still pending with ClientClosedError. */
  close(): Promise<void>;

  /** Add a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): void;

  /** Follow `room` until `unsubscribe`, across reconnects. */
  subscribe(room: string, options?: SubscribeOptions): Promise<SubscribeResult>;
  /** Stop following `room`; its events stop at once. */
  unsubscribe(room: string, options?: RequestOptions): Promise<void>;
  /** Append `data` (any JSON value) to `room`. */
  publish(room: string, data: unknown, options?: RequestOptions): Promise<PublishAck>;
  /** The sorted ids of the users present in `room`. */
  presence(room: string, options?: RequestOptions): Promise<string[]>;
  /** Up to `limit` (1..1000, default 100) of the room's latest retained messages, oldest first. */
  history<T = unknown>(room: string, limit?: number, options?: RequestOptions): Promise<Message<T>[]>;
}

/** The delay before retry number `attempt` (0-based): uniform(0, min(capMs, baseMs * 2^attempt)). */
export function fullJitter(attempt: number, baseMs: number, capMs: number, random?: () => number): number;

/** The window (ms) over which a 1012 close asks its client to spread its reconnect (`reconnect=MS`
 *  in the close reason, at most 60000), or null: the client then waits uniform(0, window). */
export function reconnectHint(code: number, reason: string): number | null;

/** The protocol version offered as the WebSocket subprotocol. */
export const SUBPROTOCOL: "wsops.v1";

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION: 1;
