/**
 * The content-addressed chunk store: chunk files named by SHA-256 under
 * `<dir>/chunks/ab/cd/<hash>`, an LMDB index under `<dir>/index/`, temp files under
 * `<dir>/tmp/`. See {@link CasStore}.
 *
 * @module
 */
import { type Database, open, type RootDatabase } from "lmdb";
import { logger } from "../log/mod.ts";
import { CasClosedError, CasWriteError, formatBytes, StoreFullError } from "./errors.ts";
import { checkIndex, DB_NAMES, INDEX_FORMAT, type IndexCheck, MAX_DBS } from "./index_check.ts";
import { moveAside } from "../util/mod.ts";

const log = logger("cas");

const HASH_RE = /^[0-9a-f]{64}$/;

/** Whether `name` is a chunk file's name: its content's SHA-256 in lower-case hex. */
export function isChunkName(name: string): boolean {
  return HASH_RE.test(name);
}

/** Where a cache dir keeps its chunk files (sharded below) and its LMDB index. */
export function cacheLayout(dir: string): { chunks: string; index: string } {
  const root = dir.replace(/\/+$/, "") || "/";
  return { chunks: `${root}/chunks`, index: `${root}/index` };
}
/** Damaged indexes kept for a post-mortem; older ones are deleted. */
const KEEP_CORRUPT = 3;

/** Options of {@link CasStore.open}. */
export interface CasOptions {
  /** The cache directory; created when missing. */
  dir: string;
  /** Upper bound of the stored chunk bytes; the store never grows past it. */
  maxSize: number;
  /** Directory levels of two hex digits each under `chunks/` (0..4). Default 2: `ab/cd/`. */
  shardLevels?: number;
  /**
   * fsync each chunk file before its rename. Default false: reads verify the hash, so a chunk
   * torn by a power loss is detected and refetched, and skipping the sync keeps put fast.
   */
  fsync?: boolean;
  /** Timeout of the child-process index validation at open. Default 10 000 ms. */
  validateTimeoutMs?: number;
  /**
   * How long last-access times may stay in memory, and index writes unsynced, before a
   * background flush. Default 5 000 ms.
   */
  accessFlushMs?: number;
  /** Command prefix running the index validator (see `checkIndex`); for compiled binaries. */
  validatorCommand?: string[];
}

/** Figures of {@link CasStore.stats}. */
export interface CasStats {
  /** Chunks stored. */
  chunks: number;
  /** Bytes of the stored chunks. */
  bytes: number;
  /** The configured bound. */
  maxSize: number;
}

/** What {@link CasStore.open} found and did; also logged. */
export interface CasOpenReport {
  /** The child-process validation outcome. */
  check: IndexCheck;
  /** Why the index was rebuilt from the chunk files, when it was. */
  rebuiltBecause?: string;
  /** Where the damaged index was moved, when it was. */
  movedTo?: string;
  /** Chunk files found under `chunks/` at open. */
  chunkFiles: number;
  /** Chunk files (re)entered in the index after verifying their hash. */
  adopted: number;
  /** Chunk files deleted because their content did not match their name. */
  removedBad: number;
  /** Index entries dropped because their chunk file was gone. */
  droppedMissing: number;
  /** Temp files of interrupted writes removed. */
  removedTemps: number;
  /** Chunks evicted because the store was over `maxSize` (e.g. after lowering it). */
  evicted: number;
}

interface Entry {
  size: number;
  /** Last access, ms since the epoch. */
  atime: number;
}

type ChunkRow = [size: number, atime: number];

/**
 * The identity of one version of a source file in the file-chunk map: file id, size, mtime,
 * ctime and inode (when known). A changed source gets a new key, so its stale chunks are never
 * served.
 */
export function fileKey(
  file: { id: string | number; size: number; mtimeMs: number; ctimeMs?: number; ino?: number },
): string {
  // ctime and inode tell an edit that kept the size and restored the mtime.
  const extra = file.ctimeMs === undefined && file.ino === undefined
    ? ""
    : `:${file.ctimeMs ?? ""}:${file.ino ?? ""}`;
  return `${file.id}@${file.size}:${file.mtimeMs}${extra}`;
}

