/**
 * The music library: reads tags, keeps them in `library.db` (SQLite), scans and watches the
 * library roots, and tells listeners what changed. Data flows one way: library -> tree/search.
 *
 * ```ts
 * const { db, fullRescan } = openLibraryDatabase(`${stateDir}/library.db`);
 * const scanner = new Scanner(db, { onChange: (change) => updateTreeAndSearch(change) });
 * await scanner.scan(roots, { signal, onProgress });
 * await watchLibrary(scanner, db.origins(), { signal });
 * ```
 *
 * @module
 */
export type { Origin, Playlist, Problem, Tags, TrackRecord } from "./types.ts";
export type { CoverImage, LibraryChange } from "./change.ts";
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
