/**
 * The daemon's chunk-cache route (SPEC.md section 6): which library roots are read through the
 * CAS (`--cache-reads remote`: network filesystems; `always`: all; `never`: none), the reader
 * that serves those reads, and the prefetcher that warms the rest of an opened track.
 */
import {
  CachedReader,
  CasStore,
  type ChunkCache,
  type OpenSource,
  Prefetcher,
  type SourceFile,
} from "../cas/mod.ts";
import type { CachedFile, CacheRoute, SourceOpener } from "../fs/mod.ts";
import { preadAsync } from "../fuse/mod.ts";
import type { Origin } from "../library/mod.ts";
import { type HealthMonitor, isNetworkFs } from "./health.ts";
import { acquireLock } from "./lock.ts";
import { logger } from "../log/mod.ts";

const log = logger("daemon", "cache");

/** An open cache route; `close` in the shutdown. */
export interface DaemonCache {
  route: CacheRoute;
  /** Origin ids read through the cache. */
  routed: Set<number>;
  mode: string;
  stats(): {
    chunks: number;
    bytes: number;
    maxSize: number;
    mode: string;
    /** Chunk stores that failed (full disk, cache full); reads were served regardless. */
    failedWrites: number;
    /** The last such failure and when, if any. */
    lastWriteError?: string;
  };
  close(): Promise<void>;
}

/**
 * Decide which origins go through the cache and open it when any does; resolves undefined
 * when none does (the CAS is then never opened, which keeps startup lean).
 */
export async function openDaemonCache(opts: {
  cacheDir: string;
  cacheSize: number;
  mode: "remote" | "always" | "never";
  origins: Origin[];
  health: HealthMonitor;
  /** The checked source open of the read path (no FIFO, no symlink out of the library). */
  opener?: SourceOpener;
}): Promise<DaemonCache | undefined> {
  if (opts.mode === "never") return undefined;
  const routed = new Set<number>();
  for (const o of opts.origins) {
    if (opts.mode === "always" || await isNetworkFs(o.path, { timeoutMs: 1500 })) routed.add(o.id);
  }
  if (routed.size === 0) return undefined;
  // One daemon per cache dir, taken before the index is opened (and maybe rebuilt).
  await Deno.mkdir(opts.cacheDir, { recursive: true, mode: 0o700 });
  const lock = await acquireLock(opts.cacheDir, { name: "musicfs" });
  let cas: CasStore;
  try {
    cas = await CasStore.open({ dir: opts.cacheDir, maxSize: opts.cacheSize });
  } catch (e) {
    await lock.release();
    throw e;
  }
  // Store failures (a full cache disk, StoreFullError) never fail a read: the bytes are
  // served anyway. Count them here so status shows the condition, not only the log.
  const writes = { failed: 0, lastError: undefined as string | undefined, at: 0 };
  const counted: ChunkCache = {
    readChunkFor: (k, n) => cas.readChunkFor(k, n),
    getChunkFor: (k, n) => cas.getChunkFor(k, n),
    storeChunkFor: (k, n, b) =>
      cas.storeChunkFor(k, n, b).catch((e) => {
        writes.failed++;
        writes.lastError = (e as Error).message;
        writes.at = Date.now();
        throw e;
      }),
  };
  const opener = opts.opener;
  const openSource = opener &&
    (async (f: { path: string; originId: string }): Promise<OpenSource> => {
      // A failed open is a failed chunk fetch (EIO), whatever errno the open would answer.
      const src = await opener.open(f.path, f.originId).catch((e: Error) => {
        throw new Error(e.message, { cause: e });
      });
      return {
        ...src,
        read: async (dst, offset) => {
          const n = await preadAsync(src.fd, dst, offset);
          if (n < 0) throw new Error(`Cannot read ${f.path}`);
          return n;
        },
        close: () => opener.close(src.fd),
      };
    });
  const reader = new CachedReader({ cas: counted, health: opts.health, openSource });
  const prefetcher = new Prefetcher({ fetchChunk: reader.fetchChunk, concurrency: 2 });
  log.info("Reading {count} librar(ies) through the chunk cache at {dir}", {
    count: routed.size,
    dir: opts.cacheDir,
  });
  // Chunks are keyed by the source path, not the track id: ids are reassigned when library.db
  // is rebuilt (or reused by SQLite), and same-size files with the same mtime are common, so
  // an id key could serve another file's bytes.
  const toSource = (f: CachedFile): SourceFile => ({
    ...f,
    originId: String(f.originId),
    id: f.path,
  });
  return {
    routed,
    mode: opts.mode,
    route: {
      routes: (id) => routed.has(id),
      read: (file, offset, dst) => reader.read(toSource(file), offset, dst),
      opened: (file) => {
        const { key, chunkNos } = reader.prefetchFile(toSource(file));
        if (chunkNos.length) prefetcher.enqueue(key, chunkNos);
      },
    },
    stats: () => ({
      ...cas.stats(),
      mode: opts.mode,
      failedWrites: writes.failed,
      lastWriteError: writes.lastError &&
        `${writes.lastError} (${new Date(writes.at).toISOString()})`,
    }),
    async close() {
      prefetcher.stop();
      await reader.idle();
      await cas.close();
      await lock.release();
    },
  };
}