/** SHA-256 of `bytes` as lower-case hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  let s = "";
  for (const b of digest) s += HEX[b];
  return s;
}
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * A bounded, content-addressed chunk cache with an LRU eviction policy.
 *
 * - `put` stores bytes under their SHA-256 (stored once however often they are put), evicting
 *   least-recently-used unpinned chunks to stay within `maxSize`, else throws
 *   {@link StoreFullError}. Chunk files appear atomically (temp file + rename); a failed write
 *   throws {@link CasWriteError} and leaves nothing behind.
 * - `get` verifies the hash; a corrupt or missing chunk is dropped and `null` returned so the
 *   caller refetches from the origin.
 * - The index is validated in a child process at open and rebuilt from the chunk files when it
 *   is damaged, emptied or missing.
 *
 * All bookkeeping (sizes, LRU order, pins) lives in memory and is decided synchronously, so
 * concurrent puts can never overshoot `maxSize`; LMDB persists it with batched asynchronous
 * writes, and anything a crash loses there is reconciled with the chunk files at the next open.
 */
export class CasStore {
  readonly #dir: string;
  readonly #chunksDir: string;
  readonly #tmpDir: string;
  readonly #maxSize: number;
  readonly #shardLevels: number;
  readonly #fsync: boolean;
  readonly #accessFlushMs: number;
  readonly #env: RootDatabase;
  readonly #chunksDb: Database<ChunkRow, string>;
  readonly #filesDb: Database<string, [string, number]>;
  /** Map iteration order is the LRU order: oldest first; an access moves an entry to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #pins = new Map<string, number>();
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #activePuts = new Set<Promise<string>>();
  readonly #deleting = new Map<string, Promise<void>>();
  readonly #dirty = new Set<string>();
  readonly #shardDirs = new Set<string>();
  readonly #reservationWaiters: (() => void)[] = [];
  /**
   * File-chunk mappings written but maybe not committed yet (lmdb's async writes are not
   * visible to reads until their batch commits); `null` marks a removal.
   */
  readonly #pendingMaps = new Map<string, string | null>();
  #bytes = 0;
  #reserved = 0;
  #seq = 0;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #pruning: Promise<void> = Promise.resolve();
  /** Index writes since the last sync. */
  #unsynced = false;
  #closed = false;

  private constructor(
    opts: Required<Omit<CasOptions, "validatorCommand" | "validateTimeoutMs">>,
    env: RootDatabase,
  ) {
    this.#dir = opts.dir;
    this.#chunksDir = `${opts.dir}/chunks`;
    this.#tmpDir = `${opts.dir}/tmp`;
    this.#maxSize = opts.maxSize;
    this.#shardLevels = opts.shardLevels;
    this.#fsync = opts.fsync;
    this.#accessFlushMs = opts.accessFlushMs;
    this.#env = env;
    this.#chunksDb = env.openDB<ChunkRow, string>({ name: DB_NAMES.chunks });
    this.#filesDb = env.openDB<string, [string, number]>({ name: DB_NAMES.files });
  }

  /**
   * Open (or create) the store in `opts.dir`: remove orphan temp files, validate the index in a
   * child process, rebuild it from the chunk files when it is damaged, emptied or missing,
   * reconcile it with the chunk files otherwise, and evict down to `maxSize`.
   */
  static async open(opts: CasOptions): Promise<CasStore> {
    return (await CasStore.openWithReport(opts)).store;
  }

