/**
 * The scanner: walks each library root (walker.ts, in a worker), compares what it finds with
 * library.db by size and mtime, parses new and changed files in the worker pool (pool.ts), and
 * commits the results from this thread, the one writer, in batches. After each committed batch
 * the change listener hears what was added, changed and removed, so the tree and search follow
 * incrementally.
 *
 * Interrupted scans: every batch commits its files with the size and mtime they were read at,
 * together with the scan's counters (the checkpoint, see {@link Database.beginScan}). A scan that
 * is killed (even with SIGKILL) loses at most the batch in flight; the next scan finds the
 * committed files unchanged and parses only the rest. Vanished files are removed only after a
 * complete walk, so an interrupted walk never removes anything.
 */
import { logger } from "../log/mod.ts";
import type { LibraryChange } from "./change.ts";
import type {
  Batch,
  Database,
  FileUpsert,
  KnownEntry,
  OriginDir,
  OriginPath,
  ProblemUpsert,
} from "./db.ts";
import { ParseCancelledError, ParserPool, type ParserPoolOptions } from "./pool.ts";
import { extensionOf, type TagResult } from "./tags.ts";
import type { Origin, Playlist } from "./types.ts";
import { decodePlaylist, MAX_PLAYLIST_BYTES, parsePlaylist } from "./playlist.ts";
import type { WalkBatch, WalkFile, WalkRules } from "./walk.ts";
import { Walker } from "./walker.ts";
import { KnownEntries } from "./known_entries.ts";
import { safeReason } from "./reason.ts";

const log = logger("library", "scanner");

/**
 * A scan found a library root empty although the library knows tracks under it, e.g. an
 * unmounted network share leaving its mountpoint behind. Nothing is removed.
 */
export class EmptyRootError extends Error {
  /** The library root. */
  readonly root: string;
  /** Tracks the library still keeps for it. */
  readonly kept: number;
  /** Describe the empty `root` and how many tracks are kept. */
  constructor(root: string, kept: number, options?: ErrorOptions) {
    super(
      `Library root ${root} is empty (unmounted share?); keeping its ${kept} tracks until it comes back`,
      options,
    );
    this.name = "EmptyRootError";
    this.root = root;
    this.kept = kept;
  }
}

/** Where a scan stands. */
export interface ScanProgress {
  /**
   * `walking`: listing directories (parses run meanwhile); `parsing`: walk done, waiting for
   * the last parses; `removing`: dropping what the walk no longer found; `done`: committed.
   */
  phase: "walking" | "parsing" | "removing" | "done";
  /** The origin being scanned. */
  originId: number;
  /** Absolute path of the origin root. */
  root: string;
  /** Audio files found by the walk so far. */
  seen: number;
  /** Of those, unchanged since they were last read (not parsed again). */
  unchanged: number;
  /** New or changed files found so far (the parse total; final once the walk is done). */
  total: number;
  /** Of those, parsed. */
  parsed: number;
  /** Files (tracks and parse problems) committed to the database by this scan. */
  committed: number;
  /** Tracks removed from the database by this scan so far. */
  removed: number;
  /** The walk has finished, so `total` is final. */
  walkDone: boolean;
}

/**
 * Where a scan's time went (ms of wall time unless said otherwise), for the debug log and the
 * scale bench: the daemon's first scan must keep up with the parser pool alone.
 */
export interface ScanStages {
  /** From the start of the scope until the walk worker's last batch. */
  walkMs: number;
  /** Walk batches handed over by the walk worker. */
  walkBatches: number;
  /** Time the parse workers spent reading files, summed over the workers. */
  parseMs: number;
  /** Parse workers of the pool. */
  workers: number;
  /** Time parse workers sat without work during the scan, summed over the workers. */
  workerIdleMs: number;
  /** From the end of the walk until the last parse answered. */
  parseTailMs: number;
  /** This thread's handling of walk batches and parse answers (commits and listener excluded). */
  handleMs: number;
  /** Batches committed. */
  commits: number;
  /** Time in {@link Database.applyBatch} (the SQLite writes). */
  commitMs: number;
  /** Time in the change listener (the daemon's tree, search and kernel invalidations). */
  listenerMs: number;
}

