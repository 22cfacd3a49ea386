/**
 * The records the library hands to the tree and to search. Data flows one way:
 * library -> tree/search -> fuse; these types are the first arrow.
 */

/** Normalised tags of one audio file. Missing tags are `undefined`, never empty strings. */
export interface Tags {
  artist?: string;
  albumArtist?: string;
  album?: string;
  title?: string;
  track?: number;
  trackTotal?: number;
  disc?: number;
  discTotal?: number;
  year?: number;
  genre?: string;
  compilation?: boolean;
  /** Container/codec as music-metadata names it, e.g. `MPEG`, `FLAC`, `Ogg/Vorbis`. */
  format?: string;
  bitrate?: number;
  sampleRate?: number;
  /** Seconds, when cheap to know. */
  duration?: number;
}

/** One audio file of a library root, as stored in library.db. */
export interface TrackRecord extends Tags {
  /** Stable id from the database; never reused for another file. */
  id: number;
  /** The library root (origin) id. */
  originId: number;
  /** Path relative to the origin root, `/`-separated. */
  relPath: string;
  /** Lower-case source extension without the dot, e.g. `flac`. */
  ext: string;
  size: number;
  mtimeMs: number;
}

/** A library root. */
export interface Origin {
  id: number;
  /** Absolute, resolved path of the root. */
  path: string;
}

/** A file that could not be used, and why (listed in /.musicfs/problems.txt). */
export interface Problem {
  originId: number;
  relPath: string;
  reason: string;
}
