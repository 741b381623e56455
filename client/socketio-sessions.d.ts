// Type declarations of socketio-sessions.js. The code is checked against them with
// `tsc --checkJs` (npm run check): it imports its types from here, so the two cannot drift.
import type {
  ManagerOptions,
  Socket,
  SocketOptions,
  SocketReservedEvents,
} from "socket.io-client";

/** An events map, as in socket.io-client: event name → listener signature. */
export interface EventsMap {
  [event: string]: any;
}

/** socket.io-client's default: every event name, any arguments. */
export interface DefaultEventsMap {
  [event: string]: (...args: any[]) => void;
}

/** The names of an events map. */
export type EventNames<Map extends EventsMap> = keyof Map & (string | symbol);

/** The arguments of event `Ev`. */
export type EventParams<Map extends EventsMap, Ev extends EventNames<Map>> = Parameters<Map[Ev]>;

/** The states of a session socket, in the order they usually come. */
export declare const STATES: readonly [
  "connecting",
  "connected",
  "retrying",
  "invalid",
  "disconnected",
  "closed",
];

/**
 * Where a session socket is:
 * - `connecting`: a handshake is on its way (or socket.io-client is reconnecting after a
 *   network error);
 * - `connected`: connected with a valid session;
 * - `retrying`: waiting to retry (see the `retrying` event);
 * - `invalid`: no valid session (see the `sinvalid` event); no reconnects until `reconnect()`;
 * - `disconnected`: disconnected and not reconnecting (socket.io-client gave up);
 * - `closed`: `close()` was called.
 */
export type SessionState = (typeof STATES)[number];

/**
 * Why the session socket stopped (the `sinvalid` event); it does not reconnect until
 * `reconnect()`, after a new login:
 * - `session_invalid`: the handshake was refused: no session cookie, or a forged, unknown,
 *   expired or logged-out one;
 * - `session_revoked`: the session was deleted (a logout, in this tab or another one);
 * - `session_expired`: the session expired while connected.
 */
export type SinvalidReason = "session_invalid" | "session_revoked" | "session_expired";

/**
 * Why the session socket is about to retry (the `retrying` event):
 * - `session_unavailable`: the server could not reach its session store; retried with backoff;
 * - `server_shutdown`: the server is shutting down; retried with backoff (another node, or this
 *   one once it is back);
 * - `session_rotated`: the session has a new id (a new login): reconnects with the new cookie
 *   after the backoff's first delay, and retries a refused handshake for `rotationGrace` ms.
 */
export type RetryingReason = "session_unavailable" | "server_shutdown" | "session_rotated";

/**
 * The reasons the server gives in the `sinvalid` event it emits right before it disconnects a
 * socket (the wire protocol; the session socket turns them into its own events):
 * `session_revoked` and `session_expired` end it (`sinvalid`), `session_rotated` and
 * `server_shutdown` make it reconnect (`retrying`).
 */
export type ServerSinvalidReason =
  | "session_revoked"
  | "session_expired"
  | "session_rotated"
  | "server_shutdown";

/** The payload of `sinvalid`. */
export interface SinvalidEvent {
  reason: SinvalidReason;
}

/** The payload of `retrying`, sent before each scheduled attempt. */
export interface RetryingEvent {
  reason: RetryingReason;
  /** 1 for the first retry since the last successful connection, then 2, 3, … */
  attempt: number;
  /** Milliseconds until the attempt. */
  delay: number;
}

/** The events a session socket emits itself (they never go over the wire). */
export interface SessionSocketEvents {
  /** Connected with a valid session (after each successful handshake). */
  sconnect: () => void;
  /** No valid session: show a login form. */
  sinvalid: (event: SinvalidEvent) => void;
  /** A new handshake is scheduled. */
  retrying: (event: RetryingEvent) => void;
  /** The state changed. */
  state: (state: SessionState) => void;
}

/** Capped exponential backoff with jitter, for `session_unavailable` and `server_shutdown`. */
export interface BackoffOptions {
  /** The first delay, in ms (default 500). */
  min?: number;
  /** The longest delay, in ms (default 10000). */
  max?: number;
  /** Each retry multiplies the delay by this (default 2). */
  factor?: number;
  /** Up to this fraction of each delay is taken off at random (default 0.5). */
  jitter?: number;
}

