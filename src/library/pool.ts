/**
 * The pool of parse workers (Deno Web Workers running parse_worker.ts). Files are queued one by
 * one and sent in small batches, up to sixteen in flight per worker (about a thousand files on a
 * first scan) so none idles while the daemon's thread is busy committing a batch and updating
 * the tree and search (`starvedMs` tells when they do); each file is answered as soon as it is
 * read.
 *
 * A worker that dies, or makes no progress for `timeoutMs` while it has work (a file on a stalled
 * network mount, a FIFO, a parser stuck in a loop), is terminated and replaced. The file it was
 * reading is retried alone on a fresh worker; if it kills or hangs that one too, it is answered
 * with a (transient) failure instead of being retried forever. The files queued behind it are
 * simply sent again. Workers start on first use and stop after a while without work.
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
  /** A worker with work and no answer for this long counts as hung (default 20 s). */
  timeoutMs?: number;
  /** Files per message (default 64). */
  maxBatch?: number;
  /** Batches in flight per worker (default 16). */
  inflight?: number;
  /**
   * Files each worker has the kernel read ahead for its parser (posix_fadvise), at most this
   * many being opened at once (default 16; 0 for none). Each holds a file descriptor until the
   * hint is given: a process with few to spare (a low `RLIMIT_NOFILE`) sets 0.
   */
  readAhead?: number;
}

/** Rejects the {@link ParserPool.parse} calls dropped by `clear` or `close`. */
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
  /** Was unanswered when its worker died: now sent alone. */
  suspect: boolean;
  done: boolean;
}

interface Slot {
  worker: Worker;
  /** Batches sent and not fully answered, by request id. */
  inflight: Map<number, Job[]>;
  watchdog: ReturnType<typeof setTimeout> | undefined;
  /** The worker's module has loaded (the watchdog only runs from then on). */
  ready: boolean;
}

/**
 * The jobs waiting for a worker: a FIFO whose takes from the front cost O(taken), not O(queued)
 * as `Array.splice(0, n)` does. A first scan queues every file of the library at once (the walk
 * outruns the parsers): at a million files the splices cost 2.4 s of the daemon's thread here.
 */
class JobQueue {
  #items: Job[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  /** The `i`-th job from the front. */
  at(i: number): Job {
    return this.#items[this.#head + i];
  }

  push(job: Job): void {
    this.#items.push(job);
  }

  /** Remove and return up to `n` jobs from the front. */
  take(n: number): Job[] {
    const out = this.#items.slice(this.#head, this.#head + n);
    this.#head += out.length;
    // Drop the taken prefix once it is most of the array: amortised O(1) per job.
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return out;
  }

  /** Put `jobs` back in front (a dead worker's files; rare). */
  unshift(jobs: Job[]): void {
    if (jobs.length === 0) return;
    this.#items = [...jobs, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }

  /** Empty the queue; returns what it held. */
  drain(): Job[] {
    const out = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return out;
  }
}

const WORKER_URL = new URL("./parse_worker.ts", import.meta.url);

/** Consecutive hung or crashed workers after which parsing counts as stalled. */
const STALL_STREAK = 3;
const STALL_MS = 30_000;
const STALLED: TagResult = {
  ok: false,
  reason:
    "not read: parsing is stalled (several parser workers hung in a row; stalled filesystem?)",
  transient: true,
};

function runsSuspect(slot: Slot): boolean {
  for (const jobs of slot.inflight.values()) {
    if (jobs.some((j) => j.suspect && !j.done)) return true;
  }
  return false;
}

/** A pool of tag-parsing workers. */
export class ParserPool {
  /** Number of workers when busy. */
  readonly size: number;
  readonly #idleMs: number;
  readonly #timeoutMs: number;
  readonly #maxBatch: number;
  readonly #inflight: number;
  readonly #readAhead: number;
  readonly #queue = new JobQueue();
  #slots: Slot[] = [];
  #nextId = 1;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #parsed = 0;
  #parseMs = 0;
  #starvedMs = 0;
  /** When work last arrived at an idle pool (a worker's wait before that is not starvation). */
  #workSince = 0;
  #idle = true;
  #workersStarted = 0;
  /** Workers hung or crashed since the last file answered. */
  #failStreak = 0;
  /** Until when parsing is considered stalled (ms since the epoch), after a run of hung workers. */
  #stalledUntil = 0;

