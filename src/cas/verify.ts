/**
 * Verification and repair of the chunk cache, for `musicfs check`. Verification validates the
 * LMDB index in a child process ({@link checkIndex}, as the daemon does: lmdb can abort on a
 * damaged file) while this process hashes every chunk file; repair deletes the chunk files
 * whose content does not match their name and then opens the store the daemon's way
 * ({@link CasStore.openWithReport}: damaged index moved aside and rebuilt, unlisted files
 * adopted, missing ones dropped).
 *
 * @module
 */
import { checkIndex, type IndexCheck } from "./index_check.ts";
import { cacheLayout, type CasOpenReport, CasStore, isChunkName, sha256Hex } from "./store.ts";

/**
 * `absent`: never created or empty (not a fault); `stale`: sound, but the index and the files
 * disagree on counts (what a crash leaves; reconciled at start); `damaged`: a bad index or
 * chunk files that fail their hash; `error`: could not be checked; `repaired`.
 */
export type CacheState = "ok" | "absent" | "stale" | "damaged" | "error" | "repaired";

/** What {@link verify} or {@link repair} found. */
export interface CacheReport {
  store: "chunk cache";
  dir: string;
  state: CacheState;
  /** The child's verdict on the LMDB index. */
  index?: IndexCheck;
  /** Chunk files whose content matches their name, and their bytes. */
  chunks?: number;
  bytes?: number;
  /** Chunk files whose content does not match their name. */
  badChunks?: string[];
  /** There are chunk files but no index. */
  indexMissing?: boolean;
  /** The index's counts differ from the files' (only judged with no daemon running). */
  mismatch?: { indexChunks: number; indexBytes: number };
  /** A running daemon may be changing the cache while it is checked. */
  live?: boolean;
  /** After a repair: what was found before, and what opening the store did. */
  was?: CacheState;
  deletedBad?: number;
  opened?: CasOpenReport;
  /** Why it could not be checked or repaired. */
  error?: string;
}

/** Options of {@link verify} and {@link repair}. */
export interface CacheCheckOptions {
  /** The cache dir. */
  dir: string;
  /** A daemon is running (counts may move; not judged). */
  live?: boolean;
  /** Command running the LMDB validator (see `checkIndex`); for a compiled binary. */
  validatorCommand?: string[];
  /** Bound on the LMDB validation. Default 10 000 ms. */
  validateTimeoutMs?: number;
  /** For {@link repair}: the size bound while opening. Default: none (a repair never evicts). */
  maxSize?: number;
}

/** Checks the cache without changing it. Never throws. */
export async function verify(opts: CacheCheckOptions): Promise<CacheReport> {
  const layout = cacheLayout(opts.dir);
  const base = { store: "chunk cache" as const, dir: opts.dir, live: opts.live };
  try {
    await Deno.lstat(opts.dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { ...base, state: "absent" };
    return { ...base, state: "error", error: messageOf(e) };
  }
  let index: IndexCheck;
  let scan: ChunkScan;
  try {
    // The child walks the index while this process hashes the chunk files.
    [index, scan] = await Promise.all([
      checkIndex(layout.index, {
        timeoutMs: opts.validateTimeoutMs,
        command: opts.validatorCommand,
      }),
      scanChunks(layout.chunks),
    ]);
  } catch (e) {
    return { ...base, state: "error", error: messageOf(e) };
  }
  const report: CacheReport = {
    ...base,
    state: "ok",
    index,
    chunks: scan.good,
    bytes: scan.bytes,
    badChunks: scan.bad,
  };
  if (index.status === "damaged" || scan.bad.length) report.state = "damaged";
  if (index.status === "absent" && (scan.good || scan.bad.length)) {
    report.state = "damaged";
    report.indexMissing = true;
  }
  if (
    index.status === "ok" && !opts.live &&
    (index.chunks !== scan.good || index.bytes !== scan.bytes)
  ) {
    report.mismatch = { indexChunks: index.chunks, indexBytes: index.bytes };
    if (report.state === "ok") report.state = "stale";
  }
  if (report.state === "ok" && index.status === "absent") report.state = "absent";
  return report;
}

/** Repairs a damaged or stale cache the daemon's way (see the module doc). Never throws. */
export async function repair(opts: CacheCheckOptions): Promise<CacheReport> {
  const found = await verify(opts);
  if (found.state !== "damaged" && found.state !== "stale") return found;
  try {
    // Opening indexes the chunk files it does not know, but does not re-hash those it knows.
    let deleted = 0;
    for (const path of found.badChunks ?? []) {
      try {
        await Deno.remove(path);
        deleted++;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    const { store, report } = await CasStore.openWithReport({
      dir: opts.dir,
      maxSize: opts.maxSize ?? Number.MAX_SAFE_INTEGER,
      validatorCommand: opts.validatorCommand,
      validateTimeoutMs: opts.validateTimeoutMs,
    });
    const stats = store.stats();
    await store.close();
    return {
      store: "chunk cache",
      dir: opts.dir,
      state: "repaired",
      was: found.state,
      deletedBad: deleted,
      opened: report,
      chunks: stats.chunks,
      bytes: stats.bytes,
      index: found.index,
      mismatch: found.mismatch,
      indexMissing: found.indexMissing,
    };
  } catch (e) {
    return { ...found, error: `repair failed: ${messageOf(e)}` };
  }
}

interface ChunkScan {
  good: number;
  bytes: number;
  bad: string[];
}

/**
 * Hashes every chunk file under `root`. Names that are not hashes are no chunks (the store
 * deletes them at open); files vanishing meanwhile were evicted by a running daemon.
 */
async function scanChunks(root: string): Promise<ChunkScan> {
  const scan: ChunkScan = { good: 0, bytes: 0, bad: [] };
  const walk = async (dir: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.isFile && isChunkName(e.name)) {
        let bytes: Uint8Array;
        try {
          bytes = await Deno.readFile(path);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) continue;
          throw err;
        }
        if ((await sha256Hex(bytes)) === e.name) {
          scan.good++;
          scan.bytes += bytes.length;
        } else {
          scan.bad.push(path);
        }
      }
    }
  };
  await walk(root);
  return scan;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
