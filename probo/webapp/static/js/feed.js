// The live feed: one WebSocket to /api/v1/ws for the whole app. Channels are
// re-subscribed whenever the socket (re)opens; a market's book is re-snapshotted on a
// gap in `seq` or after a reconnect.

const RECONNECT_DELAY_MS_MIN = 250;
const RECONNECT_DELAY_MS_MAX = 5000;

const handlers = new Map(); // channel → Set of handlers
let socket = null;
let reconnectDelayMs = RECONNECT_DELAY_MS_MIN;
let reconnectTimer = null;
let wanted = false;

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function connect() {
  clearTimeout(reconnectTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const current = new WebSocket(`${scheme}//${location.host}/api/v1/ws`);
  socket = current;
  current.addEventListener("open", () => {
    reconnectDelayMs = RECONNECT_DELAY_MS_MIN;
    for (const channel of handlers.keys()) send({ op: "subscribe", channel });
  });
  current.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    const channel = message.channel || (message.type === "ticker" ? "ticker" : null);
    for (const handler of handlers.get(channel) || []) handler(message);
  });
  current.addEventListener("close", () => {
    if (socket !== current) return;
    socket = null;
    for (const [channel, set] of handlers) {
      for (const handler of set) handler({ type: "disconnected", channel });
    }
    if (!wanted) return;
    reconnectTimer = setTimeout(connect, reconnectDelayMs);
    reconnectDelayMs = Math.min(reconnectDelayMs * 2, RECONNECT_DELAY_MS_MAX);
  });
}

// Open (or reopen, e.g. after logging in, so the socket carries the new session).
export function restart() {
  wanted = true;
  if (socket) {
    const old = socket;
    socket = null;
    old.close();
  }
  connect();
}

export function stop() {
  wanted = false;
  clearTimeout(reconnectTimer);
  if (socket) {
    const old = socket;
    socket = null;
    old.close();
  }
}

// Subscribe `handler` to `channel`; returns the unsubscribe function.
export function subscribe(channel, handler) {
  let set = handlers.get(channel);
  if (!set) {
    set = new Set();
    handlers.set(channel, set);
    send({ op: "subscribe", channel });
  }
  set.add(handler);
  return () => {
    set.delete(handler);
    if (set.size === 0) {
      handlers.delete(channel);
      send({ op: "unsubscribe", channel });
    }
  };
}

// Ask again for a channel's snapshot (subscribing again re-snapshots).
export function resubscribe(channel) {
  send({ op: "subscribe", channel });
}

// A market's live order book: `onChange(book)` after each snapshot or gap-free delta.
export function watchBook(marketId, onChange, onTrades) {
  const channel = `market:${marketId}`;
  let seq = null; // null: waiting for a snapshot
  const levels = { yes: new Map(), no: new Map() };
  return subscribe(channel, (message) => {
    if (message.type === "snapshot") {
      seq = message.seq;
      for (const outcome of ["yes", "no"]) {
        levels[outcome] = new Map(message.book[outcome].map((l) => [l.price, l.quantity]));
      }
      onChange(levels);
    } else if (message.type === "book") {
      if (seq === null) return;
      if (message.seq !== seq + 1) {
        seq = null;
        resubscribe(channel);
        return;
      }
      seq = message.seq;
      for (const change of message.changes) {
        if (change.quantity === 0) levels[change.outcome].delete(change.price);
        else levels[change.outcome].set(change.price, change.quantity);
      }
      onChange(levels);
    } else if (message.type === "trade") {
      onTrades(message.trades);
    } else if (message.type === "disconnected") {
      seq = null;
    }
  });
}
