/**
 * The records the library hands to the tree and to search. Data flows one way:
 * library -> tree/search -> fuse; these types are the first arrow.
 */

/** Normalised tags of one audio file. Missing tags are `undefined`, never empty strings. */
export interface Tags {
  /** Track artist; the first one when the file lists several. */
  artist?: string;
  /** Album artist (`albumartist`); preferred over `artist` when grouping albums. */
  albumArtist?: string;
  /** Album title. */
  album?: string;
  /** Track title. */
  title?: string;
  /** Track number on its disc, 1-based. */
  track?: number;
  /** Number of tracks on the disc, when tagged. */
  trackTotal?: number;
  /** Disc number, 1-based. */
  disc?: number;
  /** Number of discs in the album, when tagged. */
  discTotal?: number;
  /** Release year, from the year or the start of the (original) date tag. */
  year?: number;
  /** First non-empty genre. */
  genre?: string;
  /** Every genre of the file, in tag order (the first is `genre`); absent when none. */
  genres?: string[];
  /** Artist sort name (`artistsort`, TSOP, soar), for the `{artistsort}` layout field. */
  artistSort?: string;
  /** Album artist sort name (`albumartistsort`, TSO2, soaa), for `{albumartistsort}`. */
  albumArtistSort?: string;
  /** MIME type of the embedded front-cover picture, when the file has one. */
  picture?: string;
  /** The compilation flag; undefined when the file has no such tag. */
  compilation?: boolean;
  /** Container/codec as music-metadata names it, e.g. `MPEG`, `FLAC`, `Ogg/Vorbis`. */
  format?: string;
  /** Bits per second. */
  bitrate?: number;
  /** Samples per second (Hz). */
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
  /** Source file size in bytes when scanned. */
  size: number;
  /** Source modification time when scanned, in ms since the epoch; with `size`, tells changes. */
  mtimeMs: number;
  /** Source status-change time when scanned (ms); absent in rows scanned before schema 2. */
  ctimeMs?: number;
  /** Source inode number when scanned; absent in rows scanned before schema 2. */
  ino?: number;
  /** Source owner's uid when scanned; absent in rows scanned before schema 2. */
  uid?: number;
  /** Source group's gid when scanned; absent in rows scanned before schema 2. */
  gid?: number;
  /** Source permission bits (`st_mode & 0o7777`) when scanned; absent before schema 2. */
  mode?: number;
}

/** A library root. */
export interface Origin {
  /** Stable database id of the root; tracks refer to it by `originId`. */
  id: number;
  /** Absolute, resolved path of the root. */
  path: string;
}

/** A file that could not be used, and why (listed in /.musicfs/problems.txt). */
export interface Problem {
  /** Id of the {@link Origin} holding the file. */
  originId: number;
  /** Path relative to the origin root, `/`-separated. */
  relPath: string;
  /** One-line, human-readable cause, e.g. the parser's error message. */
  reason: string;
}

/** A `.m3u`/`.m3u8` playlist of a library root, with its entries resolved to source paths. */
export interface Playlist {
  /** Id of the {@link Origin} holding the playlist. */
  originId: number;
  /** Path relative to the origin root, `/`-separated. */
  relPath: string;
  /** Playlist file size in bytes when read. */
  size: number;
  /** Playlist file modification time when read, ms since the epoch. */
  mtimeMs: number;
  /**
   * Its entries in order: absolute, normalised source paths (relative entries resolved against
   * the playlist's folder, `file://` URLs decoded), or the raw line when it names no local path.
   */
  entries: string[];
}
