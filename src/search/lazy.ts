/**
 * The index as the daemon holds it at startup: the filesystem serves at once while the
 * index opens (or rebuilds) in the background; searches wait for it, bounded.
 */
import type { TrackRecord } from "../library/types.ts";
import { logger } from "../log/mod.ts";
import { BulkWriter, type Change } from "./bulk_writer.ts";
import { SearchNotReadyError } from "./errors.ts";
import type { QueryOptions, SearchResult } from "./query.ts";
import {
  type CommitOptions,
  type CommitResult,
  DEFAULT_LIMIT,
  type RecoveryOptions,
  SearchIndex,
} from "./search_index.ts";

const log = logger("search");

/**
 * Batches of at least this many changes are indexed by a worker (./bulk_writer.ts): below it,
 * the worker's round trip costs more than it saves the main thread.
 */
export const BULK_MIN_CHANGES = 64;

/** How long a search waits for the index by default, milliseconds. */
export const DEFAULT_READY_TIMEOUT_MS = 2000;

/** Where a {@link LazySearch} is. */
export type LoadState = "idle" | "loading" | "ready" | "failed";

/** Options of {@link LazySearch.search}. */
export interface LazySearchOptions extends QueryOptions {
  /** Wait at most this long for the index to load (default 2000 ms; 0: do not wait). */
  timeoutMs?: number;
}

/**
 * A {@link SearchIndex} that loads in the background. `indexFile` and `remove` work before the
 * load finishes: they are queued and applied once it does, so the scanner and watcher never
 * wait for search.
 */
export class LazySearch {
  #load: () => Promise<SearchIndex>;
  #state: LoadState = "idle";
  #index: SearchIndex | undefined;
  #error: unknown;
  #loading: Promise<SearchIndex> | undefined;
  #queued = new Map<number, TrackRecord | null>();
  #bulk: BulkWriter | undefined;
  #useWorker: boolean;

  /**
   * `load` produces the index, normally `SearchIndex.openWithRecovery(...)`. With `bulkWorker`
   * false, large batches are indexed on this thread too.
   */
  constructor(load: () => Promise<SearchIndex>, opts: { bulkWorker?: boolean } = {}) {
    this.#load = load;
    this.#useWorker = opts.bulkWorker ?? true;
  }

  /** A LazySearch loading `path` with {@link SearchIndex.openWithRecovery}. */
  static fromSnapshot(
    path: string,
    opts: RecoveryOptions & { bulkWorker?: boolean } = {},
  ): LazySearch {
    return new LazySearch(() => SearchIndex.openWithRecovery(path, opts), opts);
  }

  /** Where the load is. */
  get state(): LoadState {
    return this.#state;
  }

  /** The loaded index, once ready. */
  get index(): SearchIndex | undefined {
    return this.#index;
  }

  /** Why the last load failed, when `state` is `failed`. */
  get error(): unknown {
    return this.#error;
  }