/** The outcome of a scan of one origin (or of some paths in it). */
export interface ScanResult {
  /** The origin scanned. */
  originId: number;
  /** Absolute path of the origin root. */
  root: string;
  /** A full scan that took over from an interrupted one. */
  resumed: boolean;
  /** Files the interrupted scan had committed before it stopped. */
  committedBefore: number;
  /** Audio files found by the walk. */
  seen: number;
  /** Of those, unchanged since last read (size and mtime), so not parsed again. */
  unchanged: number;
  /** Files read by the parser in this scan. */
  parsed: number;
  /** Tracks new to the database. */
  added: number;
  /** Existing tracks rewritten with new tags, size or mtime. */
  changed: number;
  /** Tracks removed (vanished, or failed to parse now). */
  removed: number;
  /** Problems recorded by this scan (files that failed to parse, unreadable entries). */
  problems: number;
  /** Wall-clock duration of the scan, in milliseconds. */
  ms: number;
  /** Where that time went. */
  stages: ScanStages;
}

/** Options of {@link Scanner}. */
export interface ScannerOptions {
  /** The parse pool to use (default: one of `navigator.hardwareConcurrency` workers, owned). */
  pool?: ParserPool;
  /** Options of the owned pool when `pool` is not given. */
  poolOptions?: ParserPoolOptions;
  /** The directory walker to use (default: a new one, owned, walking by `walkRules`). */
  walker?: Walker;
  /** Which symlinks the owned walker follows and where the daemon's mount is (a loop). */
  walkRules?: () => WalkRules | undefined;
  /** Called after each committed batch that changed something. */
  onChange?: (change: LibraryChange) => void;
  /**
   * Commit after this many parsed files (default 2000: the per-batch work of the commit, the
   * tree and search is paid a quarter as often as at 500, and a crash loses at most the last
   * third of a second of a first scan's parsing).
   */
  batchSize?: number;
  /** ...or when the oldest uncommitted result is this old, so the tree fills as it goes (default 1 s). */
  batchMs?: number;
}

/** Options of one scan. */
export interface ScanOptions {
  /** Aborts the scan; what was parsed so far is committed so the next scan resumes. */
  signal?: AbortSignal;
  /** Called as the scan advances, throttled by `progressMs`; the `done` call always comes. */
  onProgress?: (p: ScanProgress) => void;
  /** Minimum time between two progress calls (default 250 ms); the last one always comes. */
  progressMs?: number;
}

interface Pending {
  files: FileUpsert[];
  problems: ProblemUpsert[];
  remove: OriginPath[];
  covers: NonNullable<Batch["covers"]>;
  removeCovers: OriginDir[];
  playlists: Playlist[];
  removePlaylists: OriginPath[];
}

function emptyPending(): Pending {
  return {
    files: [],
    problems: [],
    remove: [],
    covers: [],
    removeCovers: [],
    playlists: [],
    removePlaylists: [],
  };
}

function pendingSize(p: Pending): number {
  return p.files.length + p.problems.length + p.remove.length + p.covers.length +
    p.removeCovers.length + p.playlists.length + p.removePlaylists.length;
}

/** Read a playlist: its entries as absolute source paths (see parsePlaylist). */
async function readPlaylist(root: string, f: WalkFile, originId: number): Promise<Playlist> {
  if (f.size > MAX_PLAYLIST_BYTES) {
    throw new Error(`playlist larger than ${MAX_PLAYLIST_BYTES >> 20} MiB: skipped`);
  }
  const bytes = await Deno.readFile(`${root}/${f.relPath}`);
  const slash = f.relPath.lastIndexOf("/");
  const dir = slash < 0 ? root : `${root}/${f.relPath.slice(0, slash)}`;
  return {
    originId,
    relPath: f.relPath,
    size: f.size,
    mtimeMs: f.mtimeMs,
    entries: parsePlaylist(decodePlaylist(bytes), dir),
  };
}

/**
 * Whether a file is the version last read. Tracks compare size, mtime, ctime and inode: an edit
 * that keeps the size and restores the mtime (`touch -r`, `rsync -t`, taggers' "preserve mtime")
 * still moves the ctime, and a temp file renamed over the source has another inode. Track rows
 * from schema 1 have no ctime/inode: they count as changed (read once more). Problems remember
 * only size and mtime.
 */
