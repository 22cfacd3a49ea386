/**
 * The walk worker of a {@link Walker} (walker.ts): runs {@link walkTree} for each request and
 * streams its batches back, so the synchronous walk never blocks the daemon's event loop.
 */
import { type WalkBatch, type WalkRules, type WalkSummary, walkTree } from "./walk.ts";

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
  try {
    const summary = walkTree(
      root,
      e.data.scope,
      (batch) => scope.postMessage({ id, type: "batch", batch }),
      undefined,
      e.data.rules,
    );
    scope.postMessage({ id, type: "done", summary });
  } catch (err) {
    const name = err instanceof Error ? err.name : "Error";
    const message = err instanceof Error ? err.message : String(err);
    scope.postMessage({ id, type: "error", name, message });
  }
};
