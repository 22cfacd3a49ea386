/**
 * The pool of parse workers (Deno Web Workers running parse_worker.ts). Files are queued one by
 * one and sent in small batches, two batches in flight per worker so none idles between answers.
 * A worker that dies or hangs is replaced: the files of its batch are retried one at a time, and
 * a file that kills or hangs a worker on its own is answered with a reason instead of retried
 * forever. Workers start on first use and stop after a while without work.
 */
import { logger } from "../log/mod.ts";
import type { ParseRequest, ParseResponse } from "./parse_worker.ts";
import type { TagResult } from "./tags.ts";

const log = logger("library", "pool");

/** Options of {@link ParserPool}. */
export interface ParserPoolOptions {
  /** Number of workers (default: `navigator.hardwareConcurrency`). */
  size?: number;
  /** Stop the workers after this long without work (default 30 s). */
  idleMs?: number;
  /** A batch not answered within this time (plus 2 s per file) counts as hung (default 20 s). */
  timeoutMs?: number;
  /** Files per message (default 32). */
  maxBatch?: number;
}

/** Thrown to the callers of {@link ParserPool.parse} whose files were dropped by `clear`/`close`. */
export class ParseCancelledError extends Error {
  /** Creates the error. */
  constructor(message = "Parsing cancelled", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ParseCancelledError";
  }
}

interface Job {
  path: string;
  resolve: (r: TagResult) => void;
  reject: (e: unknown) => void;
  /** Was in a batch whose worker died: now sent alone. */
  suspect: boolean;
}

interface Slot {
  worker: Worker;
  inflight: Map<number, { jobs: Job[]; timer: ReturnType<typeof setTimeout> }>;
}

const WORKER_URL = new URL("./parse_worker.ts", import.meta.url);

/** A pool of tag-parsing workers. */
export class ParserPool {
  /** Number of workers when busy. */
  readonly size: number;
  readonly #idleMs: number;
  readonly #timeoutMs: number;
  readonly #maxBatch: number;
  #queue: Job[] = [];
  #slots: Slot[] = [];
  #nextId = 1;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Files parsed since the pool was created (results delivered, any outcome). */
  parsed = 0;

  /** Creates the pool; no worker starts before the first {@link parse}. */
  constructor(options: ParserPoolOptions = {}) {
    this.size = Math.max(1, options.size ?? navigator.hardwareConcurrency ?? 2);
    this.#idleMs = options.idleMs ?? 30_000;
    this.#timeoutMs = options.timeoutMs ?? 20_000;
    this.#maxBatch = options.maxBatch ?? 32;
  }

  /** Read the tags of the file at `path` (absolute) in a worker. */
  parse(path: string): Promise<TagResult> {
    if (this.#closed) return Promise.reject(new ParseCancelledError("Parser pool is closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ path, resolve, reject, suspect: false });
      this.#dispatch();
    });
  }

  /** Files waiting for a worker or being parsed. */
  get pending(): number {
    let n = this.#queue.length;
    for (const s of this.#slots) for (const b of s.inflight.values()) n += b.jobs.length;
    return n;
  }

  /** Drop the queued files (their promises reject with {@link ParseCancelledError}). */
  clear(): void {
    const dropped = this.#queue;
    this.#queue = [];
    for (const j of dropped) j.reject(new ParseCancelledError());
  }

  /** Stop all workers; queued and in-flight files reject. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.clear();
    clearTimeout(this.#idleTimer);
    for (const slot of this.#slots) {
      this.#stop(slot, new ParseCancelledError("Parser pool is closed"));
    }
    this.#slots = [];
  }

  #dispatch(): void {
    clearTimeout(this.#idleTimer);
    while (this.#queue.length > 0) {
      const slot = this.#slots.find((s) => s.inflight.size === 0) ??
        (this.#slots.length < this.size
          ? this.#spawn()
          : this.#slots.find((s) => s.inflight.size < 2));
      if (!slot) break;
      let jobs: Job[];
      if (this.#queue[0].suspect) {
        jobs = [this.#queue.shift()!];
      } else {
        // Small batches while the queue is short keep every worker busy; larger ones amortise
        // the message cost when it is long.
        const n = Math.max(
          1,
          Math.min(this.#maxBatch, Math.ceil(this.#queue.length / (this.size * 2))),
        );
        let end = 0;
        while (end < n && end < this.#queue.length && !this.#queue[end].suspect) end++;
        jobs = this.#queue.splice(0, end);
      }
      this.#send(slot, jobs);
    }
    if (
      this.#queue.length === 0 && this.#slots.every((s) => s.inflight.size === 0) &&
      this.#slots.length > 0
    ) {
      this.#idleTimer = setTimeout(() => {
        for (const slot of this.#slots) this.#stop(slot, new ParseCancelledError());
        this.#slots = [];
      }, this.#idleMs);
      Deno.unrefTimer(this.#idleTimer as unknown as number);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL, { type: "module", name: "musicfs-parse" });
    const slot: Slot = { worker, inflight: new Map() };
    worker.onmessage = (e: MessageEvent<ParseResponse>) => {
      const batch = slot.inflight.get(e.data.id);
      if (!batch) return;
      slot.inflight.delete(e.data.id);
      clearTimeout(batch.timer);
      batch.jobs.forEach((j, i) => j.resolve(e.data.results[i]));
      this.parsed += batch.jobs.length;
      this.#dispatch();
    };
    worker.onerror = (e: ErrorEvent) => {
      // Without this the worker's error would be rethrown in the daemon and end it.
      e.preventDefault();
      this.#fail(slot, `parser crashed: ${e.message}`);
    };
    worker.onmessageerror = () => this.#fail(slot, "parser sent an unreadable message");
    this.#slots.push(slot);
    return slot;
  }

  #send(slot: Slot, jobs: Job[]): void {
    const id = this.#nextId++;
    const timer = setTimeout(
      () => this.#fail(slot, "parser hung (no answer in time)"),
      this.#timeoutMs + 2_000 * jobs.length,
    );
    slot.inflight.set(id, { jobs, timer });
    const req: ParseRequest = { id, paths: jobs.map((j) => j.path) };
    slot.worker.postMessage(req);
  }

  /** Replace a dead or hung worker; retry its files alone, or give up on a file already alone. */
  #fail(slot: Slot, reason: string): void {
    if (!this.#slots.includes(slot)) return;
    this.#slots = this.#slots.filter((s) => s !== slot);
    const retry: Job[] = [];
    for (const batch of slot.inflight.values()) {
      clearTimeout(batch.timer);
      for (const j of batch.jobs) {
        if (j.suspect || batch.jobs.length === 1) {
          log.warn("Giving up on {path}: {reason}", { path: j.path, reason });
          j.resolve({ ok: false, reason, transient: true });
          this.parsed++;
        } else {
          j.suspect = true;
          retry.push(j);
        }
      }
    }
    slot.inflight.clear();
    slot.worker.terminate();
    this.#queue.unshift(...retry);
    this.#dispatch();
  }

  #stop(slot: Slot, err: Error): void {
    for (const batch of slot.inflight.values()) {
      clearTimeout(batch.timer);
      for (const j of batch.jobs) j.reject(err);
    }
    slot.inflight.clear();
    slot.worker.terminate();
  }
}
