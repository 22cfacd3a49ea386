/**
 * The content-addressed chunk cache (SPEC 4.3, 6): what was played or prefetched from a slow or
 * flaky origin, kept as SHA-256-named chunk files with an LMDB index that is validated in a
 * child process at open and rebuilt from the chunk files when damaged.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { CasStore, fileKey } from "./mod.ts";
 *
 * const dir = await Deno.makeTempDir();
 * // One version of a source file: once its size or mtime changes, its key does too, so the
 * // chunks of the old version are never served for the new one.
 * const key = fileKey({ id: 42, size: 3_000_000, mtimeMs: 1_700_000_000_000 });
 * const chunk = new TextEncoder().encode("the first MiB of track 42");
 * let cas = await CasStore.open({ dir, maxSize: 64 * 1024 ** 2 });
 * try {
 *   assert.equal(await cas.readChunkFor(key, 0), null); // a miss: read it from the origin...
 *   await cas.storeChunkFor(key, 0, chunk); // ...and keep it
 *   await cas.close();
 *   // Next start: the index is checked in a child process, and the chunk is still there.
 *   cas = await CasStore.open({ dir, maxSize: 64 * 1024 ** 2 });
 *   assert.deepEqual(await cas.readChunkFor(key, 0), chunk);
 *   const edited = fileKey({ id: 42, size: 3_000_001, mtimeMs: 1_700_000_100_000 });
 *   assert.equal(await cas.readChunkFor(edited, 0), null); // the edited file: a miss
 *   assert.deepEqual(cas.stats(), { chunks: 1, bytes: chunk.length, maxSize: 64 * 1024 ** 2 });
 * } finally {
 *   await cas.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 *
 * @module
 */
export {
  type CasOpenReport,
  type CasOptions,
  type CasStats,
  CasStore,
  fileKey,
  sha256Hex,
} from "./store.ts";
export {
  CasClosedError,
  CasReadError,
  CasWriteError,
  formatBytes,
  StoreFullError,
} from "./errors.ts";
export {
  checkIndex,
  type CheckIndexOptions,
  type IndexCheck,
  type IndexSummary,
  validateIndexMain,
} from "./index_check.ts";
export {
  type FetchChunk,
  Prefetcher,
  type PrefetcherOptions,
  type PrefetchStats,
  type PrefetchStopReason,
} from "./prefetch.ts";
export {
  CachedReader,
  type CachedReaderOptions,
  type ChunkCache,
  type OpenSource,
  openSourcePlain,
  type SourceFile,
} from "./reader.ts";
export { cacheLayout, isChunkName } from "./store.ts";
export {
  type CacheCheckOptions,
  type CacheReport,
  type CacheState,
  repair as repairCache,
  verify as verifyCache,
} from "./verify.ts";