  /**
   * Start loading in the background and return at once. Does nothing while loading or once
   * ready; after a failed load, tries again.
   */
  startLoading(): void {
    if (this.#state === "loading" || this.#state === "ready") return;
    this.#state = "loading";
    this.#error = undefined;
    const p = (async () => {
      // A microtask boundary first: a synchronously throwing loader still fails the promise.
      await null;
      return await this.#load();
    })();
    const started = performance.now();
    this.#loading = p.then((index) => {
      const queued = this.#queued.size;
      for (const [id, track] of this.#queued) {
        if (track) index.indexFile(track);
        else index.remove(id);
      }
      this.#queued.clear();
      this.#index = index;
      this.#state = "ready";
      log.debug("Search index ready in {ms} ms ({documents} documents, {queued} queued changes)", {
        ms: Math.round(performance.now() - started),
        documents: index.size,
        queued,
      });
      return index;
    }, (e) => {
      this.#error = e;
      this.#state = "failed";
      throw e;
    });
    // Failures are reported to whoever waits (ready/search), not as unhandled rejections.
    this.#loading.catch(() => {});
  }

  /**
   * The index, waiting up to `timeoutMs` for the load (starting it if needed). Throws
   * {@link SearchNotReadyError} when the wait runs out or the load failed.
   */
  async ready(timeoutMs: number = DEFAULT_READY_TIMEOUT_MS): Promise<SearchIndex> {
    if (this.#index) return this.#index;
    this.startLoading();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(0, timeoutMs));
    });
    try {
      const winner = await Promise.race([this.#loading!, timeout]);
      if (winner !== "timeout") return winner;
      throw new SearchNotReadyError("loading", `still loading after ${timeoutMs} ms`);
    } catch (e) {
      if (e instanceof SearchNotReadyError) throw e;
      const reason = e instanceof Error ? e.message : String(e);
      throw new SearchNotReadyError("failed", `loading failed (${reason})`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Search once the index is ready; see {@link SearchIndex.search} and {@link ready}. */
  async search(
    query: string,
    limit: number = DEFAULT_LIMIT,
    opts: LazySearchOptions = {},
  ): Promise<SearchResult[]> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const index = await this.ready(timeoutMs);
    // Everything handed over before the search is searched (a scan done is a scan searchable);
    // a stuck worker fails within its busy timeout and hands back, so this wait is short.
    if (this.#bulk?.busy) await withTimeout(this.#bulk.caughtUp(), timeoutMs);
    return index.search(query, limit, opts);
  }

  /** Index `track` now, or once loaded. */
  indexFile(track: TrackRecord): void {
    if (!this.#index) this.#queued.set(track.id, track);
    else if (this.#bulk?.busy) this.#bulk.send([[track.id, track]]);
    else this.#index.indexFile(track);
  }

  /** Remove track `id` now, or once loaded. */
  remove(id: number): void {
    if (!this.#index) this.#queued.set(id, null);
    else if (this.#bulk?.busy) this.#bulk.send([[id, null]]);
    else this.#index.remove(id);
  }

  /**
   * Index `tracks` and remove `removedIds`, as one batch (a committed library batch). Large
   * batches are indexed by a worker off this thread (see ./bulk_writer.ts); searches see them
   * once it committed them, within milliseconds.
   */
  update(tracks: readonly TrackRecord[], removedIds: readonly number[] = []): void {
    const index = this.#index;
    if (!index) {
      for (const t of tracks) this.#queued.set(t.id, t);
      for (const id of removedIds) this.#queued.set(id, null);
      return;
    }
    const n = tracks.length + removedIds.length;
    if (
      this.#bulk?.busy ||
      (this.#useWorker && n >= BULK_MIN_CHANGES && (this.#bulk?.usable ?? true) &&
        index.releaseWrites())
    ) {
      const changes: Change[] = tracks.map((t) => [t.id, t]);
      for (const id of removedIds) changes.push([id, null]);
      (this.#bulk ??= new BulkWriter(index)).send(changes);
      return;
    }
    for (const t of tracks) index.indexFile(t);
    for (const id of removedIds) index.remove(id);
  }

  /** Changes sent to the indexing worker and not yet committed by it. */
  get pendingBulk(): number {
    return this.#bulk?.pending ?? 0;
  }

  /** Resolves once the indexing worker committed everything sent to it (searches see it). */
  async settled(): Promise<void> {
    await this.#bulk?.drained();
  }

  /** True when the loaded index has changes not yet committed (false before it loads). */
  get dirty(): boolean {
    return (this.#index?.dirty ?? false) || (this.#bulk?.busy ?? false);
  }

  /** The loaded index's generation; undefined before the load (nothing to commit yet). */
  get generation(): number | undefined {
    return this.#index?.generation;
  }

  /**
   * Commit the loaded index. Before the load there is nothing to commit: the snapshot on disk
   * is still the one being loaded, and queued changes are rebuilt from the database if lost.
   */
  async commit(generation?: number, opts: CommitOptions = {}): Promise<CommitResult | undefined> {
    const index = this.#index;
    if (!index) return undefined;
    // Stamping `generation` claims every change before it: the worker's must be committed.
    if (this.#bulk) return await this.#bulk.whileIdle(() => index.commit(generation, opts));
    return await index.commit(generation, opts);
  }

  /** Stop the loaded index's background check (see {@link SearchIndex.stopChecking}). */
  stopChecking(): void {
    this.#index?.stopChecking();
  }

  /** Close the loaded index (commit first: uncommitted changes are dropped). */
  close(): void {
    this.#bulk?.close();
    this.#index?.close();
  }
}

/** `p`, or nothing once `ms` have passed. */
async function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, ms))))]);
  } finally {
    clearTimeout(timer);
  }
}
