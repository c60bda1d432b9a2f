// The Socket.IO connection to the relay, and the rooms the current view listens to.
//
// socket.io-client reconnects by itself (with backoff) after the relay restarts, but a new
// connection is a new client to the relay: it has no rooms. So every subscription is kept here
// with the last `seq` it saw of each subject, and sent again on every `connect`; a job or agent
// room then replays exactly what was missed. A tenant room has no replay (`seq` is per subject),
// so a view that shows one also reloads from the API on reconnect (`onConnect`).
import { io } from "/console/vendor/socket.io.esm.min.js";

let socket = null;
const rooms = new Map(); // room -> {handlers: Set, last: Map(subjectKey -> seq)}
const connectHooks = new Set();

function setState(state, text) {
  const badge = document.getElementById("conn");
  badge.dataset.state = state;
  badge.textContent = text;
}

/** Open the connection with `token` to the relay at `url` (closing any earlier one). */
export function connect(url, token) {
  disconnect();
  socket = io(url, { auth: { token }, transports: ["websocket", "polling"] });
  socket.on("connect", async () => {
    setState("live", "live");
    // Hooks reload what a room cannot replay; they run once the relay has the rooms again,
    // so an event is either in what they load or delivered after.
    await Promise.all([...rooms.keys()].map(sendSubscribe));
    for (const hook of connectHooks) hook();
  });
  socket.on("disconnect", () => setState("offline", "reconnecting…"));
  socket.on("connect_error", (err) => setState("offline", `relay unreachable (${err.message})`));
  socket.on("event", onEvent);
}

/** Close the connection and forget every room. */
export function disconnect() {
  if (socket) socket.disconnect();
  socket = null;
  rooms.clear();
  connectHooks.clear();
  setState("offline", "offline");
}

function onEvent(envelope) {
  const subject = envelope?.subject;
  if (!subject || typeof envelope.seq !== "number") return;
  const key = `${subject.type}:${subject.id}`;
  for (const [room, entry] of rooms) {
    if (room !== "tenant" && room !== key) continue;
    const last = entry.last.get(key) ?? 0;
    if (envelope.seq <= last) continue; // a repeat after a resubscribe
    entry.last.set(key, envelope.seq);
    for (const handler of entry.handlers) handler(envelope);
  }
}

function sendSubscribe(room) {
  const entry = rooms.get(room);
  // A job or agent room resumes after the last seq of its one subject.
  const since = room === "tenant" ? undefined : (entry.last.get(room) ?? entry.since);
  return new Promise((resolve) => {
    socket
      .timeout(10000)
      .emit("subscribe", since === undefined ? { room } : { room, since }, (err, ack) => {
        if (err || !ack?.ok)
          setState("error", `subscribe ${room} refused: ${ack?.error?.message ?? "no answer"}`);
        resolve();
      });
  });
}

/**
 * Listen to `room` ("tenant", "job:<id>", "agent:<id>") from `since` on; `handler(envelope)` gets
 * each event once, in order. Returns the function that stops listening; its `ready` promise
 * resolves when the relay has the room, after which a view may load what came before.
 */
export function subscribe(room, since, handler) {
  let entry = rooms.get(room);
  const fresh = !entry;
  if (fresh) {
    entry = { handlers: new Set(), last: new Map(), since: since ?? 0 };
    rooms.set(room, entry);
  }
  entry.handlers.add(handler);
  const ready = fresh && socket?.connected ? sendSubscribe(room) : Promise.resolve();
  const stop = () => {
    entry.handlers.delete(handler);
    if (entry.handlers.size === 0) {
      rooms.delete(room);
      if (socket?.connected) socket.emit("unsubscribe", { room });
    }
  };
  stop.ready = ready; // resolved once the relay has the room (or at once, when offline)
  return stop;
}

/**
 * Run `hook` on every connect, once the rooms are subscribed again: a view whose room has no
 * replay (the tenant room) reloads from the API there. Returns its remover.
 */
export function onConnect(hook) {
  connectHooks.add(hook);
  return () => connectHooks.delete(hook);
}