  /** {@link CasStore.open}, also returning what open found and repaired. */
  static async openWithReport(
    opts: CasOptions,
  ): Promise<{ store: CasStore; report: CasOpenReport }> {
    const shardLevels = opts.shardLevels ?? 2;
    if (!Number.isInteger(shardLevels) || shardLevels < 0 || shardLevels > 4) {
      throw new RangeError(`Cannot open chunk cache: shardLevels must be 0..4, got ${shardLevels}`);
    }
    if (!(opts.maxSize >= 0) || !Number.isSafeInteger(opts.maxSize)) {
      throw new RangeError(`Cannot open chunk cache: bad maxSize ${opts.maxSize}`);
    }
    const dir = opts.dir.replace(/\/+$/, "") || "/";
    const indexPath = `${dir}/index`;
    await Deno.mkdir(`${dir}/chunks`, { recursive: true, mode: 0o700 });
    await Deno.mkdir(`${dir}/tmp`, { recursive: true, mode: 0o700 });
    const removedTemps = await emptyDir(`${dir}/tmp`);

    const checking = checkIndex(indexPath, {
      timeoutMs: opts.validateTimeoutMs,
      command: opts.validatorCommand,
    });
    // Walked while the child validates; synchronous because it is 3x faster than readDir
    // and nothing else is being served yet.
    const disk = listChunkFiles(`${dir}/chunks`);
    const check = await checking;
    let rebuiltBecause: string | undefined;
    if (check.status === "damaged") rebuiltBecause = `index is damaged (${check.reason})`;
    else if (check.status === "absent" && disk.files.size > 0) rebuiltBecause = "index is missing";
    else if (check.status === "ok" && check.chunks === 0 && disk.files.size > 0) {
      rebuiltBecause = `index is empty but ${disk.files.size} chunk files exist`;
    }
    let movedTo: string | undefined;
    if (rebuiltBecause && check.status !== "absent") {
      movedTo = moveAside(`${dir}/index`, { keep: KEEP_CORRUPT });
    }

    let env: RootDatabase;
    try {
      env = openEnv(indexPath);
    } catch (e) {
      // Validated a moment ago, so this is unexpected; a fresh index is still better than none.
      if (rebuiltBecause) throw e;
      rebuiltBecause = `index failed to open (${e instanceof Error ? e.message : e})`;
      movedTo = moveAside(`${dir}/index`, { keep: KEEP_CORRUPT });
      env = openEnv(indexPath);
    }
    const store = new CasStore({
      dir,
      maxSize: opts.maxSize,
      shardLevels,
      fsync: opts.fsync ?? false,
      accessFlushMs: opts.accessFlushMs ?? 5_000,
    }, env);
    const report: CasOpenReport = {
      check,
      rebuiltBecause,
      movedTo,
      chunkFiles: disk.files.size,
      adopted: 0,
      removedBad: disk.junk,
      droppedMissing: 0,
      removedTemps: removedTemps + disk.temps,
      evicted: 0,
    };
    try {
      await store.#load(disk.files, rebuiltBecause !== undefined, report);
      store.#pruning = store.#pruneMaps();
    } catch (e) {
      await env.close();
      throw e;
    }
    const summary = `${store.#entries.size} chunks, ${formatBytes(store.#bytes)} of ` +
      `${formatBytes(store.#maxSize)}`;
    if (rebuiltBecause) {
      log.warn(
        "Rebuilt chunk cache index: {reason}; moved the old one to {movedTo}; {adopted} chunk " +
          "files verified and indexed, {removedBad} bad ones deleted; now {summary}",
        { reason: rebuiltBecause, movedTo: movedTo ?? "(nothing to move)", ...report, summary },
      );
    } else if (report.adopted || report.droppedMissing || report.removedBad) {
      log.warn(
        "Chunk cache index disagreed with the chunk files: {droppedMissing} entries without a " +
          "file dropped, {adopted} unindexed files verified and indexed, {removedBad} bad files " +
          "deleted; now {summary}",
        { ...report, summary },
      );
    } else {
      log.info("Opened chunk cache {dir}: {summary} (index validated in {ms} ms)", {
        dir,
        summary,
        ms: check.status === "ok" ? check.ms : 0,
      });
    }
    if (report.removedTemps) {
      log.info("Removed {n} temp files of interrupted chunk writes", { n: report.removedTemps });
    }
    return { store, report };
  }

