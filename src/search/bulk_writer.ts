/**
 * Bulk indexing off the main thread: large batches of changes (a first scan, a big rescan) go to
 * a worker (./index_worker.ts) that writes them into the index file through a connection of its
 * own and commits each batch; the searching {@link SearchIndex} takes over the counts it answers
 * with. Searches see each batch once the worker committed it.
 *
 * Order and the crash contract: while any batch is out, every change goes the same way (the
 * worker applies them in order); each batch is one transaction, and its counts are committed
 * with it, keeping the stamped generation; only the committer's commit (run with the worker
 * idle, see {@link BulkWriter.whileIdle}) stamps a newer one. A failing worker is stopped and its
 * unanswered batches are applied by the searching index itself, so nothing is lost.
 *
 * @module
 */
import type { TrackRecord } from "../library/types.ts";
import { logger } from "../log/mod.ts";
import type { IndexRequest, IndexResponse } from "./index_worker.ts";
import { packChange, type PackedValue } from "./packed.ts";
import type { SearchIndex } from "./search_index.ts";

const log = logger("search");

/** One change: a track to (re)index, or null to remove the id. */
export type Change = [number, TrackRecord | null];

const WORKER_URL = new URL("./index_worker.ts", import.meta.url);
/** Changes per message; a larger batch is split (a transaction each). */
const MAX_BATCH = 2000;
/** The worker stops after this long without work (its isolate is tens of MB). */
const IDLE_MS = 15_000;

/** Sends batches of changes to the index worker, in order; see the module doc. */
export class BulkWriter {
  #index: SearchIndex;
  #worker: Worker | undefined;
  #seq = 0;
  /** Sent, not yet answered, by seq (Map keeps the order sent). */
  #out = new Map<number, Change[]>();
  /** Held while paused, sent after. */
  #held: Change[][] = [];
  #paused = 0;
  #waiters: (() => void)[] = [];
  /** Batches taken (sent or held) and batches answered: for {@link caughtUp}. */
  #taken = 0;
  #answeredCount = 0;
  #catchUps: { target: number; resolve: () => void }[] = [];
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #broken = false;
  #closed = false;
  #workerUrl: URL;

  /**
   * A writer for `index` (opened at its file, not read-only). `workerUrl` replaces
   * ./index_worker.ts (tests: a failing worker).
   */
  constructor(index: SearchIndex, opts: { workerUrl?: URL } = {}) {
    this.#index = index;
    this.#workerUrl = opts.workerUrl ?? WORKER_URL;
  }

  /** True while changes are out or held: every change must then come here, in order. */
  get busy(): boolean {
    return this.#out.size > 0 || this.#held.length > 0;
  }

  /** False once the worker failed (or the writer was closed): changes then go elsewhere. */
  get usable(): boolean {
    return !this.#broken && !this.#closed;
  }