  /** Creates the pool; no worker starts before the first {@link parse}. */
  constructor(options: ParserPoolOptions = {}) {
    this.size = Math.max(1, options.size ?? navigator.hardwareConcurrency ?? 2);
    this.#idleMs = options.idleMs ?? 30_000;
    this.#timeoutMs = options.timeoutMs ?? 20_000;
    this.#maxBatch = options.maxBatch ?? 64;
    this.#inflight = Math.max(1, options.inflight ?? 16);
    this.#readAhead = Math.max(0, options.readAhead ?? 16);
  }

  /** Files answered since the pool was created (any outcome). */
  get parsed(): number {
    return this.#parsed;
  }

  /**
   * Milliseconds the workers spent reading files since the pool was created, summed over the
   * workers (the scan's stage figures; divided by {@link size} it bounds the parse wall time).
   */
  get parseMs(): number {
    return this.#parseMs;
  }

  /**
   * Milliseconds workers sat without work between batches (summed over the workers): time the
   * feeding thread was too busy, or had nothing to send.
   */
  get starvedMs(): number {
    return this.#starvedMs;
  }

  /** Workers started since the pool was created (replacements included). */
  get workersStarted(): number {
    return this.#workersStarted;
  }

  /** Files waiting for a worker or being parsed. */
  get pending(): number {
    let n = this.#queue.length;
    for (const s of this.#slots) {
      for (const b of s.inflight.values()) n += b.filter((j) => !j.done).length;
    }
    return n;
  }

  /**
   * Read the tags of the file at `path` (absolute) in a worker. While parsing is stalled (several
   * workers in a row hung, as on a dead network mount), files are answered at once with a
   * transient failure rather than costing a worker (and its blocked thread) each.
   */
  parse(path: string): Promise<TagResult> {
    if (this.#closed) return Promise.reject(new ParseCancelledError("Parser pool is closed"));
    if (Date.now() < this.#stalledUntil) return Promise.resolve(STALLED);
    if (this.#idle) {
      this.#idle = false;
      this.#workSince = performance.now();
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ path, resolve, reject, suspect: false, done: false });
      this.#dispatch();
    });
  }

