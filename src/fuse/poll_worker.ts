/**
 * Waits for /dev/fuse to become readable on a thread of its own. Deno's blocking pool has 32
 * threads shared by every async file operation and nonblocking FFI call of the main thread;
 * when they are all busy (stuck reads of a dead network share, or many readers of our own
 * mount), a pooled poll would never run and the mount would stop answering. A worker's
 * synchronous poll(2) cannot be starved that way.
 *
 * Protocol: the main thread posts `[fuseFd, wakeFd]` once, then `"poll"` each time it has
 * drained the device; the worker answers with the revents of both fds.
 */
import { libc } from "../sys/libc.ts";

const lib = { symbols: libc() };
const fds = new Uint8Array(16);
const view = new DataView(fds.buffer);

self.onmessage = (e: MessageEvent<[number, number] | "poll">) => {
  if (e.data !== "poll") {
    view.setInt32(0, e.data[0], true);
    view.setInt16(4, 1, true); // POLLIN
    view.setInt32(8, e.data[1], true);
    view.setInt16(12, 1, true);
    return;
  }
  let rc: number;
  do {
    view.setInt16(6, 0, true);
    view.setInt16(14, 0, true);
    rc = lib.symbols.poll(fds, 2n, -1);
  } while (rc === 0);
  self.postMessage([rc, view.getInt16(6, true), view.getInt16(14, true)]);
};