function unchanged(k: KnownEntry, f: WalkFile): boolean {
  if (k.size !== f.size || k.mtimeMs !== f.mtimeMs) return false;
  if (k.kind === "problem") return true;
  return k.ctimeMs === f.ctimeMs && k.ino === f.ino;
}

function isUnder(path: string, dir: string): boolean {
  return dir === "" || path === dir || path.startsWith(dir + "/");
}

/** One running scan of a scope of an origin. */
class ScanRun {
  readonly pending: Pending = emptyPending();
  readonly progress: ScanProgress;
  result: ScanResult;
  timer: ReturnType<typeof setTimeout> | undefined;
  lastProgress = 0;
  /** First fatal error (a failed commit); ends the scan. */
  error: unknown;
  readonly inner = new AbortController();

  constructor(readonly origin: Origin, readonly full: boolean, readonly opts: ScanOptions) {
    this.progress = {
      phase: "walking",
      originId: origin.id,
      root: origin.path,
      seen: 0,
      unchanged: 0,
      total: 0,
      parsed: 0,
      committed: 0,
      removed: 0,
      walkDone: false,
    };
    this.result = {
      originId: origin.id,
      root: origin.path,
      resumed: false,
      committedBefore: 0,
      seen: 0,
      unchanged: 0,
      parsed: 0,
      added: 0,
      changed: 0,
      removed: 0,
      problems: 0,
      ms: 0,
      stages: {
        walkMs: 0,
        walkBatches: 0,
        parseMs: 0,
        workers: 0,
        workerIdleMs: 0,
        parseTailMs: 0,
        handleMs: 0,
        commits: 0,
        commitMs: 0,
        listenerMs: 0,
      },
    };
  }

  report(force = false): void {
    const cb = this.opts.onProgress;
    if (!cb) return;
    const now = performance.now();
    if (!force && now - this.lastProgress < (this.opts.progressMs ?? 250)) return;
    this.lastProgress = now;
    try {
      cb({ ...this.progress });
    } catch (e) {
      log.error("Scan progress listener failed: {error}", { error: e });
    }
  }
}

/** Scans library roots into a {@link Database}. One scan runs at a time (they queue). */
export class Scanner {
  readonly #db: Database;
  readonly #pool: ParserPool;
  readonly #ownsPool: boolean;
  readonly #walker: Walker;
  readonly #ownsWalker: boolean;
  readonly #batchSize: number;
  readonly #batchMs: number;
  #lock: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** The change listener; may be replaced at any time. */
  onChange: ((change: LibraryChange) => void) | undefined;

  /** A scanner writing to `db`. */
  constructor(db: Database, options: ScannerOptions = {}) {
    this.#db = db;
    this.#ownsPool = options.pool === undefined;
    this.#pool = options.pool ?? new ParserPool(options.poolOptions);
    this.#ownsWalker = options.walker === undefined;
    this.#walker = options.walker ?? new Walker({ rules: options.walkRules });
    this.onChange = options.onChange;
    this.#batchSize = options.batchSize ?? 2000;
    this.#batchMs = options.batchMs ?? 1000;
  }

  /** The database this scanner writes to. */
  get db(): Database {
    return this.#db;
  }

  /**
   * Full scans of `roots` (paths; resolved, and registered as origins when new), one after the
   * other. Rejects on the first root that cannot be scanned.
   */
  async scan(roots: string[], options: ScanOptions = {}): Promise<ScanResult[]> {
    const out: ScanResult[] = [];
    for (const root of roots) {
      // Async: a hung root must not block the event loop (the mount is served from it).
      const origin = this.#db.ensureOrigin(await Deno.realPath(root));
      out.push(await this.scanOrigin(origin, options));
    }
    return out;
  }

