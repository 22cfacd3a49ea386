/**
 * The search index of the library: minisearch in memory, persisted as an atomic snapshot
 * (SPEC.md section 4.2). Only committed documents survive a crash.
 */
import type { TrackRecord } from "../library/types.ts";
import { logger } from "../log/mod.ts";
import { createEngine, type Engine } from "./engine.ts";
import { SearchCommitError, SearchSnapshotCorruptError, SearchSnapshotError } from "./errors.ts";
import { executeQuery, type QueryOptions, type SearchResult } from "./query.ts";
import { loadEngine, readSnapshot, removeStaleTemps, writeSnapshot } from "./snapshot.ts";
import { toDocument } from "./text.ts";

const log = logger("search");

/** Results returned when no limit is given. */
export const DEFAULT_LIMIT = 100;
// Vacuum (drop postings of replaced and removed documents) before a commit once this share
// of the documents, or this many, were discarded since the last vacuum.
const VACUUM_DIRT_FACTOR = 0.1;
const VACUUM_DIRT_COUNT = 10_000;
const INDEX_SLICE = 1000;

/** Records to (re)build an index from; async sources (a database cursor) are fine. */
export type TrackSource = Iterable<TrackRecord> | AsyncIterable<TrackRecord>;

/** Options of {@link SearchIndex.open}. */
export interface OpenOptions {
  /** Refuse (as stale) a snapshot reflecting another database generation. */
  generation?: number;
}

/** Options of {@link SearchIndex.openWithRecovery}. */
export interface RecoveryOptions {
  /** Where the documents come from when the snapshot is unusable (SQLite, normally). */
  rebuildFrom?: () => TrackSource | Promise<TrackSource>;
  /**
   * The database generation the index must reflect; a snapshot of another generation is
   * stale and rebuilt. Also the generation stamped on the rebuilt snapshot.
   */
  generation?: number;
  /**
   * Never write: rebuild in memory only, leave temp files alone, and refuse `commit`. For
   * `musicfs search` without a daemon, next to a daemon that may be starting.
   */
  readOnly?: boolean;
}

/** What {@link SearchIndex.commit} did. */
export interface CommitResult {
  /** False when nothing had changed since the last commit, so nothing was written. */
  written: boolean;
  /** Documents in the snapshot. */
  documentCount: number;
  /** The database generation stamped on the snapshot. */
  generation: number;
  /** Size of the snapshot file (0 when not written). */
  bytes: number;
  /** Wall time of the commit, milliseconds. */
  ms: number;
}

/** Options of {@link SearchIndex.commit}. */
export interface CommitOptions {
  /** Write even when nothing changed. */
  force?: boolean;
}

/** Raised when `rebuildFrom` fails: the index cannot be rebuilt from its source. */
export class SearchRebuildError extends Error {
  /** See Error. */
  constructor(reason: string, opts: { cause?: unknown } = {}) {
    super(`Cannot rebuild search index: ${reason}`, { cause: opts.cause });
    this.name = "SearchRebuildError";
  }
}

function checkGeneration(generation: number): number {
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw new RangeError(`Search generation must be a non-negative integer, got ${generation}`);
  }
  return generation;
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/**
 * Full-text index of tracks. Searches return track ids with scores; callers map ids to paths.
 *
 * While a commit streams the snapshot, `indexFile` and `remove` are queued and applied when it
 * ends, so a snapshot is always one consistent state; removals are hidden from results at once,
 * new and changed documents appear when the commit finishes.
 */
export class SearchIndex {
  /** The snapshot file this index commits to. */
  readonly path: string;
  #ms: Engine;
  #generation: number;
  #changes = 0;
  #committedChanges = 0;
  #onDisk: boolean;
  #queued: Map<number, TrackRecord | null> | undefined;
  /** Queued removals, hidden from results until applied. */
  #hiddenCount = 0;
  #readOnly = false;
  #commits: Promise<unknown> = Promise.resolve();

  private constructor(path: string, ms: Engine, generation: number, onDisk: boolean) {
    this.path = path;
    this.#ms = ms;
    this.#generation = generation;
    this.#onDisk = onDisk;
  }

  /** An empty index that will commit to `path` (nothing is written until `commit`). */
  static create(path: string, opts: OpenOptions = {}): SearchIndex {
    return new SearchIndex(path, createEngine(), checkGeneration(opts.generation ?? 0), false);
  }

  /**
   * Load the snapshot at `path`. Throws a {@link SearchSnapshotError} subclass when it is
   * missing, damaged, of another format version, or (with `generation`) stale.
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<SearchIndex> {
    const file = await readSnapshot(path, opts.generation);
    const ms = await loadEngine(path, file);
    return new SearchIndex(path, ms, file.header.generation, true);
  }

  /**
   * Load the snapshot at `path`, or rebuild the index when the snapshot is missing, damaged,
   * of another version or stale: from `rebuildFrom` when given, else empty. A rebuild is logged
   * as a WARN with the document counts and committed at once. Snapshot problems never throw;
   * a failing `rebuildFrom` does ({@link SearchRebuildError}).
   */
  static async openWithRecovery(path: string, opts: RecoveryOptions = {}): Promise<SearchIndex> {
    if (opts.generation !== undefined) checkGeneration(opts.generation);
    const readOnly = opts.readOnly ?? false;
    if (!readOnly) await removeStaleTemps(path);
    let problem: SearchSnapshotError;
    try {
      const index = await SearchIndex.open(path, { generation: opts.generation });
      index.#readOnly = readOnly;
      return index;
    } catch (e) {
      problem = e instanceof SearchSnapshotError ? e : new SearchSnapshotCorruptError(
        "unreadable",
        path,
        e instanceof Error ? e.message : String(e),
        { cause: e },
      );
    }
    const index = SearchIndex.create(path, { generation: opts.generation });
    index.#readOnly = readOnly;
    if (opts.rebuildFrom) {
      try {
        await index.indexAll(await opts.rebuildFrom());
      } catch (e) {
        throw new SearchRebuildError(e instanceof Error ? e.message : String(e), { cause: e });
      }
    }
    const reason = problem.reason;
    // A first start (no snapshot, nothing to index) is routine, not a warning.
    const routine = problem.problem === "missing" && index.size === 0;
    const fields = {
      reason,
      problem: problem.problem,
      before: problem.documentCount ?? 0,
      after: index.size,
      path,
      readOnly,
    };
    const message = "Search snapshot {reason}; rebuilt: {before} -> {after} documents";
    if (routine) log.info(message, fields);
    else log.warn(message, fields);
    if (readOnly) return index;
    try {
      await index.commit(undefined, { force: true });
    } catch (e) {
      // Serving from memory beats not serving: the index stays dirty, so the committer retries.
      log.error("Cannot commit rebuilt search index: {error}", { error: String(e), path });
    }
    return index;
  }

