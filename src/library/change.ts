/**
 * The one description of a library change, from the database write that commits it, through
 * the scanner's change listener, to the virtual tree ({@link VirtualTree.apply} in src/fs/) and
 * the search index: no conversions on the way.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import type { LibraryChange } from "./change.ts";
 *
 * const change: LibraryChange = {
 *   added: [],
 *   changed: [],
 *   removed: [],
 *   problemsChanged: false,
 *   covers: [{ originId: 1, dir: "A/B", relPath: "A/B/cover.jpg", ext: "jpg" }],
 *   removedCovers: [],
 *   playlists: [],
 *   removedPlaylists: [],
 *   generation: 7,
 * };
 * assert.equal(change.covers.length, 1);
 * ```
 *
 * @module
 */
import type { Playlist, TrackRecord } from "./types.ts";

/** A cover image of one source directory, as the library reports it. */
export interface CoverImage {
  /** Id of the {@link Origin} holding the image. */
  originId: number;
  /** The source directory, relative to the origin root (`""` for the root itself). */
  dir: string;
  /** The image file, relative to the origin root. */
  relPath: string;
  /** Lower-case extension without the dot, e.g. `jpg`. */
  ext: string;
  /** Size in bytes; when absent, the tree stats the file once when first asked. */
  size?: number;
  /** Modification time in ms since the epoch; stat'ed along with `size` when absent. */
  mtimeMs?: number;
}

/** A directory inside an origin. */
export interface OriginDir {
  /** Id of the {@link Origin}. */
  originId: number;
  /** Directory relative to the origin root, `""` for the root itself. */
  dir: string;
}

/** A path inside an origin. */
export interface OriginPath {
  /** Id of the {@link Origin}. */
  originId: number;
  /** Path relative to the origin root, `/`-separated. */
  relPath: string;
}

/**
 * What one committed batch changed in the library. Records in `added` and `changed` are
 * treated alike by the tree; `removed` holds the records as they were before.
 */
export interface LibraryChange {
  /** Tracks new to the library, with their assigned ids. */
  added: TrackRecord[];
  /** Tracks rewritten in place (same id and path; new tags, size or mtime). */
  changed: TrackRecord[];
  /** Tracks gone (deleted, or unreadable now), as they were before. */
  removed: TrackRecord[];
  /** The problem list changed (re-read it with `Database.problems`): problems.txt is stale. */
  problemsChanged: boolean;
  /** Cover images new or replaced (one per source directory). */
  covers: CoverImage[];
  /** Source directories that no longer have a cover. */
  removedCovers: OriginDir[];
  /** Playlists new or changed. */
  playlists: Playlist[];
  /** Playlists gone. */
  removedPlaylists: OriginPath[];
  /** The database generation this change committed. */
  generation: number;
}

/** A change that changes nothing (yet), at `generation`: what a batch starts from. */
export function emptyChange(generation = 0): LibraryChange {
  return {
    added: [],
    changed: [],
    removed: [],
    problemsChanged: false,
    covers: [],
    removedCovers: [],
    playlists: [],
    removedPlaylists: [],
    generation,
  };
}