  /** Drop the queued files (their promises reject with {@link ParseCancelledError}). */
  clear(): void {
    const dropped = this.#queue.drain();
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
      const suspect = this.#queue.at(0).suspect;
      // A suspect goes alone to an idle worker, and nothing queues behind it there.
      const slot = this.#slots.find((s) => s.inflight.size === 0) ??
        (this.#slots.length < this.size ? this.#spawn() : undefined) ??
        (suspect
          ? undefined
          : this.#slots.find((s) => s.inflight.size < this.#inflight && !runsSuspect(s)));
      if (!slot) break;
      let jobs: Job[];
      if (suspect) {
        jobs = this.#queue.take(1);
      } else {
        // Small batches while the queue is short keep every worker busy; larger ones amortise
        // the message cost when it is long.
        const n = Math.max(
          1,
          Math.min(this.#maxBatch, Math.ceil(this.#queue.length / (this.size * this.#inflight))),
        );
        let end = 0;
        while (end < n && end < this.#queue.length && !this.#queue.at(end).suspect) end++;
        jobs = this.#queue.take(end);
      }
      this.#send(slot, jobs);
    }
    if (
      this.#queue.length === 0 && this.#slots.length > 0 &&
      this.#slots.every((s) => s.inflight.size === 0)
    ) {
      this.#idle = true;
      this.#idleTimer = setTimeout(() => {
        for (const slot of this.#slots) this.#stop(slot, new ParseCancelledError());
        this.#slots = [];
      }, this.#idleMs);
      Deno.unrefTimer(this.#idleTimer as unknown as number);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL, { type: "module", name: "musicfs-parse" });
    this.#workersStarted++;
    const slot: Slot = { worker, inflight: new Map(), watchdog: undefined, ready: false };
    worker.onmessage = (e: MessageEvent<ParseResponse>) => {
      const m = e.data;
      if ("ready" in m) {
        slot.ready = true;
        this.#arm(slot);
        return;
      }
      const jobs = slot.inflight.get(m.id);
      if (!jobs) return;
      this.#failStreak = 0;
      this.#parseMs += m.ms;
      if (m.idleMs > 0) {
        this.#starvedMs += Math.min(m.idleMs, performance.now() - this.#workSince);
      }
      m.results.forEach((result, i) => {
        const job = jobs[m.from + i];
        if (!job || job.done) return;
        job.done = true;
        this.#parsed++;
        job.resolve(result);
      });
      if (m.from + m.results.length >= jobs.length) slot.inflight.delete(m.id);
      this.#arm(slot);
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

  /** (Re)start the slot's hang watchdog while it has work; stop it when it has none. */
  #arm(slot: Slot): void {
    clearTimeout(slot.watchdog);
    slot.watchdog = undefined;
    if (slot.inflight.size === 0 || !slot.ready) return;
    slot.watchdog = setTimeout(
      () =>
        this.#fail(slot, `parser hung (no progress in ${Math.round(this.#timeoutMs / 1000)} s)`),
      this.#timeoutMs,
    );
  }

  #send(slot: Slot, jobs: Job[]): void {
    const id = this.#nextId++;
    const wasIdle = slot.inflight.size === 0;
    slot.inflight.set(id, jobs);
    if (wasIdle) this.#arm(slot);
    const req: ParseRequest = { id, paths: jobs.map((j) => j.path), readAhead: this.#readAhead };
    slot.worker.postMessage(req);
  }

  /** Replace a dead or hung worker; retry its files alone, or give up on a file already alone. */
  #fail(slot: Slot, reason: string): void {
    if (!this.#slots.includes(slot)) return;
    this.#slots = this.#slots.filter((s) => s !== slot);
    clearTimeout(slot.watchdog);
    slot.worker.terminate();
    // The worker reads its batches in order, so the first unanswered file is the culprit and
    // the files after it were never started.
    const open = [...slot.inflight.values()].flat().filter((j) => !j.done);
    const retry: Job[] = [];
    open.forEach((j, i) => {
      if (i > 0) retry.push(j);
      else if (j.suspect) {
        log.warn("Giving up on {path}: {reason}", { path: j.path, reason });
        j.done = true;
        this.#parsed++;
        j.resolve({ ok: false, reason, transient: true });
      } else {
        j.suspect = true;
        retry.push(j);
      }
    });
    slot.inflight.clear();
    this.#queue.unshift(retry);
    if (++this.#failStreak >= STALL_STREAK) {
      log.error(
        "Parsing is stalled: {n} parser workers hung or crashed in a row; skipping files for {s} s",
        {
          n: this.#failStreak,
          s: STALL_MS / 1000,
        },
      );
      this.#stalledUntil = Date.now() + STALL_MS;
      this.#failStreak = 0;
      const skipped = this.#queue.drain();
      for (const j of skipped) {
        j.done = true;
        this.#parsed++;
        j.resolve(STALLED);
      }
    }
    this.#dispatch();
  }

  #stop(slot: Slot, err: Error): void {
    clearTimeout(slot.watchdog);
    for (const jobs of slot.inflight.values()) {
      for (const j of jobs) if (!j.done) j.reject(err);
    }
    slot.inflight.clear();
    slot.worker.terminate();
  }
}