  /** Changes sent and not yet committed. */
  get pending(): number {
    let n = 0;
    for (const b of this.#out.values()) n += b.length;
    for (const b of this.#held) n += b.length;
    return n;
  }

  /** Send `changes` (applied after everything sent before). */
  send(changes: Change[]): void {
    if (!this.usable) {
      for (const [id, track] of changes) {
        if (track) this.#index.indexFile(track);
        else this.#index.remove(id);
      }
      return;
    }
    if (!this.#index.acceptsWriter) {
      this.#takeBack();
      this.send(changes);
      return;
    }
    for (let i = 0; i < changes.length; i += MAX_BATCH) {
      const part = changes.length > MAX_BATCH ? changes.slice(i, i + MAX_BATCH) : changes;
      this.#taken++;
      if (this.#paused > 0) this.#held.push(part);
      else this.#post(part);
    }
  }

  #post(changes: Change[]): void {
    clearTimeout(this.#idleTimer);
    const worker = this.#worker ??= this.#spawn();
    const seq = ++this.#seq;
    this.#out.set(seq, changes);
    const packed: PackedValue[] = [];
    for (const [id, track] of changes) packChange(packed, id, track);
    const req: IndexRequest = { seq, path: this.#index.path, changes: packed };
    worker.postMessage(req);
  }

  #spawn(): Worker {
    const worker = new Worker(this.#workerUrl, { type: "module", name: "musicfs-search-index" });
    worker.onmessage = (e: MessageEvent<IndexResponse>) => this.#answered(e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#fail(e.message || "the worker failed");
    };
    return worker;
  }

  #answered(res: IndexResponse): void {
    if (!this.#out.has(res.seq)) return;
    if (!res.ok) {
      this.#fail(res.error);
      return;
    }
    if (!this.#index.acceptsWriter) {
      // The index found damage and is rebuilding (or replaying a failed write): the worker's
      // file is on its way out. The index takes every change from here, in order.
      this.#takeBack();
      return;
    }
    this.#out.delete(res.seq);
    this.#index.applyWriterState(res);
    this.#answeredCount++;
    this.#catchUps = this.#catchUps.filter((c) => {
      if (c.target > this.#answeredCount) return true;
      c.resolve();
      return false;
    });
    if (this.#out.size === 0) this.#settled();
  }

  #settled(): void {
    for (const w of this.#waiters.splice(0)) w();
    if (!this.busy) { for (const c of this.#catchUps.splice(0)) c.resolve(); }
    clearTimeout(this.#idleTimer);
    if (this.#worker && !this.busy) {
      this.#idleTimer = setTimeout(() => this.#stopWorker(), IDLE_MS);
      Deno.unrefTimer(this.#idleTimer);
    }
  }

  /** The worker failed: stop it and apply what it did not answer here. */
  #fail(reason: string): void {
    if (this.#broken) return;
    const n = this.pending;
    log.error(
      "Search indexing worker failed ({reason}); indexing {n} changes on the main thread instead",
      { reason, n },
    );
    this.#takeBack();
  }

  /**
   * Stop the worker for good and apply what it has not answered to the index itself (applying
   * a change twice does no harm: the worker may have committed it and died before answering).
   */
  #takeBack(): void {
    if (this.#broken) return;
    this.#broken = true;
    const undone = [...this.#out.values(), ...this.#held];
    this.#out.clear();
    this.#held = [];
    this.#stopWorker(true);
    if (this.#index.acceptsWriter) {
      try {
        // What the worker committed is in the file: start from there.
        this.#index.reloadCounts({ words: true });
      } catch (e) {
        log.error("Cannot reread search index counts: {error}", { error: String(e) });
      }
    }
    for (const batch of undone) {
      for (const [id, track] of batch) {
        if (track) this.#index.indexFile(track);
        else this.#index.remove(id);
      }
    }
    this.#settled();
  }

  #stopWorker(now = false): void {
    const w = this.#worker;
    this.#worker = undefined;
    clearTimeout(this.#idleTimer);
    if (!w) return;
    if (now) w.terminate();
    else w.postMessage("close");
  }

  /**
   * Resolves once every change taken so far is in the index (committed by the worker, or taken
   * back): a search then sees them. Later changes are not waited for.
   */
  caughtUp(): Promise<void> {
    if (!this.busy || this.#answeredCount >= this.#taken) return Promise.resolve();
    return new Promise((resolve) => this.#catchUps.push({ target: this.#taken, resolve }));
  }

  /** Resolves once nothing sent is unanswered. */
  drained(): Promise<void> {
    if (this.#out.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Run `fn` with the worker idle (every batch sent answered, new ones held until `fn` is over):
   * for the searching index's own commit, which must not interleave with the worker's.
   */
  async whileIdle<T>(fn: () => Promise<T>): Promise<T> {
    this.#paused++;
    try {
      await this.drained();
      return await fn();
    } finally {
      if (--this.#paused === 0 && this.usable) {
        for (const batch of this.#held.splice(0)) this.#post(batch);
      }
    }
  }

  /** Stop the worker; changes not yet committed are dropped (commit first). */
  close(): void {
    this.#closed = true;
    this.#out.clear();
    this.#held = [];
    this.#stopWorker(true);
    for (const w of this.#waiters.splice(0)) w();
    for (const c of this.#catchUps.splice(0)) c.resolve();
  }
}