  /** Documents in the index (changes queued during a commit are not counted yet). */
  get size(): number {
    return this.#ms.documentCount;
  }

  /** True when the snapshot on disk does not reflect every change made to this index. */
  get dirty(): boolean {
    return !this.#onDisk || this.#changes !== this.#committedChanges;
  }

  /** The database generation of the last snapshot loaded or committed (0 for a new index). */
  get generation(): number {
    return this.#generation;
  }

  /** True when opened with `readOnly`: `commit` rejects. */
  get readOnly(): boolean {
    return this.#readOnly;
  }

  /** True while a commit is writing. */
  get committing(): boolean {
    return this.#queued !== undefined;
  }

  /** Whether track `id` is indexed. */
  has(id: number): boolean {
    const queued = this.#queued?.get(id);
    if (queued !== undefined) return queued !== null;
    return this.#ms.has(id);
  }

  /** Add `track`, or replace the indexed version of the same id. */
  indexFile(track: TrackRecord): void {
    this.#changes++;
    if (this.#queued) {
      if (this.#queued.get(track.id) === null) this.#hiddenCount--;
      this.#queued.set(track.id, track);
      return;
    }
    this.#apply(track.id, track);
  }

  /** Remove track `id`; unknown ids are ignored. */
  remove(id: number): void {
    if (this.#queued) {
      this.#changes++;
      if (this.#queued.get(id) !== null) this.#hiddenCount++;
      this.#queued.set(id, null);
      return;
    }
    if (this.#ms.has(id)) {
      this.#changes++;
      this.#apply(id, null);
    }
  }

  /**
   * Index every record of `source`, yielding to the event loop every thousand records so a
   * rebuild does not stall other work. Resolves to the number of records indexed.
   */
  async indexAll(source: TrackSource): Promise<number> {
    let n = 0;
    for await (const track of source) {
      this.indexFile(track);
      if (++n % INDEX_SLICE === 0) await tick();
    }
    return n;
  }

  #apply(id: number, track: TrackRecord | null): void {
    if (this.#ms.has(id)) this.#ms.discard(id);
    if (track) this.#ms.add(toDocument(track));
  }

  /**
   * The best `limit` matches of `query`, best first. Every word must match, as a whole word, a
   * word prefix (2+ characters) or with a typo (1 from 4 characters, 2 from 8). Any string is
   * a valid query: one without words (empty, `/`, quotes) has no matches; queries longer than
   * `maxQueryBytes` (1024) are cut.
   */
  search(query: string, limit: number = DEFAULT_LIMIT, opts: QueryOptions = {}): SearchResult[] {
    const queued = this.#queued;
    if (!queued || this.#hiddenCount === 0) return executeQuery(this.#ms, query, limit, opts);
    return executeQuery(this.#ms, query, limit + this.#hiddenCount, opts)
      .filter((r) => queued.get(r.id) !== null).slice(0, Math.max(0, limit));
  }

  /**
   * Write the snapshot atomically, stamped with `generation` (default: the current one), the
   * database generation whose changes the index holds. Commits run one at a time; a commit
   * with nothing changed (same generation, no change) writes nothing unless `force`.
   * Rejects with {@link SearchCommitError} when writing fails; the old snapshot is kept.
   */
  commit(generation?: number, opts: CommitOptions = {}): Promise<CommitResult> {
    if (generation !== undefined) checkGeneration(generation);
    if (this.#readOnly) {
      return Promise.reject(new SearchCommitError(this.path, "the index was opened read-only"));
    }
    const run = () => this.#commit(generation ?? this.#generation, opts.force ?? false);
    const result = this.#commits.then(run, run);
    this.#commits = result.catch(() => {});
    return result;
  }

  async #commit(generation: number, force: boolean): Promise<CommitResult> {
    const start = performance.now();
    if (!force && !this.dirty && generation === this.#generation) {
      return { written: false, documentCount: this.size, generation, bytes: 0, ms: 0 };
    }
    const mark = this.#changes;
    this.#queued = new Map();
    try {
      const ms = this.#ms;
      if (ms.dirtCount >= VACUUM_DIRT_COUNT || ms.dirtFactor >= VACUUM_DIRT_FACTOR) {
        await ms.vacuum({ batchSize: 5000, batchWait: 0 });
      }
      const written = await writeSnapshot(this.path, ms, generation);
      this.#committedChanges = mark;
      this.#generation = generation;
      this.#onDisk = true;
      return { written: true, ...written, ms: performance.now() - start };
    } finally {
      const queued = this.#queued;
      this.#queued = undefined;
      this.#hiddenCount = 0;
      for (const [id, track] of queued) this.#apply(id, track);
    }
  }
}
