/**
 * Runs directory walks ({@link walkTree}) in a worker, one walk at a time, streaming batches back.
 * An aborted walk terminates the worker (a synchronous walk cannot be interrupted otherwise, and a
 * stalled network mount must not hold the scan); the next walk starts a new one.
 */
import type { WalkBatch, WalkRules, WalkSummary } from "./walk.ts";
import type { WalkMessage, WalkRequest } from "./walk_worker.ts";

const WORKER_URL = new URL("./walk_worker.ts", import.meta.url);

/** A directory walk failed as a whole (the root cannot be read). */
export class WalkError extends Error {
  /** Creates the error; `message` comes from the worker. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WalkError";
  }
}

interface Current {
  id: number;
  onBatch: (b: WalkBatch) => void;
  resolve: (s: WalkSummary) => void;
  reject: (e: unknown) => void;
}

/** Walks in a background worker. */
export class Walker {
  #worker: Worker | undefined;
  #current: Current | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #nextId = 1;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #idleMs: number;
  readonly #rules?: () => WalkRules | undefined;

  /**
   * The worker stops after `idleMs` without a walk (default 30 s). `rules` (asked at each walk)
   * say which symlinks may be followed and where the daemon's own mount is.
   */
  constructor(options: { idleMs?: number; rules?: () => WalkRules | undefined } = {}) {
    this.#idleMs = options.idleMs ?? 30_000;
    this.#rules = options.rules;
  }

  /**
   * Walk `scope` of `root` (see {@link walkTree}), calling `onBatch` as results arrive. Walks run
   * one after another. Rejects with the signal's reason when aborted, with {@link WalkError} when
   * the root cannot be read.
   */
  walk(
    root: string,
    scope: string,
    onBatch: (b: WalkBatch) => void,
    signal?: AbortSignal,
  ): Promise<WalkSummary> {
    const run = this.#chain.then(() => this.#run(root, scope, onBatch, signal));
    this.#chain = run.catch(() => {});
    return run;
  }

  #run(
    root: string,
    scope: string,
    onBatch: (b: WalkBatch) => void,
    signal?: AbortSignal,
  ): Promise<WalkSummary> {
    signal?.throwIfAborted();
    clearTimeout(this.#idleTimer);
    const worker = this.#ensure();
    const id = this.#nextId++;
    return new Promise<WalkSummary>((resolve, reject) => {
      const onAbort = () => {
        this.#kill();
        this.#current = undefined;
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => {
        signal?.removeEventListener("abort", onAbort);
        this.#current = undefined;
        this.#idleTimer = setTimeout(() => this.#kill(), this.#idleMs);
        Deno.unrefTimer(this.#idleTimer as unknown as number);
      };
      this.#current = {
        id,
        onBatch,
        resolve: (s) => {
          done();
          resolve(s);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      const req: WalkRequest = { id, root, scope, rules: this.#rules?.() };
      worker.postMessage(req);
    });
  }

  #ensure(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER_URL, { type: "module", name: "musicfs-walk" });
    worker.onmessage = (e: MessageEvent<WalkMessage>) => {
      const cur = this.#current;
      const m = e.data;
      if (!cur || cur.id !== m.id) return;
      if (m.type === "batch") {
        try {
          cur.onBatch(m.batch);
        } catch (err) {
          this.#kill();
          cur.reject(err);
        }
      } else if (m.type === "done") cur.resolve(m.summary);
      else cur.reject(new WalkError(m.message));
    };
    worker.onerror = (e: ErrorEvent) => {
      // Keep the worker's failure from being rethrown in the daemon; the walk reports it.
      e.preventDefault();
      const cur = this.#current;
      this.#kill();
      cur?.reject(new WalkError(`Directory walker crashed: ${e.message}`));
    };
    this.#worker = worker;
    return worker;
  }

  #kill(): void {
    clearTimeout(this.#idleTimer);
    this.#worker?.terminate();
    this.#worker = undefined;
  }

  /** Stop the worker; a walk in progress rejects. */
  close(): void {
    const cur = this.#current;
    this.#kill();
    cur?.reject(new WalkError("Walker closed"));
  }
}
