/**
 * Full-text search over the library (SPEC.md section 4.2): SQLite FTS5 in its own file
 * (`search.db`, never library.db), stamped with library.db's generation, checked when opened and
 * rebuilt from library.db when damaged or stale. Memory stays small at any library size: the
 * postings stay on disk, only the word list (for typo lookups) is held in memory.
 *
 * ```ts
 * const search = LazySearch.fromSnapshot(`${stateDir}/search.db`, {
 *   generation: db.generation(),
 *   rebuildFrom: () => db.allTracks(),
 * });
 * search.startLoading(); // returns at once; the mount serves meanwhile
 * supervisor.spawnCritical("search committer", () => (signal) =>
 *   runCommitter(search, { intervalMs: 5000, signal, generation: () => db.generation() }));
 * scanner.onTrack((t) => search.indexFile(t)); // queued until loaded
 * const hits = await search.search("beatles help", 1000, { timeoutMs: 2000 }); // [{id, score}]
 * // at shutdown, after the committer resolved (it committed): search.close()
 *
 * // `musicfs search` with no daemon: never writes, rebuilds in memory if the index is bad
 * const index = await SearchIndex.openWithRecovery(path, { readOnly: true, generation, rebuildFrom });
 * index.search(query, limit);
 * ```
 * Results are track ids; callers map them to tree paths. Queries are cut to 1024 bytes here;
 * /.search names are at most {@link SEARCH_DIR_MAX_QUERY_BYTES}.
 */
export type { Tags, TrackRecord } from "../library/types.ts";
export { type Committable, type CommitterOptions, runCommitter } from "./committer.ts";
export {
  SearchCommitError,
  SearchNotReadyError,
  SearchSnapshotCorruptError,
  SearchSnapshotError,
  SearchSnapshotMissingError,
  SearchSnapshotStaleError,
  SearchSnapshotVersionError,
  type SnapshotProblem,
} from "./errors.ts";
export {
  DEFAULT_READY_TIMEOUT_MS,
  LazySearch,
  type LazySearchOptions,
  type LoadState,
} from "./lazy.ts";
export {
  MAX_QUERY_BYTES,
  MAX_QUERY_TERMS,
  type QueryOptions,
  queryTerms,
  type SearchResult,
} from "./query.ts";
export {
  type CommitOptions,
  type CommitResult,
  DEFAULT_LIMIT,
  type OpenOptions,
  type RecoveryOptions,
  SearchIndex,
  SearchRebuildError,
  type TrackSource,
} from "./search_index.ts";
export {
  inspectSnapshot,
  SEARCH_FORMAT_VERSION,
  SEARCH_FORMAT_VERSION as SNAPSHOT_FORMAT_VERSION,
  type StoreHeader as SnapshotHeader,
} from "./store.ts";

/** The longest /.search directory name, in bytes of UTF-8 (SPEC.md section 2). */
export const SEARCH_DIR_MAX_QUERY_BYTES = 256;
/** The most matches a /.search directory lists. */
export const SEARCH_DIR_MAX_RESULTS = 1000;
export {
  repair as repairSearch,
  type RepairOptions as SearchRepairOptions,
  type SearchReport,
  type SearchState,
  verify as verifySearch,
  type VerifyOptions as SearchVerifyOptions,
} from "./verify.ts";
