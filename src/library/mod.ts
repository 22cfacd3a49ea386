/**
 * The music library: reads tags, keeps them in `library.db` (SQLite), scans and watches the
 * library roots, and tells listeners what changed. Data flows one way: library -> tree/search.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { type LibraryChange, openLibraryDatabase, Scanner } from "./mod.ts";
 *
 * const stateDir = await Deno.makeTempDir();
 * const music = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${music}/Road Trip.m3u`, "#EXTM3U\nA/01 - Song.mp3\n");
 * const { db, fullRescan } = openLibraryDatabase(`${stateDir}/library.db`);
 * // The one change type: what the tree (VirtualTree.apply) and search take as they are.
 * const changes: LibraryChange[] = [];
 * const scanner = new Scanner(db, { onChange: (change) => changes.push(change) });
 * try {
 *   await scanner.scan([music]);
 *   // Then `watchLibrary(scanner, db.origins(), { signal })` follows the roots until aborted.
 * } finally {
 *   scanner.close();
 *   db.close();
 *   await Deno.remove(stateDir, { recursive: true });
 *   await Deno.remove(music, { recursive: true });
 * }
 * assert.ok(fullRescan);
 * assert.deepEqual(changes.flatMap((c) => c.playlists.map((p) => p.relPath)), ["Road Trip.m3u"]);
 * ```
 *
 * @module
 */
export type { Origin, Playlist, Problem, Tags, TrackRecord } from "./types.ts";
export type { CoverImage, LibraryChange } from "./change.ts";
export { emptyChange } from "./change.ts";
export { markCleanClose, takeCleanClose } from "./clean_close.ts";
export {
  type PackedTreeRows,
  TREE_ROW_WIDTH,
  type TreeRow,
  TreeRowKind,
  type TreeRowsUpdate,
  type TreeStamp,
} from "./tree_rows.ts";
export {
  type Batch,
  type Cover,
  type CoverUpsert,
  Database,
  DatabaseCorruptedError,
  DatabaseWriteError,
  type FileUpsert,
  type KnownEntry,
  type LibraryDatabaseOpen,
  type LibraryOpenOptions,
  openLibraryDatabase,
  type OpenOptions,
  type OriginDir,
  type OriginPath,
  type ProblemUpsert,
  type ScanCheckpoint,
  type ScanProgressUpdate,
  type ScanStart,
  SCHEMA_VERSION,
  setAsideLibraryDatabase,
  type WriteFailure,
} from "./db.ts";
export {
  AUDIO_EXTENSIONS,
  extensionOf,
  isAudioName,
  normaliseTags,
  type RawMetadata,
  readTags,
  type TagPosition,
  type TagResult,
  VARIOUS_ARTISTS,
} from "./tags.ts";
export { ParseCancelledError, ParserPool, type ParserPoolOptions } from "./pool.ts";
export {
  EmptyRootError,
  Scanner,
  type ScannerOptions,
  type ScanOptions,
  type ScanProgress,
  type ScanResult,
  type ScanStages,
} from "./scanner.ts";
export {
  checkSources,
  integrityProblems,
  type SourceCheck,
  type SourceCheckOptions,
  trackProblems,
} from "./integrity.ts";
export { Walker, WalkError } from "./walker.ts";
export type { WalkBatch, WalkDir, WalkFile, WalkProblem, WalkRules, WalkSummary } from "./walk.ts";
export { coverRank, isHiddenName, isHiddenPath } from "./walk.ts";
export {
  LibraryWatcher,
  REVALIDATE_MS,
  revalidateMsFromEnv,
  watchLibrary,
  type WatchOptions,
  type WatchState,
} from "./watcher.ts";
export {
  type EmbeddedPicture,
  embeddedPictureRange,
  locatePicture,
  readEmbeddedPicture,
} from "./embedded_picture.ts";
export { cleanText, fixMojibake } from "./text.ts";
export { type MergedRoot, mergeRoots } from "./roots.ts";
export { countProblems, type ProblemCounts } from "./problems.ts";
export { decodePlaylist, isPlaylistName, MAX_PLAYLIST_BYTES, parsePlaylist } from "./playlist.ts";
export { type FrontPicture, pickFront, readFrontPicture } from "./front_picture.ts";
export {
  type LibraryReport,
  type LibraryState,
  repair as repairLibrary,
  verify as verifyLibrary,
  verifySources as verifyLibrarySources,
} from "./verify.ts";