  /** Fill the in-memory state from the index (or from the chunk files alone when rebuilding). */
  async #load(files: Map<string, string>, rebuild: boolean, report: CasOpenReport) {
    const rows = new Map<string, Entry>();
    const missing: string[] = [];
    if (!rebuild) {
      for (const { key, value } of this.#chunksDb.getRange()) {
        // A file away from its canonical path (shardLevels changed) is re-verified and moved.
        if (files.get(key) === this.#chunkPath(key)) {
          rows.set(key, { size: value[0], atime: value[1] });
        } else if (!files.has(key)) missing.push(key);
      }
    }
    const unindexed = [...files].filter(([hash]) => !rows.has(hash));
    const adopted = await this.#verifyFiles(unindexed);
    for (const [hash, e] of adopted) rows.set(hash, e);
    report.adopted = adopted.size;
    report.removedBad += unindexed.length - adopted.size;
    report.droppedMissing = missing.length;

    const sorted = [...rows].sort((a, b) => a[1].atime - b[1].atime);
    for (const [hash, e] of sorted) {
      this.#entries.set(hash, e);
      this.#bytes += e.size;
    }
    this.#env.transactionSync(() => {
      for (const hash of missing) this.#chunksDb.remove(hash);
      for (const [hash, e] of adopted) this.#chunksDb.put(hash, [e.size, e.atime]);
    });
    if (missing.length || adopted.size) this.#indexChanged();
    const victims = this.#pickVictims(0);
    report.evicted = victims?.length ?? 0;
    await Promise.all((victims ?? []).map((h) => this.#drop(h)));
  }

  /**
   * Remove file-chunk mappings to chunks that are gone, in the background after open: they
   * would only be cleaned when asked for, and most (old file versions, evicted chunks) never
   * are. Batched, yielding between batches, so a large map does not delay startup.
   */
  async #pruneMaps(): Promise<void> {
    const batchSize = 2000;
    let start: [string, number] | undefined;
    let removed = 0;
    try {
      // close() waits for the pass to end rather than cutting it short: one pass is cheap.
      for (;;) {
        const batch = [
          ...this.#filesDb.getRange({ start, limit: batchSize + (start ? 1 : 0) }),
        ];
        for (const { key, value } of batch) {
          if (start && key[0] === start[0] && key[1] === start[1]) continue;
          // A mapping written since the batch was read is newer than what the batch shows.
          if (this.#entries.has(value) || this.#pendingMaps.has(mapId(key[0], key[1]))) continue;
          this.#filesDb.remove(key).catch(indexWriteFailed);
          removed++;
        }
        if (batch.length < batchSize) break;
        start = batch[batch.length - 1].key;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } catch (e) {
      log.warn("Cannot prune the file-chunk map: {error}", { error: String(e) });
    }
    if (removed) {
      this.#indexChanged();
      log.debug("Pruned {removed} file-chunk mappings to chunks no longer cached", { removed });
    }
  }

  /** Hash-check chunk files; good ones are moved to their canonical path, bad ones deleted. */
  async #verifyFiles(files: [string, string][]): Promise<Map<string, Entry>> {
    const good = new Map<string, Entry>();
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const [hash, path] = files[next++];
        try {
          const [data, st] = await Promise.all([Deno.readFile(path), Deno.stat(path)]);
          if ((await sha256Hex(data)) !== hash) {
            log.warn("Deleting chunk file {path}: its content does not match its name", { path });
            await Deno.remove(path);
            continue;
          }
          const canonical = this.#chunkPath(hash);
          if (path !== canonical) {
            await this.#ensureShardDir(hash);
            await Deno.rename(path, canonical);
          }
          good.set(hash, { size: data.length, atime: st.mtime?.getTime() ?? 0 });
        } catch (e) {
          log.warn("Skipping chunk file {path}: {error}", { path, error: String(e) });
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return good;
  }

  /**
   * Store `bytes`; returns their SHA-256 hex. Same bytes are stored once. Throws
   * {@link StoreFullError} when they cannot fit and {@link CasWriteError} when the write fails.
   */
  async put(bytes: Uint8Array): Promise<string> {
    this.#assertOpen("store chunk");
    const p = this.#put(bytes);
    this.#activePuts.add(p);
    try {
      return await p;
    } finally {
      this.#activePuts.delete(p);
    }
  }

  async #put(bytes: Uint8Array): Promise<string> {
    const size = bytes.length;
    // Space is reserved (and LRU chunks evicted) before the hash is known, so hashing and
    // writing the temp file can overlap; the price is a needless eviction when a full cache is
    // given bytes it already holds, which the callers (who look up the file-chunk map first)
    // rarely do.
    const { evicted } = await this.#reserve(size);
    let tmp: string | undefined;
    try {
      // Write once the evicted files are gone, so a nearly full disk really has the room.
      const writing = evicted.then(() => this.#writeTemp(bytes));
      const [hash, written] = await Promise.allSettled([sha256Hex(bytes), writing]);
      if (written.status === "rejected") throw written.reason;
      tmp = written.value;
      if (hash.status === "rejected") throw hash.reason;
      const h = hash.value;
      const existing = this.#entries.get(h);
      if (existing) {
        // These bytes are known good and already written: put them in place of the stored
        // file, which heals a chunk damaged on disk that no read has verified yet (e.g. one
        // whose file map was lost with a rebuilt index). Same size, so no accounting changes.
        const written = tmp;
        await Deno.rename(written, this.#chunkPath(h)).then(() => tmp = undefined, () => {});
        this.#touch(h, existing);
        return h;
      }
      const inflight = this.#inflight.get(h);
      if (inflight) return await inflight;
      const commit = this.#commit(h, tmp, size);
      tmp = undefined;
      this.#inflight.set(h, commit);
      try {
        return await commit;
      } finally {
        this.#inflight.delete(h);
      }
    } finally {
      if (tmp) await Deno.remove(tmp).catch(() => {});
      this.#reserved -= size;
      for (const wake of this.#reservationWaiters.splice(0)) wake();
    }
  }

  /**
   * Reserve `size` bytes, evicting what must go to make room; `evicted` settles when the
   * evicted files are removed.
   */
  async #reserve(size: number): Promise<{ evicted: Promise<unknown> }> {
    let victims = this.#pickVictims(size);
    // Bytes reserved by writes in flight become evictable chunks once those writes land.
    while (!victims && this.#reserved > 0 && size <= this.#maxSize) {
      await new Promise<void>((resolve) => this.#reservationWaiters.push(resolve));
      victims = this.#pickVictims(size);
    }
    if (!victims) {
      const err = new StoreFullError(this.#bytes + this.#reserved, this.#maxSize, size);
      log.warn("{message} (chunk {size} bytes, current {current} bytes, max {max} bytes)", {
        message: err.message,
        size,
        current: err.current,
        max: err.max,
      });
      throw err;
    }
    // Reserved and evicted in the same turn as the check, so concurrent puts can neither count
    // the same victims nor miss these bytes.
    this.#reserved += size;
    return { evicted: Promise.all(victims.map((h) => this.#drop(h))) };
  }

  /**
   * The least-recently-used unpinned chunks to evict so `size` more bytes fit, or `undefined`
   * when they cannot fit even after evicting all of them.
   */
  #pickVictims(size: number): string[] | undefined {
    if (size > this.#maxSize) return undefined;
    let used = this.#bytes + this.#reserved;
    const victims: string[] = [];
    if (used + size <= this.#maxSize) return victims;
    for (const [hash, e] of this.#entries) {
      if (this.#pins.has(hash)) continue;
      victims.push(hash);
      used -= e.size;
      if (used + size <= this.#maxSize) return victims;
    }
    return undefined;
  }

  /** Write `bytes` to a new temp file; returns its path. Nothing is left behind on failure. */
  async #writeTemp(bytes: Uint8Array): Promise<string> {
    const tmp = `${this.#tmpDir}/${++this.#seq}.tmp`;
    let file: Deno.FsFile | undefined;
    try {
      file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
      // A write may be short (e.g. the disk filled up mid-chunk); the next one reports why.
      for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
      if (this.#fsync) await file.syncData();
      file.close();
      file = undefined;
      return tmp;
    } catch (e) {
      try {
        file?.close();
      } catch {
        // Closing is best effort; the remove below is what matters.
      }
      await Deno.remove(tmp).catch(() => {});
      throw this.#writeFailed(e);
    }
  }

  /** Rename the temp file into place and index it; removes the temp file on failure. */
  async #commit(hash: string, tmp: string, size: number): Promise<string> {
    try {
      // An eviction of the same content may still be unlinking the old file.
      await this.#deleting.get(hash);
      await this.#ensureShardDir(hash);
      try {
        await Deno.rename(tmp, this.#chunkPath(hash));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        // Someone removed the shard directory behind our back; recreate it once.
        this.#shardDirs.clear();
        await this.#ensureShardDir(hash);
        await Deno.rename(tmp, this.#chunkPath(hash));
      }
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw this.#writeFailed(e);
    }
    const e: Entry = { size, atime: Date.now() };
    this.#entries.set(hash, e);
    this.#bytes += size;
    this.#chunksDb.put(hash, [e.size, e.atime]).catch(indexWriteFailed);
    this.#indexChanged();
    return hash;
  }

  // A full disk fails every chunk write of a stream: one warning a minute per kind of
  // failure, with the count of the ones not logged, instead of one line per chunk.
  #writeWarned = { code: "", at: 0, suppressed: 0 };

  #writeFailed(cause: unknown): CasWriteError {
    const err = new CasWriteError(cause);
    const w = this.#writeWarned;
    const now = Date.now();
    if (w.code === err.code && now - w.at < 60_000) {
      w.suppressed++;
      return err;
    }
    log.warn("{message} in {dir} ({suppressed} more since the last warning)", {
      message: err.message,
      code: err.code,
      dir: this.#dir,
      suppressed: w.code === err.code ? w.suppressed : 0,
    });
    this.#writeWarned = { code: err.code ?? "", at: now, suppressed: 0 };
    return err;
  }

  /**
   * The chunk's bytes, verified against its hash; `null` when it is not cached. A chunk whose
   * file is missing or does not match its hash is dropped (index entry and file), so the caller
   * fetches it again from the origin.
   */
  async get(hash: string): Promise<Uint8Array | null> {
    this.#assertOpen("read chunk");
    const e = this.#entries.get(hash);
    if (!e) return null;
    const unpin = this.pin(hash);
    try {
      let data: Uint8Array;
      try {
        data = await Deno.readFile(this.#chunkPath(hash));
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) {
          this.#dropBroken(hash, e, "its file is missing");
        } else {
          log.warn("Cannot read chunk {hash}: {error}", { hash, error: String(err) });
        }
        return null;
      }
      if (data.length !== e.size || (await sha256Hex(data)) !== hash) {
        this.#dropBroken(hash, e, "its content does not match its hash");
        return null;
      }
      if (this.#entries.get(hash) === e) this.#touch(hash, e);
      return data;
    } finally {
      unpin();
    }
  }

  /** Whether the chunk is in the index (its content is verified only by `get`). */
  has(hash: string): boolean {
    return this.#entries.has(hash);
  }

  /** Remove a chunk; false when it was not stored. */
  async delete(hash: string): Promise<boolean> {
    this.#assertOpen("delete chunk");
    await this.#inflight.get(hash)?.catch(() => {});
    if (!this.#entries.has(hash)) return false;
    await this.#drop(hash);
    return true;
  }

  /**
   * Keep a chunk from eviction until the returned function is called (idempotent). Pins nest;
   * `get` pins for the duration of its read.
   */
  pin(hash: string): () => void {
    this.#pins.set(hash, (this.#pins.get(hash) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#pins.get(hash) ?? 1) - 1;
      if (n > 0) this.#pins.set(hash, n);
      else this.#pins.delete(hash);
    };
  }

  /** Chunk count, stored bytes and the bound. */
  stats(): CasStats {
    return { chunks: this.#entries.size, bytes: this.#bytes, maxSize: this.#maxSize };
  }

  /**
   * The chunk stored for chunk `chunkNo` of the file version `key` (see {@link fileKey}), or
   * `null`. A mapping to a chunk that has since been evicted or dropped is removed.
   */
  getChunkFor(key: string, chunkNo: number): string | null {
    this.#assertOpen("look up chunk");
    const pending = this.#pendingMaps.get(mapId(key, chunkNo));
    const hash = pending !== undefined ? pending : this.#filesDb.get([key, chunkNo]);
    if (typeof hash !== "string") return null;
    if (this.#entries.has(hash)) return hash;
    this.#writeMap(key, chunkNo, null);
    return null;
  }

  /** Record that chunk `chunkNo` of the file version `key` has the content `hash`. */
  putChunkFor(key: string, chunkNo: number, hash: string): void {
    this.#assertOpen("map chunk");
    if (!Number.isSafeInteger(chunkNo) || chunkNo < 0) {
      throw new RangeError(`Cannot map chunk: bad chunk number ${chunkNo}`);
    }
    if (!HASH_RE.test(hash)) throw new RangeError(`Cannot map chunk: bad hash ${hash}`);
    this.#writeMap(key, chunkNo, hash);
  }

  #writeMap(key: string, chunkNo: number, hash: string | null): void {
    const id = mapId(key, chunkNo);
    this.#pendingMaps.set(id, hash);
    const write = hash === null
      ? this.#filesDb.remove([key, chunkNo])
      : this.#filesDb.put([key, chunkNo], hash);
    this.#indexChanged();
    write.catch(indexWriteFailed).finally(() => {
      if (this.#pendingMaps.get(id) === hash) this.#pendingMaps.delete(id);
    });
  }

  /** `get(getChunkFor(key, chunkNo))`: the verified bytes, or `null` when not cached. */
  async readChunkFor(key: string, chunkNo: number): Promise<Uint8Array | null> {
    const hash = this.getChunkFor(key, chunkNo);
    return hash ? await this.get(hash) : null;
  }

  /** `put(bytes)` then `putChunkFor(key, chunkNo, hash)`; returns the hash. */
  async storeChunkFor(key: string, chunkNo: number, bytes: Uint8Array): Promise<string> {
    const hash = await this.put(bytes);
    this.putChunkFor(key, chunkNo, hash);
    return hash;
  }

  /**
   * Write pending last-access times to the index and sync it to disk now (otherwise done in the
   * background within `accessFlushMs` of a change).
   */
  async flush(): Promise<void> {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const writes: Promise<unknown>[] = [];
    for (const hash of this.#dirty) {
      const e = this.#entries.get(hash);
      if (e) writes.push(this.#chunksDb.put(hash, [e.size, e.atime]));
    }
    this.#dirty.clear();
    await Promise.all(writes).catch(indexWriteFailed);
    if (!this.#unsynced) return;
    this.#unsynced = false;
    await this.#env.committed;
    await new Promise<void>((resolve) => {
      (this.#env as unknown as { sync(cb: (err?: unknown) => void): void }).sync((err) => {
        if (err) indexWriteFailed(err);
        resolve();
      });
    });
  }

  /** Note an index write: the next background flush syncs it. */
  #indexChanged(): void {
    this.#unsynced = true;
    if (this.#flushTimer !== undefined || this.#closed) return;
    const timer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.flush().catch(indexWriteFailed);
    }, this.#accessFlushMs);
    // A pending flush must not keep a finished process alive; close() flushes anyway.
    Deno.unrefTimer(timer);
    this.#flushTimer = timer;
  }

  /** Finish writes in flight, persist access times and close the index. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#activePuts, ...this.#deleting.values(), this.#pruning]);
    await this.flush();
    await this.#env.close();
  }

  /** The cache directory. */
  get dir(): string {
    return this.#dir;
  }

  /** Path of the chunk file of `hash` (whether or not it exists). */
  chunkPath(hash: string): string {
    return this.#chunkPath(hash);
  }

  #chunkPath(hash: string): string {
    return `${this.#shardDir(hash)}/${hash}`;
  }

  #shardDir(hash: string): string {
    let p = this.#chunksDir;
    for (let i = 0; i < this.#shardLevels; i++) p += `/${hash.slice(2 * i, 2 * i + 2)}`;
    return p;
  }

  async #ensureShardDir(hash: string): Promise<void> {
    const d = this.#shardDir(hash);
    if (this.#shardDirs.has(d)) return;
    await Deno.mkdir(d, { recursive: true, mode: 0o700 });
    this.#shardDirs.add(d);
  }

  /** Move an entry to the LRU end; its time reaches the index with the next batched flush. */
  #touch(hash: string, e: Entry): void {
    this.#entries.delete(hash);
    this.#entries.set(hash, e);
    e.atime = Date.now();
    this.#dirty.add(hash);
    this.#indexChanged();
  }

  #dropBroken(hash: string, e: Entry, why: string): void {
    if (this.#entries.get(hash) !== e) return;
    log.warn("Dropping chunk {hash}: {why}; it will be fetched again from the origin", {
      hash,
      why,
    });
    this.#drop(hash).catch(() => {});
  }

  /** Forget a chunk now (accounting, LRU, index) and remove its file; resolves when removed. */
  #drop(hash: string): Promise<void> {
    const e = this.#entries.get(hash);
    if (!e) return this.#deleting.get(hash) ?? Promise.resolve();
    this.#entries.delete(hash);
    this.#dirty.delete(hash);
    this.#bytes -= e.size;
    if (!this.#closed) {
      this.#chunksDb.remove(hash).catch(indexWriteFailed);
      this.#indexChanged();
    }
    const p: Promise<void> = Deno.remove(this.#chunkPath(hash)).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) {
        log.warn("Cannot remove chunk file of {hash}: {error}", { hash, error: String(err) });
      }
    }).finally(() => {
      if (this.#deleting.get(hash) === p) this.#deleting.delete(hash);
    });
    this.#deleting.set(hash, p);
    return p;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new CasClosedError(operation);
  }
}

function mapId(key: string, chunkNo: number): string {
  return `${chunkNo}\0${key}`;
}

function indexWriteFailed(e: unknown): void {
  // The chunk files are the truth; the next open reconciles the index with them.
  log.warn("Chunk cache index write failed: {error}", { error: String(e) });
}

function openEnv(indexPath: string): RootDatabase {
  // No sync per commit: a commit's fdatasync stalls every chunk write behind a journal commit
  // (measured: put 3x slower). A process crash loses nothing (the pages are in the OS cache);
  // a power loss may lose or damage recent commits, which the validation and reconciliation
  // at open repair from the chunk files. The store syncs in the background and at close.
  const env = open({ path: indexPath, maxDbs: MAX_DBS, noSync: true });
  for (const name of Object.values(DB_NAMES)) env.openDB({ name });
  const meta = env.openDB({ name: DB_NAMES.meta });
  // Written synchronously so the validator never sees a committed index without its marker.
  if (meta.get("format") === undefined) meta.putSync("format", INDEX_FORMAT);
  return env;
}

/** Remove everything in `dir`; returns how many entries were removed. */
async function emptyDir(dir: string): Promise<number> {
  let n = 0;
  for await (const d of Deno.readDir(dir)) {
    await Deno.remove(`${dir}/${d.name}`, { recursive: true });
    n++;
  }
  return n;
}

/**
 * Every chunk file under `root`, at any depth (so a changed `shardLevels` still finds them),
 * by hash. Files not named like a chunk (e.g. stray temp files) are deleted.
 */
function listChunkFiles(
  root: string,
): { files: Map<string, string>; junk: number; temps: number } {
  const files = new Map<string, string>();
  let junk = 0;
  let temps = 0;
  const walk = (dir: string) => {
    for (const d of Deno.readDirSync(dir)) {
      const path = `${dir}/${d.name}`;
      if (d.isDirectory) {
        walk(path);
      } else if (d.isFile && HASH_RE.test(d.name) && !files.has(d.name)) {
        files.set(d.name, path);
      } else {
        if (d.name.endsWith(".tmp")) temps++;
        else junk++;
        try {
          Deno.removeSync(path, { recursive: true });
        } catch {
          // Left for the next open; it is not named like a chunk, so it is never served.
        }
      }
    }
  };
  walk(root);
  return { files, junk, temps };
}
