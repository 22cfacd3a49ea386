/**
 * Keeping library.db's picture of the tree (`tree_entries`, see fs/rows.ts) in step with the
 * tree in memory, so that the next start serves at once from it (fs/stored.ts):
 *
 * - after each library batch, the entries it changed are stored with the tree's name
 *   assignments and a stamp (the library generation, the layout and libraries, the tree's
 *   counts), in one transaction;
 * - when the rows are not a picture of the tree (a start that built the tree from the tracks,
 *   a failed write), the whole tree is written again once the scan is idle, a few thousand
 *   rows a transaction so that requests are served in between; the stamp comes last, so a
 *   crash or a change midway leaves rows that the next start does not use.
 *
 * @module
 */
import type { VirtualTree } from "../fs/mod.ts";
import type { Database, PackedTreeRows } from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import { releaseFreeMemory } from "../sys/mod.ts";
import { collectGarbage } from "../util/mod.ts";

const log = logger("daemon");

/** Rows written per transaction of a full dump: a few ms each. */
const DUMP_CHUNK = 5000;
/** Changed rows past which a batch makes the stored rows wait for a dump instead. */
const BIG_BATCH = 5000;

/** How long a release of memory waits for a moment without requests, at most. */
const RELEASE_WAIT_MS = 30_000;

/**
 * Give what the heaps freed back to the system: a full GC when the heap is small (the rows
 * serve; the tree in memory is left to V8), then glibc's trim.
 */
function releaseMemory(smallHeap: boolean): void {
  if (smallHeap) collectGarbage();
  releaseFreeMemory();
}

/** The name assignments the tree settles, as rows (library.db). */
type NameChanges = ReturnType<VirtualTree["takeNameChanges"]>;

/**
 * What the stored rows must have been laid out for to be served: the layout and the
 * libraries (by root path) of this mount.
 */
export function treeShape(layout: string | undefined, roots: readonly string[]): string {
  return JSON.stringify({ layout: layout ?? "", roots: [...roots].sort() });
}

/** The inputs of a {@link TreeRowsKeeper}. */
export interface TreeRowsKeeperOptions {
  db: Database;
  tree: Pick<
    VirtualTree,
    "takeRows" | "rowCursor" | "stats" | "recordRows" | "loaded" | "unload" | "idleMs"
  >;
  /** See {@link treeShape}. */
  shape: string;
  /**
   * The generation of the stored rows when they are a picture of the tree now (a start served
   * from them); undefined when they are not.
   */
  valid: number | undefined;
  /** No scan running: a full dump may start. */
  idle: () => boolean;
  /** Gives freed memory back (tests watch it); `smallHeap`: the rows serve. */
  release?: (smallHeap: boolean) => void;
}

/** Stores the tree's rows and name assignments after each batch (the change hub's `names`). */
export class TreeRowsKeeper {
  readonly #o: TreeRowsKeeperOptions;
  #valid: boolean;
  /** The generation the stored rows picture, while {@link valid}. */
  #generation = -1;
  #version = 0;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  /** Quiet ticks since the last activity (a scan, a batch, a build, a dump). */
  #quiet = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** When stopping: until when a dump may go on. */
  #deadline = 0;
  #dumping: Promise<void> | undefined;
  /** Rows the dump under way has written. */
  #dumped = 0;

