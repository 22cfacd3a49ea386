/**
 * A background chunk fetcher with a concurrency bound: the mount enqueues the rest of an opened
 * track, then the next track of the album, and this fills the CAS while playback goes on.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import { StoreFullError } from "./errors.ts";

const log = logger("cas", "prefetch");

/** Fetches one chunk from the origin into the cache; should honour `signal`. */
export type FetchChunk = (
  fileKey: string,
  chunkNo: number,
  signal: AbortSignal,
) => Promise<unknown>;

/** Options of {@link Prefetcher}. */
export interface PrefetcherOptions {
  /** Fetches one chunk into the cache (typically origin read + `CasStore.storeChunkFor`). */
  fetchChunk: FetchChunk;
  /** Fetches running at once. Default 2. */
  concurrency?: number;
  /**
   * Waiting chunks beyond this are refused (the oldest work is the most useful: the rest of the
   * track being played). Default 4096.
   */
  maxQueue?: number;
  /** Stops the prefetcher when aborted (daemon shutdown). */
  signal?: AbortSignal;
}

/** Why a {@link Prefetcher} stopped. */
export type PrefetchStopReason = "aborted" | "full" | "stopped";

/** Counters of a {@link Prefetcher}. */
export interface PrefetchStats {
  /** Fetches that resolved. */
  fetched: number;
  /** Fetches that threw (other than the cache being full or an abort). */
  failed: number;
  /** Chunks waiting. */
  queued: number;
  /** Fetches running now. */
  active: number;
}

/**
 * Runs `fetchChunk` for enqueued `(fileKey, chunkNo)` pairs in FIFO order, at most
 * `concurrency` at a time, each pair at most once while it is queued or running. Stops for good
 * on abort of `signal`, on {@link Prefetcher.stop}, and when a fetch throws
 * {@link StoreFullError} (prefetching more would only evict what was just fetched); stopping
 * aborts the fetches in flight and drops the queue.
 */
export class Prefetcher {
  readonly #fetch: FetchChunk;
  readonly #concurrency: number;
  readonly #maxQueue: number;
  readonly #abort = new AbortController();
  readonly #queue: { fileKey: string; chunkNo: number; id: string }[] = [];
  readonly #known = new Set<string>();
  readonly #running = new Set<Promise<void>>();
  readonly #idleWaiters: (() => void)[] = [];
  readonly #unlisten?: () => void;
  #head = 0;
  #fetched = 0;
  #failed = 0;
  #reason: PrefetchStopReason | undefined;

  /** A prefetcher that starts fetching at the first {@link Prefetcher.enqueue}. */
  constructor(opts: PrefetcherOptions) {
    this.#fetch = opts.fetchChunk;
    this.#concurrency = Math.max(1, Math.floor(opts.concurrency ?? 2));
    this.#maxQueue = opts.maxQueue ?? 4096;
    const signal = opts.signal;
    if (signal?.aborted) this.#stop("aborted");
    else if (signal) {
      const onAbort = () => this.#stop("aborted");
      signal.addEventListener("abort", onAbort, { once: true });
      this.#unlisten = () => signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Queue chunks of one file version; pairs already queued or running are skipped. Returns how
   * many were queued (0 once stopped or when the queue is full).
   */
  enqueue(fileKey: string, chunkNos: Iterable<number>): number {
    let n = 0;
    if (this.#reason) return 0;
    for (const chunkNo of chunkNos) {
      if (this.#queue.length - this.#head >= this.#maxQueue) break;
      const id = `${chunkNo}\0${fileKey}`;
      if (this.#known.has(id)) continue;
      this.#known.add(id);
      this.#queue.push({ fileKey, chunkNo, id });
      n++;
      // Start what can start now, so `maxQueue` counts only chunks that are really waiting.
      this.#pump();
    }
    return n;
  }

  /** Stop: abort fetches in flight and drop the queue. */
  stop(): void {
    this.#stop("stopped");
  }

  /** Why the prefetcher stopped, or `undefined` while it runs. */
  get stopReason(): PrefetchStopReason | undefined {
    return this.#reason;
  }

  /** Counters. */
  stats(): PrefetchStats {
    return {
      fetched: this.#fetched,
      failed: this.#failed,
      queued: this.#queue.length - this.#head,
      active: this.#running.size,
    };
  }

  /** Resolves once nothing is queued or running (including after a stop, once fetches end). */
  idle(): Promise<void> {
    if (this.#running.size === 0 && this.#queue.length === this.#head) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (
      !this.#reason && this.#running.size < this.#concurrency && this.#head < this.#queue.length
    ) {
      const item = this.#queue[this.#head++];
      const p: Promise<void> = this.#run(item).finally(() => {
        this.#running.delete(p);
        this.#known.delete(item.id);
        this.#pump();
      });
      this.#running.add(p);
    }
    // Compact the consumed head now and then, so a long-lived queue does not keep every item.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.#running.size === 0 && this.#queue.length === this.#head) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  async #run(item: { fileKey: string; chunkNo: number }): Promise<void> {
    try {
      await this.#fetch(item.fileKey, item.chunkNo, this.#abort.signal);
      this.#fetched++;
    } catch (e) {
      if (this.#reason) return;
      if (e instanceof StoreFullError) {
        log.info("Prefetch stopped: {message}", { message: e.message });
        this.#stop("full");
        return;
      }
      this.#failed++;
      log.debug("Prefetch of chunk {chunkNo} of {fileKey} failed: {error}", {
        ...item,
        error: String(e),
      });
    }
  }

  #stop(reason: PrefetchStopReason): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.#unlisten?.();
    for (const item of this.#queue.slice(this.#head)) this.#known.delete(item.id);
    this.#queue.length = 0;
    this.#head = 0;
    this.#abort.abort(new DOMException(`prefetch ${reason}`, "AbortError"));
    if (this.#running.size === 0) { for (const w of this.#idleWaiters.splice(0)) w(); }
  }
}
