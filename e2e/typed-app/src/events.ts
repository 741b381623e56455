// The demo's Socket.IO events (README: "Its contract"), as socket.io-client's typed events maps.

/** What a socket handler acks when its session operation failed. */
export interface AckError {
  error: "session_invalid" | "session_unavailable";
}

/** Events the server emits (`Socket<ServerToClientEvents, …>`'s first parameter). */
export interface ServerToClientEvents {
  welcome: (data: { user: string | null }) => void;
  presence: (data: { user: string | null; online: boolean }) => void;
  chat: (msg: { user: string | null; text: string }) => void;
}

/** Events the client emits; the last argument of an acknowledged event is its ack. */
export interface ClientToServerEvents {
  whoami: (ack: (res: { user: string | null } | AckError) => void) => void;
  incr: (ack: (res: number | AckError) => void) => void;
  chat: (msg: { text: string }) => void;
}