  constructor(opts: TreeRowsKeeperOptions) {
    this.#o = opts;
    this.#valid = opts.valid !== undefined;
    this.#generation = opts.valid ?? -1;
    opts.tree.recordRows(true);
    if (!this.#valid) this.#schedule(0);
  }

  /** Whether the stored rows are a picture of the tree now. */
  get valid(): boolean {
    return this.#valid;
  }

  /**
   * Store the tree's name changes, with the rows the last batch changed when the stored rows
   * are current. Throws when the write fails (the hub keeps the names for the next try).
   */
  saveNames(changes: NameChanges): void {
    const { db, tree } = this.#o;
    this.#version++;
    this.#quiet = 0;
    if (!tree.loaded) {
      // Serving the rows: a change waits for the tree to be built (afterLoad follows).
      db.saveNames(changes);
      return;
    }
    const rows = tree.takeRows();
    // A scan's big batches: one dump once it is idle costs less than rows batch by batch.
    if (this.#valid && rows.upserts.length + rows.deletes.length > BIG_BATCH) {
      this.#valid = false;
    }
    if (!this.#valid) {
      db.saveNames(changes);
      this.#schedule(2000);
      return;
    }
    if (changes.length === 0 && rows.upserts.length === 0 && rows.deletes.length === 0) {
      if (db.treeStamp()?.generation === db.generation) return;
    }
    try {
      const stamp = this.#stamp();
      db.saveTree({ ...rows, stamp }, changes);
      this.#generation = stamp.generation;
    } catch (e) {
      this.#valid = false;
      this.#schedule(2000);
      throw e;
    }
  }

  /**
   * The tree was built from the library at `generation`: the stored rows still picture it
   * when nothing changed since they were stored; else the whole tree is stored again.
   */
  afterLoad(generation: number): void {
    if (this.#valid && generation === this.#generation) return;
    this.#valid = false;
    this.#schedule(2000);
  }

  /**
   * Drop the tree from memory once it has not been needed for `idleMs` (0: never) and the
   * stored rows picture it, when `canDrop` agrees: the rows serve until it is needed again.
   * `activity` (a count of requests served) keeps the memory release off busy moments.
   */
  dropWhenIdle(idleMs: number, canDrop: () => boolean, activity: () => number = () => 0): void {
    if (this.#idleTimer !== undefined) return;
    const every = Math.max(250, Math.min(1_000, idleMs > 0 ? idleMs / 4 : 1_000));
    let lastActivity = activity();
    /** Since when a release of memory waits for a tick without requests. */
    let releaseDue: number | undefined;
    this.#idleTimer = setInterval(() => {
      const { tree, db } = this.#o;
      const now = activity();
      const calm = now === lastActivity;
      lastActivity = now;
      if (!this.#o.idle() || this.#dumping) {
        this.#quiet = 0;
        return;
      }
      this.#quiet++;
      if (
        idleMs > 0 && tree.loaded && this.#valid && tree.idleMs >= idleMs &&
        // Rows stored for exactly this library: nothing queued, nothing unsaved.
        db.treeStamp()?.generation === db.generation &&
        // Last: it lets go of what goes with the tree.
        canDrop()
      ) {
        tree.unload(db.generation);
        this.#quiet = 1;
      }
      // What a scan, a build or a dump freed goes back to the system once things are quiet,
      // and again a few seconds later, when idle workers (the walker's) have stopped.
      if (this.#quiet === 1 || this.#quiet === 6) releaseDue ??= performance.now();
      // A full GC and a trim hold this thread for a few ms: not while requests come (a search
      // answered meanwhile took 15 ms instead of 3), unless they never stop.
      if (
        releaseDue !== undefined && (calm || performance.now() - releaseDue > RELEASE_WAIT_MS)
      ) {
        releaseDue = undefined;
        (this.#o.release ?? releaseMemory)(!tree.loaded);
      }
    }, every);
    Deno.unrefTimer(this.#idleTimer);
  }

  /**
   * Stop (at shutdown). Rows not yet stored (a daemon stopped right after its first scan) are
   * stored now when that takes less than `budgetMs` (a dump under way goes on), so the next
   * start serves them at once; past it the dump stops, unstamped, and the next start builds
   * the tree from the tracks.
   */
  async stop(budgetMs = 0): Promise<void> {
    // A dump under way goes on until the deadline (its progress is kept), then stops.
    const deadline = performance.now() + budgetMs;
    this.#deadline = deadline;
    this.#stopped = true;
    if (this.#idleTimer !== undefined) clearInterval(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const storing = "Storing the tree in library.db for the next start ({rows} rows so far; " +
      "a second signal skips it)";
    if (this.#dumping) log.info(storing, { rows: this.#dumped });
    await this.#dumping;
    if (budgetMs > 0 && !this.#valid && this.#o.tree.loaded && performance.now() < deadline) {
      log.info(storing, { rows: 0 });
      const done = await this.dump(deadline);
      if (!done) {
        log.info("The tree was not stored in library.db within {ms} ms at shutdown", {
          ms: budgetMs,
        });
      }
    }
  }

  /**
   * Write the whole tree now (tests, the scheduled dump, the shutdown). It stops, unstamped,
   * when a batch comes meanwhile, or at `deadline` (a `performance.now()` time) when given, else
   * when stopped. True when it completed.
   */
  async dump(deadline?: number): Promise<boolean> {
    const { db, tree } = this.#o;
    const version = this.#version;
    const started = performance.now();
    let rows = 0;
    this.#dumped = 0;
    const part: PackedTreeRows = { values: [], count: 0 };
    let first = true;
    const cursor = tree.rowCursor();
    try {
      for (;;) {
        const done = cursor.fill(part, DUMP_CHUNK);
        db.saveTree({
          clear: first,
          upserts: [],
          packed: part,
          deletes: [],
          stamp: done ? this.#stamp() : undefined,
        });
        rows += part.count;
        this.#dumped = rows;
        first = false;
        if (done) break;
        // Requests are served between parts; a batch meanwhile means starting over.
        await new Promise((r) => setTimeout(r, 0));
        if (this.#version !== version) return false;
        const until = deadline ?? (this.#stopped ? this.#deadline : undefined);
        if (until !== undefined && performance.now() > until) return false;
      }
    } catch (e) {
      log.warn("Cannot store the tree in library.db (will retry): {error}", { error: String(e) });
      return false;
    }
    tree.takeRows();
    this.#valid = true;
    this.#generation = db.generation;
    log.debug("Stored the tree in library.db: {rows} rows in {ms} ms", {
      rows,
      ms: Math.round(performance.now() - started),
    });
    return true;
  }

  #stamp() {
    const { db, tree, shape } = this.#o;
    return { generation: db.generation, layout: shape, stats: JSON.stringify(tree.stats()) };
  }

  #schedule(ms: number): void {
    if (this.#stopped || this.#timer !== undefined || this.#dumping) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#valid || this.#stopped) return;
      if (!this.#o.idle() || !this.#o.tree.loaded) {
        this.#schedule(2000);
        return;
      }
      this.#dumping = this.dump().then((done) => {
        this.#dumping = undefined;
        if (!done) this.#schedule(2000);
      });
    }, ms);
  }
}
