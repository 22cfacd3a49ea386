/**
 * Runs `Deno.watchFs` in a worker thread (see watch.ts): its setup walks every folder of the
 * library synchronously, following symlinks, and its event thread may wait on what it meets (a
 * FIFO, a hung network share, the daemon's own mount). None of that may block the daemon's main
 * thread, which serves the mount.
 */

import { watchAround, type WatchSet } from "./watch_set.ts";

/** Start watching `paths` (recursively). */
export interface WatchRequest {
  paths: string[];
}

/** What the worker sends back. */
export type WatchMessage =
  | { type: "ready"; skipped: string[] }
  | { type: "error"; message: string }
  | { type: "event"; kind: string; paths: string[] }
  | { type: "end"; message?: string };

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WatchRequest>) => void) | null;
  postMessage(m: WatchMessage): void;
};

scope.onmessage = async (e) => {
  let watcher: WatchSet;
  try {
    watcher = watchAround(e.data.paths);
  } catch (err) {
    scope.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
    return;
  }
  scope.postMessage({ type: "ready", skipped: watcher.skipped });
  try {
    for await (const ev of watcher) {
      if (ev.kind === "access") continue;
      scope.postMessage({ type: "event", kind: ev.kind, paths: ev.paths });
    }
    scope.postMessage({ type: "end" });
  } catch (err) {
    scope.postMessage({ type: "end", message: err instanceof Error ? err.message : String(err) });
  }
};