  /**
   * A full scan of one origin: every file re-read whose size or mtime changed, new ones added,
   * vanished ones removed; resumes an interrupted scan from its checkpoint.
   */
  scanOrigin(origin: Origin, options: ScanOptions = {}): Promise<ScanResult> {
    return this.#exclusive(async () => {
      const run = new ScanRun(origin, true, options);
      const start = this.#db.beginScan(origin.id);
      run.result.resumed = start.resumed;
      run.result.committedBefore = start.committedBefore;
      if (start.resumed) {
        log.info(
          "Resuming the interrupted scan of {root} ({committed} files were committed before)",
          {
            root: origin.path,
            committed: start.committedBefore,
          },
        );
      }
      await this.#scope(run, "");
      this.#db.finishScan(origin.id);
      log.info(
        "Scanned {root} in {ms} ms: {seen} files, {unchanged} unchanged, {parsed} read, {added} added, {changed} changed, {removed} removed, {problems} problems",
        { ...run.result },
      );
      const st = run.result.stages;
      log.debug(
        "Scan stages of {root}: walk {walkMs} ms ({walkBatches} batches), parse {parseMs} ms " +
          "over {workers} workers (idle {workerIdleMs} ms; tail after the walk {parseTailMs} ms), this thread: handling " +
          "{handleMs} ms, SQLite {commitMs} ms in {commits} commits, change listener {listenerMs} ms",
        { root: origin.path, ...st },
      );
      return run.result;
    });
  }

  /**
   * Re-check some paths of an origin (files or directories, relative to its root, `/`-separated):
   * what exists is re-read if it changed (directories walked), what vanished is removed along with
   * everything below it. Used by the watcher.
   */
  rescanPaths(origin: Origin, relPaths: string[], options: ScanOptions = {}): Promise<ScanResult> {
    // Sorted, a path's subtree follows it, so nested paths are dropped in one pass.
    const sorted = [...new Set(relPaths)].sort();
    const scopes: string[] = [];
    for (const p of sorted) {
      if (scopes.length === 0 || !isUnder(p, scopes[scopes.length - 1])) scopes.push(p);
    }
    return this.#exclusive(async () => {
      const run = new ScanRun(origin, false, options);
      for (const scope of scopes) await this.#scope(run, scope);
      return run.result;
    });
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("Scanner is closed"));
    const next = this.#lock.then(fn);
    this.#lock = next.catch(() => {});
    return next;
  }

  async #scope(run: ScanRun, scope: string): Promise<void> {
    const t0 = performance.now();
    const { origin, opts } = run;
    const signal = opts.signal
      ? AbortSignal.any([opts.signal, run.inner.signal])
      : run.inner.signal;
    signal.throwIfAborted();
    const known = new KnownEntries(this.#db, origin.id, scope);
    const knownCovers = this.#db.coversOf(origin.id, scope);
    const knownPlaylists = this.#db.knownPlaylists(origin.id, scope);
    const rechecked = new Set(this.#db.recheckedProblemPaths(origin.id, scope));
    const failedDirs: string[] = [];
    const parses: Promise<void>[] = [];
    let failed = false;

    const stages = run.result.stages;
    const onResult = (f: WalkFile, r: TagResult, wasTrack: boolean) => {
      const h0 = performance.now();
      run.progress.parsed++;
      run.result.parsed++;
      if (failed || signal.aborted) return;
      const ext = extensionOf(f.relPath);
      if (!r.ok && r.transient && wasTrack) {
        // The file could not be read just now (stalled mount, permissions being fixed...): keep
        // what is known about it; its stored size/mtime still differ, so the next scan retries.
        log.info("Keeping {path} as it was: {reason}", {
          path: f.relPath,
          reason: safeReason(r.reason),
        });
      } else if (r.ok) {
        run.pending.files.push({
          originId: origin.id,
          relPath: f.relPath,
          ext,
          size: f.size,
          mtimeMs: f.mtimeMs,
          ctimeMs: f.ctimeMs,
          ino: f.ino,
          uid: f.uid,
          gid: f.gid,
          mode: f.mode,
          tags: r.tags,
        });
      } else {
        run.result.problems++;
        // The one place a parse failure becomes a reason others may read: nothing of the file.
        const reason = safeReason(r.reason);
        const p: ProblemUpsert = { originId: origin.id, relPath: f.relPath, reason };
        // A lasting failure is remembered with the file's size and mtime, so it is not re-read
        // until the file changes; a transient one is re-checked at the next scan.
        if (!r.transient) {
          p.size = f.size;
          p.mtimeMs = f.mtimeMs;
        }
        run.pending.problems.push(p);
      }
      stages.handleMs += performance.now() - h0;
      this.#maybeCommit(run);
      run.report();
    };

    let found = 0;
    const onBatch = (b: WalkBatch) => {
      const h0 = performance.now();
      stages.walkBatches++;
      // The count of hidden folders (at the root's own path) is not something found in it: an
      // emptied mountpoint with only a .Trash folder left must still look empty.
      found += b.files.length + b.problems.filter((p) => p.relPath !== "").length;
      const ks = known.takeAll(b.files.map((f) => f.relPath));
      for (let i = 0; i < b.files.length; i++) {
        const f = b.files[i];
        const k = ks[i];
        run.progress.seen++;
        run.result.seen++;
        rechecked.delete(f.relPath);
        if (k && unchanged(k, f)) {
          run.progress.unchanged++;
          run.result.unchanged++;
          continue;
        }
        run.progress.total++;
        parses.push(
          this.#pool.parse(`${origin.path}/${f.relPath}`).then(
            (r) => onResult(f, r, k?.kind === "track"),
            (e) => {
              if (e instanceof ParseCancelledError || run.error !== undefined) return;
              run.error = e;
              run.inner.abort(e);
            },
          ),
        );
      }
      for (const f of b.playlists ?? []) {
        const k = knownPlaylists.get(f.relPath);
        knownPlaylists.delete(f.relPath);
        rechecked.delete(f.relPath);
        if (k && k.size === f.size && k.mtimeMs === f.mtimeMs) continue;
        parses.push(
          readPlaylist(origin.path, f, origin.id).then(
            (p) => run.pending.playlists.push(p),
            (e) => {
              run.pending.problems.push({
                originId: origin.id,
                relPath: f.relPath,
                reason: `cannot read playlist: ${e instanceof Error ? e.message : String(e)}`,
              });
              if (k) run.pending.removePlaylists.push({ originId: origin.id, relPath: f.relPath });
            },
          ).then(() => this.#maybeCommit(run)),
        );
      }
      for (const d of b.dirs) {
        const kc = knownCovers.get(d.relPath);
        knownCovers.delete(d.relPath);
        if (d.cover) {
          if (
            !kc || kc.relPath !== d.cover.relPath || kc.size !== d.cover.size ||
            kc.mtimeMs !== d.cover.mtimeMs
          ) {
            run.pending.covers.push({ originId: origin.id, dir: d.relPath, ...d.cover });
          }
        } else if (kc) {
          run.pending.removeCovers.push({ originId: origin.id, dir: d.relPath });
        }
      }
      for (const p of b.problems) {
        known.take(p.relPath);
        rechecked.delete(p.relPath);
        run.result.problems++;
        run.pending.problems.push({ originId: origin.id, relPath: p.relPath, reason: p.reason });
      }
      failedDirs.push(...b.failedDirs);
      stages.handleMs += performance.now() - h0;
      this.#maybeCommit(run);
      run.report();
    };

    try {
      run.progress.phase = "walking";
      run.progress.walkDone = false;
      run.report(true);
      const parse0 = this.#pool.parseMs;
      const idle0 = this.#pool.starvedMs;
      const summary = await this.#walker.walk(origin.path, scope, onBatch, signal);
      const walked = performance.now();
      stages.walkMs += walked - t0;
      run.progress.walkDone = true;
      run.progress.phase = "parsing";
      run.report(true);
      await this.#settle(parses, signal);
      stages.parseTailMs += performance.now() - walked;
      stages.parseMs += this.#pool.parseMs - parse0;
      stages.workerIdleMs += this.#pool.starvedMs - idle0;
      stages.workers = this.#pool.size;
      this.#commit(run);

      if (scope === "" && known.any && found === 0 && failedDirs.length === 0) {
        // A library root that suddenly holds nothing is far more often an unmounted share or
        // a dead NAS (its empty mountpoint) than a library deleted on purpose: keep its tracks.
        throw new EmptyRootError(origin.path, this.#db.knownCount(origin.id));
      }
      run.progress.phase = "removing";
      const keep = (p: string) =>
        summary.scope !== "missing" && failedDirs.some((d) => isUnder(p, d));
      for (const p of known.unseen()) {
        if (!keep(p)) run.pending.remove.push({ originId: origin.id, relPath: p });
      }
      for (const p of rechecked) {
        if (!keep(p)) run.pending.remove.push({ originId: origin.id, relPath: p });
      }
      for (const dir of knownCovers.keys()) {
        if (!keep(dir)) run.pending.removeCovers.push({ originId: origin.id, dir });
      }
      for (const p of knownPlaylists.keys()) {
        if (!keep(p)) run.pending.removePlaylists.push({ originId: origin.id, relPath: p });
      }
      this.#commit(run);
      run.progress.phase = "done";
      run.report(true);
    } catch (e) {
      failed = true;
      this.#pool.clear();
      if (run.error === undefined) {
        // Keep what was parsed: committing it now is what makes the next scan resume from here.
        try {
          this.#commit(run);
        } catch (commitError) {
          log.warn("Could not commit the last batch of an interrupted scan: {error}", {
            error: commitError,
          });
        }
      }
      throw run.error ?? e;
    } finally {
      clearTimeout(run.timer);
      run.result.ms += Math.round(performance.now() - t0);
      for (const k of Object.keys(stages) as (keyof ScanStages)[]) {
        stages[k] = Math.round(stages[k]);
      }
    }
  }

  /** Wait for all parses, or reject as soon as the scan is aborted or failed. */
  async #settle(parses: Promise<void>[], signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    let onAbort: () => void = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      await Promise.race([Promise.all(parses), aborted]);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  #maybeCommit(run: ScanRun): void {
    if (run.error !== undefined) return;
    const n = pendingSize(run.pending);
    if (n === 0) return;
    if (n >= this.#batchSize) {
      this.#commitOrFail(run);
    } else if (run.timer === undefined) {
      run.timer = setTimeout(() => {
        run.timer = undefined;
        this.#commitOrFail(run);
      }, this.#batchMs);
    }
  }

  #commitOrFail(run: ScanRun): void {
    try {
      this.#commit(run);
    } catch (e) {
      // A failed commit (full disk...) ends the scan; the abort wakes up whatever it awaits.
      run.error = e;
      run.inner.abort(e);
    }
  }

  /** Commit the pending batch (one transaction) and tell the change listener. */
  #commit(run: ScanRun): void {
    clearTimeout(run.timer);
    run.timer = undefined;
    const p = run.pending;
    if (pendingSize(p) === 0) return;
    const batch: Batch = {
      files: p.files.splice(0),
      problems: p.problems.splice(0),
      remove: p.remove.splice(0),
      covers: p.covers.splice(0),
      removeCovers: p.removeCovers.splice(0),
      playlists: p.playlists.splice(0),
      removePlaylists: p.removePlaylists.splice(0),
    };
    if (run.full) {
      batch.scan = {
        originId: run.origin.id,
        seen: run.progress.seen,
        parsed: run.progress.parsed,
      };
    }
    const c0 = performance.now();
    const res = this.#db.applyBatch(batch);
    const c1 = performance.now();
    run.result.stages.commits++;
    run.result.stages.commitMs += c1 - c0;
    run.progress.committed += batch.files!.length +
      batch.problems!.filter((x) => x.size !== undefined).length;
    run.progress.removed += res.removed.length;
    run.result.added += res.added.length;
    run.result.changed += res.changed.length;
    run.result.removed += res.removed.length;
    this.#notify(res);
    run.result.stages.listenerMs += performance.now() - c1;
  }

  #notify(res: LibraryChange): void {
    if (
      !res.added.length && !res.changed.length && !res.removed.length && !res.problemsChanged &&
      !res.covers.length && !res.removedCovers.length && !res.playlists.length &&
      !res.removedPlaylists.length
    ) {
      return;
    }
    try {
      this.onChange?.(res);
    } catch (e) {
      // The batch is committed; a broken listener must not lose the scan's later batches.
      log.error("Library change listener failed: {error}", { error: e });
    }
  }

  /** Stop the workers. Scans in progress fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsWalker) this.#walker.close();
    if (this.#ownsPool) this.#pool.close();
  }
}
