/**
 * The walk worker of a {@link Walker} (walker.ts): runs {@link walkTree} for each request and
 * streams its batches back, so the synchronous walk never blocks the daemon's event loop.
 */
import { collectGarbage } from "../util/gc.ts";
import { type WalkBatch, type WalkRules, type WalkSummary, walkTree } from "./walk.ts";

/**
 * Entries past which a walk is followed by a full GC of this worker: a walk of 100k files left
 * 51 MB committed here (1M: hundreds), held until V8's memory reducer first runs, 30 s after
 * the worker started, or the worker stops when idle.
 */
const GC_AFTER_ENTRIES = 20_000;

/** Walk `scope` of `root`. */
export interface WalkRequest {
  id: number;
  root: string;
  scope: string;
  rules?: WalkRules;
}

/** What the worker sends back: batches, then `done` or `error`. */
export type WalkMessage =
  | { id: number; type: "batch"; batch: WalkBatch }
  | { id: number; type: "done"; summary: WalkSummary }
  | { id: number; type: "error"; name: string; message: string };

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WalkRequest>) => void) | null;
  postMessage(m: WalkMessage): void;
};

scope.onmessage = (e) => {
  const { id, root } = e.data;
  let entries = 0;
  try {
    const summary = walkTree(
      root,
      e.data.scope,
      (batch) => {
        entries += batch.files.length + batch.dirs.length;
        scope.postMessage({ id, type: "batch", batch });
      },
      undefined,
      e.data.rules,
    );
    scope.postMessage({ id, type: "done", summary });
    if (entries > GC_AFTER_ENTRIES) collectGarbage();
  } catch (err) {
    const name = err instanceof Error ? err.name : "Error";
    const message = err instanceof Error ? err.message : String(err);
    scope.postMessage({ id, type: "error", name, message });
  }
};
