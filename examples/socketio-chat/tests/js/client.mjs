// Drives official socket.io clients for the Rust integration tests.
// stdin: one JSON command per line; stdout: one JSON event per line.
//   {"op":"connect","client":"a1","url":"http://127.0.0.1:3000","answer":"yes"}
//       -> {"client":"a1","event":"connected","id":"<socket id>"}
//   {"op":"emit","client":"a1","req":1,"event":"join","data":"room"}
//       -> {"client":"a1","event":"ack","req":1,"data":<ack>} or {"...","error":"..."}
//   {"op":"close","client":"a1"} -> {"client":"a1","event":"disconnected","reason":"..."}
// Every server event is reported as {"client","event":"<name>","data"}; a "poll" from the
// server is answered with the client's `answer`.
import { io } from "socket.io-client";
import readline from "node:readline";

const clients = new Map();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function connect({ client, url, answer }) {
  const socket = io(url, { transports: ["websocket"], reconnection: false, timeout: 10000 });
  clients.set(client, socket);
  socket.on("connect", () => out({ client, event: "connected", id: socket.id }));
  socket.on("connect_error", (err) => out({ client, event: "connect_error", error: String(err && err.message) }));
  socket.on("disconnect", (reason) => out({ client, event: "disconnected", reason }));
  socket.on("poll", (data, cb) => {
    out({ client, event: "poll", data });
    if (typeof cb === "function") cb(answer === undefined ? client : answer);
  });
  socket.onAny((event, ...args) => {
    if (event !== "poll") out({ client, event, data: args[0] });
  });
}

function emit({ client, req, event, data }) {
  const socket = clients.get(client);
  if (!socket) return out({ client, event: "ack", req, error: "no such client" });
  socket.timeout(30000).emit(event, data, (err, resp) => {
    if (err) out({ client, event: "ack", req, error: String(err.message || err) });
    else out({ client, event: "ack", req, data: resp });
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) { return out({ event: "bad_command", error: String(e) }); }
  switch (cmd.op) {
    case "connect": connect(cmd); break;
    case "emit": emit(cmd); break;
    case "close": { const s = clients.get(cmd.client); if (s) s.close(); break; }
    default: out({ event: "bad_command", error: "unknown op " + cmd.op });
  }
});
rl.on("close", () => { for (const s of clients.values()) s.close(); process.exit(0); });
out({ event: "ready" });
