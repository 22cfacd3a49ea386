/**
 * The content-addressed chunk cache (SPEC 4.3, 6): what was played or prefetched from a slow or
 * flaky origin, kept as SHA-256-named chunk files with an LMDB index that is validated in a
 * child process at open and rebuilt from the chunk files when damaged.
 *
 * ```ts
 * const cas = await CasStore.open({ dir: "/var/cache/musicfs", maxSize: 2 * 1024 ** 3 });
 * const key = fileKey({ id: track.id, size: track.size, mtimeMs: track.mtimeMs });
 * const bytes = await cas.readChunkFor(key, 0) ?? await fetchAndStore();
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
