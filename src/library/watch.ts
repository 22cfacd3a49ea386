/**
 * `Deno.watchFs` off the main thread: {@link openWatch} runs it in a worker (watch_worker.ts)
 * and hands back an async iterable of its events. A watch whose setup does not finish in time
 * (a hung share under a root) is given up on; closing terminates the worker, so a watch stuck
 * in the kernel never holds up a shutdown.
 */

import type { WatchMessage, WatchRequest } from "./watch_worker.ts";
import { watchAround, type WatchSet } from "./watch_set.ts";

const WORKER_URL = new URL("./watch_worker.ts", import.meta.url);

/** The watch: a {@link WatchSet}. */
export type FsWatch = WatchSet;

/**
 * Watch `paths` recursively from a worker (on this thread when `inWorker` is false). Rejects
 * when the watch cannot start (inotify limits) or its setup takes longer than `setupTimeoutMs`
 * (default 60 s).
 */
export function openWatch(
  paths: string[],
  setupTimeoutMs = 60_000,
  inWorker = true,
): Promise<FsWatch> {
  if (!inWorker) {
    // A worker costs about 6 fds; under a tiny fd limit the watch stays on this thread.
    try {
      return Promise.resolve(watchAround(paths));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  const worker = new Worker(WORKER_URL, { type: "module", name: "musicfs-watch" });
  const queue: Deno.FsEvent[] = [];
  let wake: (() => void) | undefined;
  let ended: { message?: string } | undefined;
  let closed = false;
  let skipped: string[] = [];
  const close = () => {
    if (closed) return;
    closed = true;
    worker.terminate();
    ended ??= {};
    wake?.();
  };
  return new Promise<FsWatch>((resolve, reject) => {
    const timer = setTimeout(() => {
      close();
      reject(new Error(`setting up the watch took longer than ${setupTimeoutMs / 1000} s`));
    }, setupTimeoutMs);
    worker.onerror = (e) => {
      e.preventDefault();
      clearTimeout(timer);
      ended = { message: `watch worker crashed: ${e.message}` };
      reject(new Error(ended.message));
      close();
    };
    worker.onmessage = (e: MessageEvent<WatchMessage>) => {
      const m = e.data;
      if (m.type === "ready") {
        clearTimeout(timer);
        skipped = m.skipped;
        resolve({ skipped, close, [Symbol.asyncIterator]: iterate });
      } else if (m.type === "error") {
        clearTimeout(timer);
        close();
        reject(new Error(m.message));
      } else if (m.type === "event") {
        queue.push({ kind: m.kind as Deno.FsEvent["kind"], paths: m.paths });
        wake?.();
      } else {
        ended = { message: m.message };
        wake?.();
      }
    };
    const req: WatchRequest = { paths };
    worker.postMessage(req);
  });

  async function* iterate(): AsyncGenerator<Deno.FsEvent> {
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (ended) {
        if (ended.message && !closed) throw new Error(ended.message);
        return;
      }
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  }
}
