/**
 * Full-text search over the library (SPEC.md section 4.2): SQLite FTS5 in its own file
 * (`search.db`, never library.db), stamped with library.db's generation, checked when opened and
 * rebuilt from library.db when damaged or stale. Memory stays small at any library size: the
 * postings stay on disk, only the word list (for typo lookups) is held in memory.
 *
 * Results are track ids; callers map them to tree paths. Queries are cut to 1024 bytes here;
 * /.search names are at most {@link SEARCH_DIR_MAX_QUERY_BYTES}.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { LazySearch, runCommitter, SearchIndex, type TrackRecord } from "./mod.ts";
 *
 * const stateDir = await Deno.makeTempDir();
 * const path = `${stateDir}/search.db`;
 * const track = (id: number, artist: string, title: string): TrackRecord => ({
 *   id, originId: 1, relPath: `${id}.flac`, ext: "flac", size: 1, mtimeMs: 0, artist, title,
 * });
 * const library = [track(1, "The Beatles", "Help!"), track(2, "Björk", "Jóga")]; // library.db
 * let generation = 1; // library.db's, bumped by each committed batch
 *
 * // The daemon: the mount serves while the index opens (no file yet: rebuilt from library.db).
 * const search = LazySearch.fromSnapshot(path, { generation, rebuildFrom: () => library });
 * search.startLoading(); // returns at once
 * search.indexFile(track(3, "The Beatles", "Yesterday")); // queued until loaded
 * generation++;
 * const stop = new AbortController(); // the shutdown
 * const committer = runCommitter(search, {
 *   intervalMs: 5000,
 *   signal: stop.signal,
 *   generation: () => generation,
 * });
 * const ids = async (q: string) =>
 *   (await search.search(q, 1000, { timeoutMs: 2000 })).map((hit) => hit.id);
 * try {
 *   assert.deepEqual(await ids("beatles help"), [1]);
 *   assert.deepEqual(await ids("bjork"), [2]); // diacritics folded
 *   assert.deepEqual(await ids("yesterdy"), [3]); // a typo
 *   assert.deepEqual((await ids("beat")).sort(), [1, 3]); // a prefix
 * } finally {
 *   stop.abort();
 *   await committer; // one last commit: nothing indexed is lost
 *   search.close();
 * }
 *
 * // `musicfs search` with no daemon: never writes, rebuilds in memory if the file is bad (here
 * // it is not: the shutdown commit stamped generation 2 on all three documents).
 * const index = await SearchIndex.openWithRecovery(path, { readOnly: true, generation });
 * try {
 *   assert.equal(index.size, 3);
 *   assert.deepEqual(index.search("jóga").map((h) => h.id), [2]);
 * } finally {
 *   index.close();
 *   await Deno.remove(stateDir, { recursive: true });
 * }
 * ```
 *
 * @module
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