/** socket.io-client's options, plus the session socket's own. */
export interface SessionSocketOptions extends Partial<ManagerOptions & SocketOptions> {
  /**
   * Send the session id as `auth: {sid}` (for clients that cannot send cookies; the server must
   * be built with `with_auth_sid(true)`). A function is called before every handshake.
   * Off by default: the session cookie is the source.
   */
  sid?: string | (() => string);
  /** Backoff for `session_unavailable` and `server_shutdown`. */
  backoff?: BackoffOptions;
  /**
   * Milliseconds after `session_rotated` during which a refused handshake is retried, since the
   * new cookie may still be on its way (default 3000).
   */
  rotationGrace?: number;
}

/** The listener of event `Ev`: a session socket event, a socket.io reserved event, or one of `L`. */
export type SessionSocketListener<L extends EventsMap, Ev> =
  Ev extends keyof SessionSocketEvents
    ? SessionSocketEvents[Ev]
    : Ev extends keyof SocketReservedEvents
      ? SocketReservedEvents[Ev]
      : Ev extends EventNames<L>
        ? L[Ev]
        : never;

/** The event names `on` and `off` take. */
export type SessionSocketEventNames<L extends EventsMap> =
  | keyof SessionSocketEvents
  | keyof SocketReservedEvents
  | EventNames<L>;

/**
 * A Socket.IO connection that follows the login session.
 *
 * `L` (the server's events, `ServerToClientEvents`) and `E` (the client's,
 * `ClientToServerEvents`) are socket.io-client's `Socket<L, E>` parameters.
 */
export interface SessionSocket<L extends EventsMap = DefaultEventsMap, E extends EventsMap = L> {
  /** The socket.io-client socket underneath. */
  readonly socket: Socket<L, E>;
  /** The current state; `null` until the first handshake starts (a microtask after creation). */
  readonly state: SessionState | null;
  /** Whether the socket is connected. */
  readonly connected: boolean;
  /** Listens to a session socket event (`sconnect`, `sinvalid`, `retrying`, `state`) or a socket event. */
  on<Ev extends SessionSocketEventNames<L>>(
    ev: Ev,
    listener: SessionSocketListener<L, Ev>,
  ): SessionSocket<L, E>;
  /** Removes `listener`, or every listener of `ev` without one. */
  off<Ev extends SessionSocketEventNames<L>>(
    ev: Ev,
    listener?: SessionSocketListener<L, Ev>,
  ): SessionSocket<L, E>;
  /** Emits an event to the server, as socket.io-client's `emit`. */
  emit<Ev extends EventNames<E>>(ev: Ev, ...args: EventParams<E, Ev>): SessionSocket<L, E>;
  /** Emits an event and resolves with its acknowledgement, as socket.io-client's `emitWithAck`. */
  emitWithAck: Socket<L, E>["emitWithAck"];
  /** A new handshake now, e.g. after a new login: it sends the current cookie. */
  reconnect(): SessionSocket<L, E>;
  /** Disconnects for good: no more reconnects, `reconnect()` throws. */
  close(): void;
}

/** socket.io-client's `io` (the npm package's, or its ESM browser build's). */
export interface IoFactory {
  (opts?: Partial<ManagerOptions & SocketOptions>): Socket<any, any>;
  (uri: string, opts?: Partial<ManagerOptions & SocketOptions>): Socket<any, any>;
}

/**
 * Opens a Socket.IO connection that carries the session (the cookie, or `sid` when given),
 * once the caller has attached its listeners (a microtask later).
 *
 * @param io socket.io-client's `io`
 * @param url the server's URL, or `undefined` for the page's own origin
 * @param options socket.io-client options, plus `sid`, `backoff` and `rotationGrace`
 *
 * @example
 * ```ts
 * const s = createSessionSocket<ServerToClientEvents, ClientToServerEvents>(io);
 * s.on("sinvalid", ({ reason }) => showLogin(reason));
 * const { user } = await s.emitWithAck("whoami");
 * ```
 */
export declare function createSessionSocket<
  L extends EventsMap = DefaultEventsMap,
  E extends EventsMap = L,
>(io: IoFactory, url?: string, options?: SessionSocketOptions): SessionSocket<L, E>;
