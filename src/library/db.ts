/**
 * `library.db`: the SQLite cache of everything the scanner learnt (SPEC.md section 4.1).
 *
 * One connection, one writer: every change goes through {@link Database.applyBatch} (or another
 * write method), which runs in one transaction and bumps the `generation` counter, so readers
 * (the search snapshot) can tell which state they match. WAL with `synchronous=NORMAL`: a power
 * cut may lose the last transactions but never corrupts the file; a crash of the process loses
 * nothing committed.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { logger } from "../log/mod.ts";
import { extensionOf } from "./tags.ts";
import { integrityProblems } from "./integrity.ts";
import { takeCleanClose } from "./clean_close.ts";
import type { Origin, Playlist, Problem, Tags, TrackRecord } from "./types.ts";
import {
  type PackedTreeRows,
  TREE_ROW_WIDTH,
  type TreeRow,
  type TreeRowKind,
  type TreeRowsUpdate,
  type TreeStamp,
} from "./tree_rows.ts";
import { existsSync, moveAside } from "../util/mod.ts";
import { emptyChange, type LibraryChange, type OriginDir, type OriginPath } from "./change.ts";

export type { OriginDir, OriginPath };

const log = logger("library", "db");

/** Schema version written to `PRAGMA user_version`. */
export const SCHEMA_VERSION = 4;

/** The tree's rows (tree_rows.ts): created by migration 3 -> 4, and again by a full dump. */
const TREE_TABLE = `CREATE TABLE tree_entries (
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    ino INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    ref INTEGER NOT NULL,
    path TEXT,
    size INTEGER,
    mtime_ms INTEGER,
    nlink INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
  ) WITHOUT ROWID;`;
const TREE_INDEX = "CREATE INDEX IF NOT EXISTS tree_entries_ino ON tree_entries (ino);";

/**
 * Migrations by target version: `MIGRATIONS[n]` takes a version-n database to n+1. Each runs in
 * the same transaction as the `user_version` bump, so a crash mid-migration leaves the old
 * version intact.
 */
const MIGRATIONS: string[] = [
  // 0 -> 1: the initial schema.
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('generation', 0);
  CREATE TABLE origins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE
  );
  -- AUTOINCREMENT: ids become inode numbers, so they must never be reused for another file.
  CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin_id INTEGER NOT NULL,
    rel_path TEXT NOT NULL,
    ext TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    artist TEXT,
    album_artist TEXT,
    album TEXT,
    title TEXT,
    track INTEGER,
    track_total INTEGER,
    disc INTEGER,
    disc_total INTEGER,
    year INTEGER,
    genre TEXT,
    compilation INTEGER,
    format TEXT,
    bitrate REAL,
    sample_rate INTEGER,
    duration REAL,
    UNIQUE (origin_id, rel_path)
  );
  -- size/mtime of a file that failed to parse, so an unchanged broken file is not re-read;
  -- NULL for walk problems (unreadable directory, symlink loop), which are re-checked each scan.
  CREATE TABLE problems (
    origin_id INTEGER NOT NULL,
    rel_path TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER,
    mtime_ms INTEGER,
    PRIMARY KEY (origin_id, rel_path)
  ) WITHOUT ROWID;
  -- The cover image of each source directory that has one ('' is the origin root).
  CREATE TABLE covers (
    origin_id INTEGER NOT NULL,
    dir TEXT NOT NULL,
    rel_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    PRIMARY KEY (origin_id, dir)
  ) WITHOUT ROWID;
  -- One row per origin: the last (or current) scan. finished_ms IS NULL means a scan was
  -- interrupted; committed counts files committed since it started, across resumes.
  CREATE TABLE scans (
    origin_id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    resumes INTEGER NOT NULL DEFAULT 0,
    seen INTEGER NOT NULL DEFAULT 0,
    parsed INTEGER NOT NULL DEFAULT 0,
    committed INTEGER NOT NULL DEFAULT 0
  );
  `,
  // 1 -> 2: the source's identity and permissions (change detection by ctime + inode, access
  // checks by owner and mode) and the tags of real libraries (several genres, sort names, an
  // embedded cover). Rows from version 1 keep NULLs until their file is next parsed.
  `
  ALTER TABLE files ADD COLUMN ctime_ms INTEGER;
  ALTER TABLE files ADD COLUMN ino INTEGER;
  ALTER TABLE files ADD COLUMN uid INTEGER;
  ALTER TABLE files ADD COLUMN gid INTEGER;
  ALTER TABLE files ADD COLUMN mode INTEGER;
  ALTER TABLE files ADD COLUMN genres TEXT;
  ALTER TABLE files ADD COLUMN artist_sort TEXT;
  ALTER TABLE files ADD COLUMN album_artist_sort TEXT;
  ALTER TABLE files ADD COLUMN picture TEXT;
`,
  // 2 -> 3: names that stay put, and the library's playlists.
  `
  -- The virtual tree's name assignments that must survive a restart: a track whose name in a
  -- directory (by inode) carries a collision suffix or is wanted by another entry there.
  -- Keyed by file first, so a removed file frees its names in one range delete. Issue 14
  -- moves every entry here (rows instead of a tree recomputed at start); dir stays an inode.
  CREATE TABLE names (
    file_id INTEGER NOT NULL,
    dir INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (file_id, dir)
  ) WITHOUT ROWID;
  CREATE TRIGGER files_free_names AFTER DELETE ON files BEGIN
    DELETE FROM names WHERE file_id = old.id;
  END;
  -- .m3u/.m3u8 files: entries are absolute source paths (or the raw line), joined by U+001F.
  CREATE TABLE playlists (
    origin_id INTEGER NOT NULL,
    rel_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (origin_id, rel_path)
  ) WITHOUT ROWID;
`,
  // 3 -> 4: the virtual tree as rows (tree_rows.ts), served at start until the tree is rebuilt
  // in memory; tree_meta stamps them with the generation they reflect.
  `
  ${TREE_TABLE}
  ${TREE_INDEX}
  CREATE TABLE tree_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
`,
];

/** The database file is damaged or is not a SQLite database at all. */
export class DatabaseCorruptedError extends Error {
  /** The database file. */
  readonly path: string;
  /** What is wrong, without the path: e.g. `integrity check failed: ...`. */
  readonly detail: string;
  /** Creates the error for `path`, `detail` saying what is wrong. */
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super(`Cannot open database ${path}: ${detail}`, options);
    this.name = "DatabaseCorruptedError";
    this.path = path;
    this.detail = detail;
  }
}

/** Why a write failed: the disk is full, the database is read-only, or an I/O error. */
export type WriteFailure = "full" | "readonly" | "io" | "other";

/**
 * A write to the database failed; the transaction was rolled back and nothing committed before
 * is affected.
 */
export class DatabaseWriteError extends Error {
  /** What went wrong, for callers that react differently (e.g. pause on a full disk). */
  readonly kind: WriteFailure;
  /** Creates the error; `cause` is the SQLite error. */
  constructor(kind: WriteFailure, detail: string, options?: { cause?: unknown }) {
    super(`Cannot write to database: ${detail}`, options);
    this.name = "DatabaseWriteError";
    this.kind = kind;
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const CORRUPT_PATTERN = /not a database|malformed|corrupt/i;

/** A SQLite error during a write, as one of the library's errors. */
function writeError(path: string, e: unknown): Error {
  if (e instanceof DatabaseWriteError || e instanceof DatabaseCorruptedError) return e;
  const m = messageOf(e);
  if (/disk is full|SQLITE_FULL/i.test(m)) {
    return new DatabaseWriteError("full", "disk is full", { cause: e });
  }
  if (/readonly|read-only/i.test(m)) {
    return new DatabaseWriteError("readonly", "the database or its directory is read-only", {
      cause: e,
    });
  }
  if (CORRUPT_PATTERN.test(m)) return new DatabaseCorruptedError(path, m, { cause: e });
  if (/disk I\/O error/i.test(m)) {
    return new DatabaseWriteError("io", "disk I/O error", { cause: e });
  }
  return new DatabaseWriteError("other", m, { cause: e });
}

/** One file to insert or update, with its parsed tags. */
export interface FileUpsert {
  /** Id of the {@link Origin} holding the file. */
  originId: number;
  /** Path relative to the origin root, `/`-separated; with `originId`, the file's key. */
  relPath: string;
  /** Lower-case extension without the dot, e.g. `flac`. */
  ext: string;
  /** File size in bytes, as stat'ed before parsing. */
  size: number;
  /** Modification time in ms since the epoch, as stat'ed before parsing. */
  mtimeMs: number;
  /** Status-change time in ms, as stat'ed before parsing. */
  ctimeMs?: number;
  /** Inode number, as stat'ed before parsing. */
  ino?: number;
  /** Owner's uid, as stat'ed before parsing. */
  uid?: number;
  /** Group's gid, as stat'ed before parsing. */
  gid?: number;
  /** Permission bits (`st_mode & 0o7777`), as stat'ed before parsing. */
  mode?: number;
  /** The parsed, normalised tags. */
  tags: Tags;
}

/** A file or directory that cannot be used. `size`/`mtimeMs` only for files that failed to parse. */
export interface ProblemUpsert extends Problem {
  /** Size in bytes of the file that failed to parse; it is re-read only when this changes. */
  size?: number;
  /** Modification time (ms since the epoch) of the file that failed to parse. */
  mtimeMs?: number;
}

/** The cover image chosen for one source directory. */
export interface Cover {
  /** Id of the {@link Origin} holding the directory. */
  originId: number;
  /** Directory relative to the origin root, `""` for the root itself. */
  dir: string;
  /** The image, relative to the origin root. */
  relPath: string;
  /** Lower-case extension of the image without the dot, e.g. `jpg`. */
  ext: string;
  /** Image size in bytes. */
  size: number;
  /** Image modification time in ms since the epoch. */
  mtimeMs: number;
}

/** A cover image as the scanner records it ({@link Cover} without the derived `ext`). */
export type CoverUpsert = Omit<Cover, "ext">;

function coverOf(
  originId: number,
  dir: string,
  relPath: string,
  size: number,
  mtimeMs: number,
): Cover {
  return { originId, dir, relPath, ext: extensionOf(relPath), size, mtimeMs };
}

/** Scan counters stored with a batch, so an interrupted scan knows where it stood. */
export interface ScanProgressUpdate {
  /** The origin being scanned. */
  originId: number;
  /** Audio files seen by the walk so far. */
  seen: number;
  /** Files parsed so far in this scan (committed or not). */
  parsed: number;
}

/** Everything one transaction changes. */
export interface Batch {
  /** Tracks to insert, or update when one already exists at the same path. */
  files?: FileUpsert[];
  /** Files that failed to parse or could not be walked; a track at the same path is removed. */
  problems?: ProblemUpsert[];
  /** Tracks (and problems) that vanished. */
  remove?: OriginPath[];
  /** Cover images to record, one per source directory (replacing the previous one). */
  covers?: CoverUpsert[];
  /** Directories whose cover is gone. */
  removeCovers?: OriginDir[];
  /** Scan counters to store with this batch; the files and parse failures in it count as committed. */
  scan?: ScanProgressUpdate;
  /** Playlists read (new or changed). */
  playlists?: Playlist[];
  /** Playlists gone. */
  removePlaylists?: OriginPath[];
}

/** A stored name of the virtual tree (see the `names` table). */
export interface NameRow {
  /** The track id. */
  fileId: number;
  /** Inode of the virtual directory. */
  dir: number;
  /** The name there. */
  name: string;
}

/** The stored state of a file, for the scanner's size+mtime comparison. */
export interface KnownEntry {
  /** Size in bytes when last read. */
  size: number;
  /** Modification time (ms since the epoch) when last read. */
  mtimeMs: number;
  /** Status-change time when last read; absent for problems and rows from schema 1. */
  ctimeMs?: number;
  /** Inode number when last read; absent for problems and rows from schema 1. */
  ino?: number;
  /** `problem`: it failed to parse last time (re-read only if it changed). */
  kind: "track" | "problem";
}

/** The scan checkpoint of one origin. */
export interface ScanCheckpoint {
  /** The origin scanned. */
  originId: number;
  /** When the scan started, ms since the epoch (kept across resumes). */
  startedMs: number;
  /** Last progress, resume or finish, ms since the epoch. */
  updatedMs: number;
  /** Undefined while the scan runs or when it was interrupted. */
  finishedMs?: number;
  /** How many times an interrupted scan was resumed. */
  resumes: number;
  /** Audio files seen by the walk so far. */
  seen: number;
  /** Files parsed so far (committed or not). */
  parsed: number;
  /** Files (tracks and parse failures) committed since the scan started, across resumes. */
  committed: number;
}

/** How {@link Database.beginScan} found the origin's last scan. */
export interface ScanStart {
  /** The previous scan did not finish (the daemon was killed or stopped mid-scan). */
  resumed: boolean;
  /** Files committed by the interrupted scan before it stopped (0 when not resumed). */
  committedBefore: number;
}

type Row = Record<string, unknown>;

/**
 * `rel_path` is the scope or below it; binds `(scope, scope + "/", scope + "0")`, and matches
 * everything for scope `""` ('0' follows '/' in code point order, so the range is the subtree).
 */
const UNDER = "(?2 = '' OR rel_path = ?2 OR (rel_path >= ?3 AND rel_path < ?4))";

function underParams(scope: string): [string, string, string] {
  return [scope, scope + "/", scope + "0"];
}

const TRACK_COLUMNS = `id, origin_id, rel_path, ext, size, mtime_ms, artist, album_artist, album,
  title, track, track_total, disc, disc_total, year, genre, compilation, format, bitrate,
  sample_rate, duration, ctime_ms, ino, uid, gid, mode, genres, artist_sort, album_artist_sort,
  picture`;

/** A row of {@link TRACK_COLUMNS}, as an array (twice as fast to fetch as objects). */
type TrackRow = [
  number,
  number,
  string,
  string,
  number,
  number,
  ...(string | number | null)[],
];

const TREE_COLUMNS = "parent, name, ino, kind, ref, path, size, mtime_ms, nlink";
/** Tree rows written by one INSERT statement (9 parameters each; SQLite allows 32,766). */
const TREE_ROWS_PER_STATEMENT = 100;

type TreeRowArray = [
  number,
  string,
  number,
  number,
  number,
  string | null,
  number | null,
  number | null,
  number,
];

function toTreeRow(r: TreeRowArray): TreeRow {
  return {
    parent: r[0],
    name: r[1],
    ino: r[2],
    kind: r[3] as TreeRowKind,
    ref: r[4],
    path: r[5],
    size: r[6],
    mtimeMs: r[7],
    nlink: r[8],
  };
}

function toTrack(r: TrackRow): TrackRecord {
  const t: TrackRecord = {
    id: r[0],
    originId: r[1],
    relPath: r[2],
    ext: r[3],
    size: r[4],
    mtimeMs: r[5],
  };
  // Missing tags stay absent (not null/undefined-valued keys): records are compared and spread.
  if (r[6] !== null) t.artist = r[6] as string;
  if (r[7] !== null) t.albumArtist = r[7] as string;
  if (r[8] !== null) t.album = r[8] as string;
  if (r[9] !== null) t.title = r[9] as string;
  if (r[10] !== null) t.track = r[10] as number;
  if (r[11] !== null) t.trackTotal = r[11] as number;
  if (r[12] !== null) t.disc = r[12] as number;
  if (r[13] !== null) t.discTotal = r[13] as number;
  if (r[14] !== null) t.year = r[14] as number;
  if (r[15] !== null) t.genre = r[15] as string;
  if (r[16] !== null) t.compilation = r[16] === 1;
  if (r[17] !== null) t.format = r[17] as string;
  if (r[18] !== null) t.bitrate = r[18] as number;
  if (r[19] !== null) t.sampleRate = r[19] as number;
  if (r[20] !== null) t.duration = r[20] as number;
  if (r[21] !== null) t.ctimeMs = r[21] as number;
  if (r[22] !== null) t.ino = r[22] as number;
  if (r[23] !== null) t.uid = r[23] as number;
  if (r[24] !== null) t.gid = r[24] as number;
  if (r[25] !== null) t.mode = r[25] as number;
  // Genres are stored joined by U+001F (a tag cannot hold control characters once normalised).
  if (r[26] !== null) t.genres = (r[26] as string).split(GENRE_SEPARATOR);
  if (r[27] !== null) t.artistSort = r[27] as string;
  if (r[28] !== null) t.albumArtistSort = r[28] as string;
  if (r[29] !== null) t.picture = r[29] as string;
  return t;
}

/** Joins the stored `genres` column. */
const GENRE_SEPARATOR = "\u001f";

function tagParams(f: FileUpsert): (string | number | null)[] {
  const t = f.tags;
  const n = <T>(v: T | undefined) => v === undefined ? null : v;
  return [
    f.ext,
    f.size,
    f.mtimeMs,
    n(t.artist),
    n(t.albumArtist),
    n(t.album),
    n(t.title),
    n(t.track),
    n(t.trackTotal),
    n(t.disc),
    n(t.discTotal),
    n(t.year),
    n(t.genre),
    t.compilation === undefined ? null : t.compilation ? 1 : 0,
    n(t.format),
    n(t.bitrate),
    n(t.sampleRate),
    n(t.duration),
    n(f.ctimeMs),
    n(f.ino),
    n(f.uid),
    n(f.gid),
    n(f.mode),
    t.genres && t.genres.length > 0 ? t.genres.join(GENRE_SEPARATOR) : null,
    n(t.artistSort),
    n(t.albumArtistSort),
    n(t.picture),
  ];
}

/** Options of {@link Database.open}. */
export interface OpenOptions {
  /** Open read-only (e.g. `musicfs search` next to a running daemon). */
  readOnly?: boolean;
  /** With `readOnly`: an immutable snapshot, no WAL or `-shm` (see `Database.openFrozen`). */
  frozen?: boolean;
}

/** The library database. Not safe for use from several threads; one instance per process. */
export class Database {
  /** The database file. */
  readonly path: string;
  #db: DatabaseSync;
  #s!: Record<string, StatementSync>;
  #closed = false;
  #frozen: boolean;
  /** The parameters of one multi-row tree INSERT, reused. */
  readonly #treeArgs: (string | number | null)[] = Array(TREE_ROWS_PER_STATEMENT * TREE_ROW_WIDTH)
    .fill(
      null,
    );

  private constructor(path: string, db: DatabaseSync, frozen = false) {
    this.path = path;
    this.#db = db;
    this.#frozen = frozen;
    this.#prepare(db);
  }

  /**
   * Opened as a frozen snapshot (see {@link Database.openFrozen}): every write fails until
   * {@link Database.unfreeze} succeeds.
   */
  get frozen(): boolean {
    return this.#frozen;
  }

  /**
   * Opens `path` read-only as an immutable snapshot, without its WAL and shared-memory files:
   * what still works when the state dir is full (a normal open must create `-shm` and fails
   * with "disk I/O error"). Committed changes still in a `-wal` are not seen. Checked like
   * {@link openWithIntegrityCheck}.
   */
  static openFrozen(path: string): Database {
    return Database.#open(path, { readOnly: true, frozen: true }, true);
  }

  /**
   * Reopens a frozen database for writing (in place: every holder keeps its reference).
   * Returns false, still frozen, when it cannot be opened so yet (e.g. the disk is still full).
   */
  unfreeze(): boolean {
    this.#assertOpen();
    if (!this.#frozen) return true;
    let next: Database;
    try {
      next = Database.#open(this.path, {}, false);
    } catch (e) {
      log.debug("{path} cannot be opened for writing yet: {error}", {
        path: this.path,
        error: messageOf(e),
      });
      return false;
    }
    this.#db.close();
    this.#db = next.#db;
    this.#prepare(this.#db);
    this.#frozen = false;
    log.info("{path} is writable again", { path: this.path });
    return true;
  }

  #prepare(db: DatabaseSync): void {
    const p = (sql: string) => db.prepare(sql);
    this.#s = {
      generation: p("SELECT value FROM meta WHERE key = 'generation'"),
      bump: p("UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value"),
      origins: p("SELECT id, path FROM origins ORDER BY id"),
      originByPath: p("SELECT id, path FROM origins WHERE path = ?"),
      insertOrigin: p("INSERT INTO origins (path) VALUES (?) RETURNING id"),
      allTracks: p(`SELECT ${TRACK_COLUMNS} FROM files ORDER BY id`),
      originTracks: p(`SELECT ${TRACK_COLUMNS} FROM files WHERE origin_id = ? ORDER BY id`),
      track: p(`SELECT ${TRACK_COLUMNS} FROM files WHERE id = ?`),
      tracksPage: p(`SELECT ${TRACK_COLUMNS} FROM files WHERE id > ? ORDER BY id LIMIT ?`),
      trackByPath: p(`SELECT ${TRACK_COLUMNS} FROM files WHERE origin_id = ? AND rel_path = ?`),
      trackCount: p("SELECT count(*) AS n FROM files"),
      fileId: p("SELECT id FROM files WHERE origin_id = ? AND rel_path = ?"),
      insertFile: p(`INSERT INTO files (origin_id, rel_path, ext, size, mtime_ms, artist,
        album_artist, album, title, track, track_total, disc, disc_total, year, genre,
        compilation, format, bitrate, sample_rate, duration, ctime_ms, ino, uid, gid, mode,
        genres, artist_sort, album_artist_sort, picture)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
        ?) ON CONFLICT (origin_id, rel_path) DO NOTHING RETURNING id`),
      updateFile: p(`UPDATE files SET ext = ?, size = ?, mtime_ms = ?, artist = ?,
        album_artist = ?, album = ?, title = ?, track = ?, track_total = ?, disc = ?,
        disc_total = ?, year = ?, genre = ?, compilation = ?, format = ?, bitrate = ?,
        sample_rate = ?, duration = ?, ctime_ms = ?, ino = ?, uid = ?, gid = ?, mode = ?,
        genres = ?, artist_sort = ?, album_artist_sort = ?, picture = ? WHERE id = ?`),
      deleteFile: p("DELETE FROM files WHERE id = ?"),
      // One statement for a walk batch's files: 1.4 µs a file against 5-6 µs for a query each.
      knownFilesOf: p(
        `SELECT j.key, f.id, f.size, f.mtime_ms, f.ctime_ms, f.ino FROM json_each(?2) j
        CROSS JOIN files f ON f.origin_id = ?1 AND f.rel_path = j.value`,
      ),
      lastFileId: p("SELECT max(id) AS n FROM files"),
      // Pages by path on the (origin, path) index: no sort, and each page starts where the
      // last one ended.
      filesAfter: p(`SELECT id, rel_path FROM files WHERE origin_id = ? AND rel_path > ?
        ORDER BY rel_path LIMIT ?`),
      filesBetween: p(`SELECT id, rel_path FROM files WHERE origin_id = ? AND rel_path > ?
        AND rel_path < ? ORDER BY rel_path LIMIT ?`),
      knownCount: p(`SELECT (SELECT count(*) FROM files WHERE origin_id = ?1 AND ${UNDER})
        + (SELECT count(*) FROM problems WHERE origin_id = ?1 AND size IS NOT NULL AND ${UNDER})
        AS n`),
      anyFile: p(`SELECT 1 FROM files WHERE origin_id = ?1 AND ${UNDER} LIMIT 1`),
      knownProblems: p(`SELECT rel_path, size, mtime_ms FROM problems
        WHERE origin_id = ?1 AND size IS NOT NULL AND ${UNDER}`),
      problem: p(
        "SELECT reason, size, mtime_ms FROM problems WHERE origin_id = ? AND rel_path = ?",
      ),
      upsertProblem: p(`INSERT INTO problems (origin_id, rel_path, reason, size, mtime_ms)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin_id, rel_path) DO UPDATE SET
        reason = excluded.reason, size = excluded.size, mtime_ms = excluded.mtime_ms`),
      deleteProblem: p("DELETE FROM problems WHERE origin_id = ? AND rel_path = ?"),
      anyProblem: p("SELECT 1 FROM problems WHERE origin_id = ? LIMIT 1"),
      problems: p("SELECT origin_id, rel_path, reason FROM problems ORDER BY origin_id, rel_path"),
      originProblems: p(
        `SELECT rel_path FROM problems WHERE origin_id = ?1 AND size IS NULL AND ${UNDER}`,
      ),
      covers: p(
        "SELECT origin_id, dir, rel_path, size, mtime_ms FROM covers ORDER BY origin_id, dir",
      ),
      originCovers: p(`SELECT dir, rel_path, size, mtime_ms FROM covers WHERE origin_id = ?1
        AND ${UNDER.replaceAll("rel_path", "dir")}`),
      cover: p("SELECT rel_path, size, mtime_ms FROM covers WHERE origin_id = ? AND dir = ?"),
      upsertCover: p(`INSERT INTO covers (origin_id, dir, rel_path, size, mtime_ms)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin_id, dir) DO UPDATE SET
        rel_path = excluded.rel_path, size = excluded.size, mtime_ms = excluded.mtime_ms`),
      deleteCover: p("DELETE FROM covers WHERE origin_id = ? AND dir = ?"),
      scan: p("SELECT * FROM scans WHERE origin_id = ?"),
      startScan: p(`INSERT INTO scans (origin_id, started_ms, updated_ms, finished_ms, resumes,
        seen, parsed, committed) VALUES (?, ?, ?, NULL, 0, 0, 0, 0)
        ON CONFLICT (origin_id) DO UPDATE SET started_ms = excluded.started_ms,
        updated_ms = excluded.updated_ms, finished_ms = NULL, resumes = 0, seen = 0, parsed = 0,
        committed = 0`),
      resumeScan: p("UPDATE scans SET resumes = resumes + 1, updated_ms = ? WHERE origin_id = ?"),
      progressScan: p(`UPDATE scans SET updated_ms = ?, seen = ?, parsed = ?,
        committed = committed + ? WHERE origin_id = ?`),
      finishScan: p("UPDATE scans SET finished_ms = ?, updated_ms = ? WHERE origin_id = ?"),
      names: p("SELECT file_id, dir, name FROM names"),
      // A row for a file deleted meanwhile would outlive it: only for files that exist.
      setName: p(`INSERT INTO names (file_id, dir, name) SELECT ?1, ?2, ?3
        WHERE EXISTS (SELECT 1 FROM files WHERE id = ?1)
        ON CONFLICT (file_id, dir) DO UPDATE SET name = excluded.name`),
      dropName: p("DELETE FROM names WHERE file_id = ? AND dir = ?"),
      playlists: p(
        "SELECT origin_id, rel_path, size, mtime_ms, entries FROM playlists ORDER BY origin_id, rel_path",
      ),
      originPlaylists: p(`SELECT rel_path, size, mtime_ms FROM playlists WHERE origin_id = ?1
        AND ${UNDER}`),
      playlist: p(
        "SELECT size, mtime_ms, entries FROM playlists WHERE origin_id = ? AND rel_path = ?",
      ),
      upsertPlaylist: p(`INSERT INTO playlists (origin_id, rel_path, size, mtime_ms, entries)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin_id, rel_path) DO UPDATE SET
        size = excluded.size, mtime_ms = excluded.mtime_ms, entries = excluded.entries`),
      deletePlaylist: p("DELETE FROM playlists WHERE origin_id = ? AND rel_path = ?"),
      treeMeta: p("SELECT key, value FROM tree_meta"),
      setTreeMeta: p("INSERT OR REPLACE INTO tree_meta (key, value) VALUES (?, ?)"),
      clearTreeMeta: p("DELETE FROM tree_meta"),
      treeEntry: p(`SELECT ${TREE_COLUMNS} FROM tree_entries WHERE parent = ? AND name = ?`),
      treeChildren: p(`SELECT ${TREE_COLUMNS} FROM tree_entries WHERE parent = ?`),
      setTreeAttrs: p(
        "UPDATE tree_entries SET size = ?2, mtime_ms = ?3, nlink = ?4 WHERE ino = ?1",
      ),
      treeByIno: p(`SELECT ${TREE_COLUMNS} FROM tree_entries WHERE ino = ? LIMIT 1`),
      upsertTree: p(`INSERT OR REPLACE INTO tree_entries (${TREE_COLUMNS})
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      deleteTree: p("DELETE FROM tree_entries WHERE parent = ? AND name = ?"),
      upsertTreeMany: p(
        `INSERT OR REPLACE INTO tree_entries (${TREE_COLUMNS}) VALUES ${
          Array(TREE_ROWS_PER_STATEMENT).fill("(?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")
        }`,
      ),
    };
    const arrays = [
      this.#s.insertFile,
      this.#s.names,
      this.#s.knownFilesOf,
      this.#s.filesAfter,
      this.#s.filesBetween,
      this.#s.knownProblems,
      this.#s.allTracks,
      this.#s.originTracks,
      this.#s.track,
      this.#s.tracksPage,
      this.#s.trackByPath,
      this.#s.treeEntry,
      this.#s.treeChildren,
      this.#s.treeByIno,
    ];
    for (const s of arrays) s.setReturnArrays(true);
  }

  /**
   * Open (creating if needed) the database at `path`, in WAL mode, migrated to
   * {@link SCHEMA_VERSION}. Throws {@link DatabaseCorruptedError} when the file is not a
   * database; does not look for damage inside it (see {@link openWithIntegrityCheck}).
   */
  static open(path: string, options: OpenOptions = {}): Database {
    return Database.#open(path, options, false);
  }

  /**
   * Like {@link open}, after the full integrity check (`PRAGMA integrity_check` and the
   * schema's invariants, see integrity.ts): throws {@link DatabaseCorruptedError} when the check
   * fails or the file is not a database at all.
   */
  static openWithIntegrityCheck(path: string, options: OpenOptions = {}): Database {
    return Database.#open(path, options, true);
  }

  static #open(path: string, options: OpenOptions, check: boolean): Database {
    let db: DatabaseSync;
    try {
      db = options.frozen
        ? new DatabaseSync(frozenUrl(path), { readOnly: true })
        : new DatabaseSync(path, { readOnly: options.readOnly ?? false });
    } catch (e) {
      if (CORRUPT_PATTERN.test(messageOf(e))) {
        throw new DatabaseCorruptedError(path, messageOf(e), { cause: e });
      }
      throw new Error(`Cannot open database ${path}: ${messageOf(e)}`, { cause: e });
    }
    try {
      // A busy timeout covers a second reader (`musicfs search`) checkpointing at the same time.
      db.exec("PRAGMA busy_timeout = 5000");
      if (!options.readOnly) {
        db.exec("PRAGMA journal_mode = WAL");
        db.exec("PRAGMA synchronous = NORMAL");
        // Checkpoints (two fsyncs each, on this thread) every 64 MiB of WAL rather than 4 MiB,
        // and an 8 MiB page cache rather than 2: a first scan's commits of 100k files went from
        // ~1 s to ~0.15 s of waiting here, and at 300k its inserts into the path index from
        // 13-15 to 11 µs of CPU per file. The daemon also checkpoints every minute and at exit.
        db.exec("PRAGMA wal_autocheckpoint = 16384");
        db.exec("PRAGMA cache_size = -8192");
      }
      if (check) {
        const started = performance.now();
        const msgs = integrityProblems(db);
        log.debug("Integrity check of {path} took {ms} ms", {
          path,
          ms: Math.round(performance.now() - started),
        });
        if (msgs.length) {
          throw new DatabaseCorruptedError(path, `integrity check failed: ${msgs.join("; ")}`);
        }
      }
      if (!options.readOnly) migrate(db, path);
      else {
        const v = userVersion(db);
        if (v !== SCHEMA_VERSION) {
          throw new Error(
            `Cannot open database ${path}: schema version ${v}, expected ${SCHEMA_VERSION}`,
          );
        }
      }
      return new Database(path, db, options.frozen ?? false);
    } catch (e) {
      try {
        db.close();
      } catch {
        // Already failing; the first error is the one to report.
      }
      if (e instanceof DatabaseCorruptedError || e instanceof DatabaseWriteError) throw e;
      if (CORRUPT_PATTERN.test(messageOf(e))) {
        throw new DatabaseCorruptedError(path, messageOf(e), { cause: e });
      }
      if (e instanceof Error && e.message.startsWith("Cannot open database")) throw e;
      throw writeError(path, e);
    }
  }

  /**
   * Run `fn` in one write transaction, bumping the generation too unless `bump` is false (scan
   * bookkeeping is not a change of the library: it must not make search snapshots look stale).
   */
  #write<T>(fn: () => T, bump = true): T {
    this.#assertOpen();
    try {
      this.#db.exec("BEGIN IMMEDIATE");
    } catch (e) {
      throw writeError(this.path, e);
    }
    try {
      const result = fn();
      if (bump) this.#s.bump.get();
      this.#db.exec("COMMIT");
      return result;
    } catch (e) {
      try {
        this.#db.exec("ROLLBACK");
      } catch {
        // SQLite may have rolled back already (e.g. after SQLITE_FULL); nothing is left open.
      }
      throw writeError(this.path, e);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`Database ${this.path} is closed`);
  }

  /**
   * The change counter: bumped by every committed change of the library's content (origins,
   * tracks, problems, covers), not by scan bookkeeping, so a search snapshot stays current across
   * a restart whose rescan finds nothing new.
   */
  get generation(): number {
    this.#assertOpen();
    return (this.#s.generation.get() as Row).value as number;
  }

  /** All library roots, by id. */
  origins(): Origin[] {
    this.#assertOpen();
    return (this.#s.origins.all() as Row[]).map((r) => ({
      id: r.id as number,
      path: r.path as string,
    }));
  }

  /** The origin for `path` (an absolute, resolved path), created if new. */
  ensureOrigin(path: string): Origin {
    const found = this.#s.originByPath.get(path) as Row | undefined;
    if (found) return { id: found.id as number, path };
    return this.#write(() => ({ id: (this.#s.insertOrigin.get(path) as Row).id as number, path }));
  }

  /** Forget an origin with everything found under it; returns the tracks removed. */
  removeOrigin(id: number): TrackRecord[] {
    return this.#write(() => {
      const removed = (this.#s.originTracks.all(id) as unknown as TrackRow[]).map(toTrack);
      for (const sql of ["files", "problems", "covers", "playlists", "scans", "origins"]) {
        const col = sql === "origins" ? "id" : "origin_id";
        this.#db.prepare(`DELETE FROM ${sql} WHERE ${col} = ?`).run(id);
      }
      return removed;
    });
  }

  /** Every track, by id. */
  allTracks(): TrackRecord[] {
    this.#assertOpen();
    return (this.#s.allTracks.all() as unknown as TrackRow[]).map(toTrack);
  }

  /** The tracks of one origin, by id. */
  tracksOf(originId: number): TrackRecord[] {
    this.#assertOpen();
    return (this.#s.originTracks.all(originId) as unknown as TrackRow[]).map(toTrack);
  }

  /** One track by id. */
  /** Up to `limit` tracks with ids above `afterId`, by id (a read in pages). */
  tracksPage(afterId: number, limit: number): TrackRecord[] {
    this.#assertOpen();
    return (this.#s.tracksPage.all(afterId, limit) as unknown as TrackRow[]).map(toTrack);
  }

  getTrack(id: number): TrackRecord | undefined {
    this.#assertOpen();
    const r = this.#s.track.get(id) as unknown as TrackRow | undefined;
    return r ? toTrack(r) : undefined;
  }

  /** One track by origin and relative path. */
  getTrackByPath(originId: number, relPath: string): TrackRecord | undefined {
    this.#assertOpen();
    const r = this.#s.trackByPath.get(originId, relPath) as unknown as TrackRow | undefined;
    return r ? toTrack(r) : undefined;
  }

  /** Number of tracks. */
  trackCount(): number {
    this.#assertOpen();
    return (this.#s.trackCount.get() as Row).n as number;
  }

  /** Every problem, by origin and path. */
  problems(): Problem[] {
    this.#assertOpen();
    return (this.#s.problems.all() as Row[]).map((r) => ({
      originId: r.origin_id as number,
      relPath: r.rel_path as string,
      reason: r.reason as string,
    }));
  }

  /** Every directory cover, by origin and directory. */
  covers(): Cover[] {
    this.#assertOpen();
    return (this.#s.covers.all() as Row[]).map((r) =>
      coverOf(
        r.origin_id as number,
        r.dir as string,
        r.rel_path as string,
        r.size as number,
        r.mtime_ms as number,
      )
    );
  }

  /** The covers of one origin, by directory; only those at or below `under` when given. */
  coversOf(originId: number, under = ""): Map<string, Cover> {
    this.#assertOpen();
    const out = new Map<string, Cover>();
    for (const r of this.#s.originCovers.all(originId, ...underParams(under)) as Row[]) {
      const dir = r.dir as string;
      out.set(
        dir,
        coverOf(originId, dir, r.rel_path as string, r.size as number, r.mtime_ms as number),
      );
    }
    return out;
  }

  /**
   * The stored size, mtime, ctime and inode, with the id, of each of `relPaths` of an origin (one
   * statement): by index in `relPaths`, undefined where the path is not a track.
   */
  knownFiles(originId: number, relPaths: readonly string[]): ([number, KnownEntry] | undefined)[] {
    this.#assertOpen();
    const out: ([number, KnownEntry] | undefined)[] = new Array(relPaths.length).fill(undefined);
    if (relPaths.length === 0) return out;
    type F = [number, number, number, number, number | null, number | null];
    const rows = this.#s.knownFilesOf.all(originId, JSON.stringify(relPaths)) as unknown as F[];
    for (const [i, id, size, mtimeMs, ctimeMs, ino] of rows) {
      const e: KnownEntry = { size, mtimeMs, kind: "track" };
      if (ctimeMs !== null) e.ctimeMs = ctimeMs;
      if (ino !== null) e.ino = ino;
      out[i] = [id, e];
    }
    return out;
  }

  /** The highest file id given so far (0: none); ids are never reused. */
  lastFileId(): number {
    this.#assertOpen();
    return ((this.#s.lastFileId.get() as Row).n as number | null) ?? 0;
  }

  /**
   * Up to `limit` files of an origin with paths after `after` (and before `before` when given),
   * in path order (binary): [id, path].
   */
  filesPage(
    originId: number,
    after: string,
    before: string | undefined,
    limit: number,
  ): [number, string][] {
    this.#assertOpen();
    const rows = before === undefined
      ? this.#s.filesAfter.all(originId, after, limit)
      : this.#s.filesBetween.all(originId, after, before, limit);
    return rows as unknown as [number, string][];
  }

  /** Whether a track is stored for an origin at or below `under`. */
  hasKnownFile(originId: number, under = ""): boolean {
    this.#assertOpen();
    return this.#s.anyFile.get(originId, ...underParams(under)) !== undefined;
  }

  /** How many tracks and remembered problems are stored for an origin at or below `under`. */
  knownCount(originId: number, under = ""): number {
    this.#assertOpen();
    return (this.#s.knownCount.get(originId, ...underParams(under)) as Row).n as number;
  }

  /**
   * The problems of an origin (at or below `under`) remembered with the size and mtime they
   * failed at, by path (paths that are also tracks left out).
   */
  knownProblems(originId: number, under = ""): Map<string, KnownEntry> {
    this.#assertOpen();
    const out = new Map<string, KnownEntry>();
    type R = [string, number, number][];
    const rows = this.#s.knownProblems.all(originId, ...underParams(under)) as unknown as R;
    for (const [p, size, mtimeMs] of rows) {
      if (!this.#s.fileId.get(originId, p)) out.set(p, { size, mtimeMs, kind: "problem" });
    }
    return out;
  }

  /**
   * Relative paths (at or below `under`) of the problems that are re-checked at every scan: walk
   * problems (unreadable directories, loops) and files that could not be opened.
   */
  recheckedProblemPaths(originId: number, under = ""): string[] {
    this.#assertOpen();
    const rows = this.#s.originProblems.all(originId, ...underParams(under)) as Row[];
    return rows.map((r) => r.rel_path as string);
  }

  /**
   * Commit one batch in one transaction: upsert tracks (a track that was a problem stops being
   * one), record problems (a track at the same path is removed), remove vanished paths, update
   * covers and the scan checkpoint, and bump the generation if any of that changed something.
   */
  applyBatch(batch: Batch): LibraryChange {
    const s = this.#s;
    const now = Date.now();
    return this.#write(() => {
      const res = emptyChange();
      const removeTrack = (originId: number, relPath: string) => {
        const r = s.trackByPath.get(originId, relPath) as unknown as TrackRow | undefined;
        if (!r) return;
        s.deleteFile.run(r[0]);
        res.removed.push(toTrack(r));
      };
      // Whether an origin had problem rows when the batch began: a first scan has none, and
      // then no track needs its problem row deleted (problems are written after the tracks).
      const hadProblems = new Map<number, boolean>();
      for (const f of batch.files ?? []) {
        // One statement for a new file (a first scan's every file); a known one is updated.
        const params = tagParams(f);
        const inserted = s.insertFile.get(f.originId, f.relPath, ...params) as
          | [number]
          | undefined;
        let id: number;
        let existing = false;
        if (inserted) id = inserted[0];
        else {
          id = (s.fileId.get(f.originId, f.relPath) as Row).id as number;
          s.updateFile.run(...params, id);
          existing = true;
        }
        let problems = hadProblems.get(f.originId);
        if (problems === undefined) {
          problems = s.anyProblem.get(f.originId) !== undefined;
          hadProblems.set(f.originId, problems);
        }
        if (problems && s.deleteProblem.run(f.originId, f.relPath).changes) {
          res.problemsChanged = true;
        }
        const rec: TrackRecord = {
          ...f.tags,
          id,
          originId: f.originId,
          relPath: f.relPath,
          ext: f.ext,
          size: f.size,
          mtimeMs: f.mtimeMs,
        };
        if (f.ctimeMs !== undefined) rec.ctimeMs = f.ctimeMs;
        if (f.ino !== undefined) rec.ino = f.ino;
        if (f.uid !== undefined) rec.uid = f.uid;
        if (f.gid !== undefined) rec.gid = f.gid;
        if (f.mode !== undefined) rec.mode = f.mode;
        (existing ? res.changed : res.added).push(rec);
      }
      for (const p of batch.problems ?? []) {
        removeTrack(p.originId, p.relPath);
        const old = s.problem.get(p.originId, p.relPath) as Row | undefined;
        if (
          old && old.reason === p.reason && old.size === (p.size ?? null) &&
          old.mtime_ms === (p.mtimeMs ?? null)
        ) {
          continue;
        }
        s.upsertProblem.run(p.originId, p.relPath, p.reason, p.size ?? null, p.mtimeMs ?? null);
        if (!old || old.reason !== p.reason) res.problemsChanged = true;
      }
      for (const r of batch.remove ?? []) {
        removeTrack(r.originId, r.relPath);
        if (s.deleteProblem.run(r.originId, r.relPath).changes) res.problemsChanged = true;
      }
      for (const c of batch.covers ?? []) {
        const old = s.cover.get(c.originId, c.dir) as Row | undefined;
        if (
          old && old.rel_path === c.relPath && old.size === c.size && old.mtime_ms === c.mtimeMs
        ) continue;
        s.upsertCover.run(c.originId, c.dir, c.relPath, c.size, c.mtimeMs);
        res.covers.push(coverOf(c.originId, c.dir, c.relPath, c.size, c.mtimeMs));
      }
      for (const c of batch.removeCovers ?? []) {
        if (s.deleteCover.run(c.originId, c.dir).changes) {
          res.removedCovers.push({ originId: c.originId, dir: c.dir });
        }
      }
      for (const p of batch.playlists ?? []) {
        // A playlist read again after a failure is no longer a problem.
        if (s.deleteProblem.run(p.originId, p.relPath).changes) res.problemsChanged = true;
        const entries = p.entries.join(GENRE_SEPARATOR);
        const old = s.playlist.get(p.originId, p.relPath) as Row | undefined;
        if (
          old && old.size === p.size && old.mtime_ms === p.mtimeMs && old.entries === entries
        ) continue;
        s.upsertPlaylist.run(p.originId, p.relPath, p.size, p.mtimeMs, entries);
        res.playlists.push(p);
      }
      for (const r of batch.removePlaylists ?? []) {
        if (s.deletePlaylist.run(r.originId, r.relPath).changes) {
          res.removedPlaylists.push({ originId: r.originId, relPath: r.relPath });
        }
      }
      if (batch.scan) {
        const committed = (batch.files?.length ?? 0) +
          (batch.problems?.filter((p) => p.size !== undefined).length ?? 0);
        s.progressScan.run(now, batch.scan.seen, batch.scan.parsed, committed, batch.scan.originId);
      }
      const changed = res.added.length || res.changed.length || res.removed.length ||
        res.problemsChanged || res.covers.length || res.removedCovers.length ||
        res.playlists.length || res.removedPlaylists.length;
      res.generation = changed ? (s.bump.get() as Row).value as number : this.generation;
      return res;
    }, false);
  }

  /** Every stored name of the virtual tree. */
  names(): NameRow[] {
    this.#assertOpen();
    type R = [number, number, string][];
    return (this.#s.names.all() as unknown as R).map(([fileId, dir, name]) => ({
      fileId,
      dir,
      name,
    }));
  }

  /**
   * Store the tree's name changes (`name: null` drops a row) in one transaction. Not a change
   * of the library's content: the generation stays. Rows of files gone meanwhile are skipped.
   */
  saveNames(changes: readonly { fileId: number; dir: number; name: string | null }[]): void {
    if (changes.length === 0) return;
    this.#write(() => {
      for (const c of changes) {
        if (c.name === null) this.#s.dropName.run(c.fileId, c.dir);
        else this.#s.setName.run(c.fileId, c.dir, c.name);
      }
    }, false);
  }

  /** The stamp of the stored tree rows; undefined when there are none (or only part of them). */
  treeStamp(): TreeStamp | undefined {
    this.#assertOpen();
    const m = new Map<string, unknown>();
    for (const r of this.#s.treeMeta.all() as Row[]) m.set(r.key as string, r.value);
    const generation = m.get("generation");
    if (typeof generation !== "number") return undefined;
    return {
      generation,
      layout: String(m.get("layout") ?? ""),
      stats: String(m.get("stats") ?? "{}"),
    };
  }

  /** The stored entry `name` of directory `parent`. */
  treeEntry(parent: number, name: string): TreeRow | undefined {
    this.#assertOpen();
    const r = this.#s.treeEntry.get(parent, name) as unknown as TreeRowArray | undefined;
    return r && toTreeRow(r);
  }

  /** The stored entries of directory `parent`, in no particular order. */
  treeChildren(parent: number): TreeRow[] {
    this.#assertOpen();
    return (this.#s.treeChildren.all(parent) as unknown as TreeRowArray[]).map(toTreeRow);
  }

  /** A stored entry of inode `ino` (a directory has one; a track one per place). */
  treeEntryOf(ino: number): TreeRow | undefined {
    this.#assertOpen();
    const r = this.#s.treeByIno.get(ino) as unknown as TreeRowArray | undefined;
    return r && toTreeRow(r);
  }

  /**
   * Store a part of the tree's rows with the tree's name changes, in one transaction. Not a
   * change of the library's content: the generation stays.
   */
  saveTree(
    update: TreeRowsUpdate,
    names: readonly { fileId: number; dir: number; name: string | null }[] = [],
  ): void {
    this.#write(() => {
      for (const c of names) {
        if (c.name === null) this.#s.dropName.run(c.fileId, c.dir);
        else this.#s.setName.run(c.fileId, c.dir, c.name);
      }
      // A full dump writes into a table without its inode index (built once at the end, 8x
      // faster than keeping it up to date row by row); nothing reads unstamped rows meanwhile.
      if (update.clear) this.#db.exec(`DROP TABLE tree_entries; ${TREE_TABLE}`);
      for (const [parent, name] of update.deletes) this.#s.deleteTree.run(parent, name);
      this.#upsertTreeRows(update.upserts, update.packed);
      for (const [ino, size, mtimeMs, nlink] of update.attrs ?? []) {
        this.#s.setTreeAttrs.run(ino, size, mtimeMs, nlink);
      }
      this.#s.clearTreeMeta.run();
      const st = update.stamp;
      if (st) {
        // SQLite may sort the index on a second thread: 3.3 -> 2.6 s for 4.9M rows (1M tracks).
        this.#db.exec("PRAGMA threads = 2");
        try {
          this.#db.exec(TREE_INDEX);
        } finally {
          this.#db.exec("PRAGMA threads = 0");
        }
        this.#s.setTreeMeta.run("generation", st.generation);
        this.#s.setTreeMeta.run("layout", st.layout);
        this.#s.setTreeMeta.run("stats", st.stats);
      }
    }, false);
  }

  /**
   * A batch's rows one by one (a few thousand at most); a dump's packed rows by
   * {@link TREE_ROWS_PER_STATEMENT} in one statement: its 5M rows at 1M tracks took 2x as long
   * one statement a row.
   */
  #upsertTreeRows(rows: readonly TreeRow[], packed: PackedTreeRows | undefined): void {
    const up = this.#s.upsertTree;
    for (const r of rows) {
      up.run(r.parent, r.name, r.ino, r.kind, r.ref, r.path, r.size, r.mtimeMs, r.nlink);
    }
    if (!packed) return;
    const args = this.#treeArgs;
    const v = packed.values;
    const end = packed.count * TREE_ROW_WIDTH;
    const step = TREE_ROWS_PER_STATEMENT * TREE_ROW_WIDTH;
    let o = 0;
    for (; o + step <= end; o += step) {
      for (let k = 0; k < step; k++) args[k] = v[o + k];
      this.#s.upsertTreeMany.run(...args);
    }
    for (; o < end; o += TREE_ROW_WIDTH) up.run(...v.slice(o, o + TREE_ROW_WIDTH));
    args.fill(null);
  }

  /** Every playlist, by origin and path. */
  playlists(): Playlist[] {
    this.#assertOpen();
    return (this.#s.playlists.all() as Row[]).map((r) => ({
      originId: r.origin_id as number,
      relPath: r.rel_path as string,
      size: r.size as number,
      mtimeMs: r.mtime_ms as number,
      entries: r.entries === "" ? [] : (r.entries as string).split(GENRE_SEPARATOR),
    }));
  }

  /** The stored size and mtime of the playlists of an origin (at or below `under`), by path. */
  knownPlaylists(originId: number, under = ""): Map<string, { size: number; mtimeMs: number }> {
    this.#assertOpen();
    const out = new Map<string, { size: number; mtimeMs: number }>();
    for (const r of this.#s.originPlaylists.all(originId, ...underParams(under)) as Row[]) {
      out.set(r.rel_path as string, { size: r.size as number, mtimeMs: r.mtime_ms as number });
    }
    return out;
  }

  /**
   * Mark the start of a scan of `originId`. When the previous scan never finished, it is resumed
   * (its counters kept) rather than restarted.
   */
  beginScan(originId: number): ScanStart {
    const prev = this.scanCheckpoint(originId);
    const now = Date.now();
    if (prev && prev.finishedMs === undefined) {
      this.#write(() => this.#s.resumeScan.run(now, originId), false);
      return { resumed: true, committedBefore: prev.committed };
    }
    this.#write(() => this.#s.startScan.run(originId, now, now), false);
    return { resumed: false, committedBefore: 0 };
  }

  /** Mark the scan of `originId` complete. */
  finishScan(originId: number): void {
    const now = Date.now();
    this.#write(() => this.#s.finishScan.run(now, now, originId), false);
  }

  /** The scan checkpoint of an origin, if it was ever scanned. */
  scanCheckpoint(originId: number): ScanCheckpoint | undefined {
    this.#assertOpen();
    const r = this.#s.scan.get(originId) as Row | undefined;
    if (!r) return undefined;
    const c: ScanCheckpoint = {
      originId,
      startedMs: r.started_ms as number,
      updatedMs: r.updated_ms as number,
      resumes: r.resumes as number,
      seen: r.seen as number,
      parsed: r.parsed as number,
      committed: r.committed as number,
    };
    if (r.finished_ms != null) c.finishedMs = r.finished_ms as number;
    return c;
  }

  /**
   * Copy the WAL into the database file and truncate it (`wal_checkpoint(TRUNCATE)`): done
   * periodically and at shutdown, so the WAL does not grow without bound.
   */
  checkpoint(): { busy: boolean; walPages: number; checkpointedPages: number } {
    this.#assertOpen();
    if (this.#frozen) return { busy: false, walPages: 0, checkpointedPages: 0 };
    try {
      const r = this.#db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as Row;
      return {
        busy: r.busy === 1,
        walPages: r.log as number,
        checkpointedPages: r.checkpointed as number,
      };
    } catch (e) {
      throw writeError(this.path, e);
    }
  }

  /** Run `PRAGMA quick_check` on the open database; the problems found, empty when sound. */
  quickCheck(): string[] {
    this.#assertOpen();
    const rows = this.#db.prepare("PRAGMA quick_check(5)").all() as Row[];
    const msgs = rows.map((r) => String(Object.values(r)[0]));
    return msgs.length === 1 && msgs[0] === "ok" ? [] : msgs;
  }

  /**
   * The full integrity check on the open database (`PRAGMA integrity_check` plus the schema's
   * invariants: no source listed twice, clean relative paths, known origins); empty when sound.
   */
  integrityCheck(): string[] {
    this.#assertOpen();
    return integrityProblems(this.#db);
  }

  /** Close the connection; further calls throw. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

/** A `file:` URL of `path` opening it as an immutable snapshot. */
function frozenUrl(path: string): URL {
  const url = new URL("file://");
  url.pathname = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  url.search = "immutable=1";
  return url;
}

function userVersion(db: DatabaseSync): number {
  return (db.prepare("PRAGMA user_version").get() as Row).user_version as number;
}

function migrate(db: DatabaseSync, path: string): void {
  const from = userVersion(db);
  if (from > SCHEMA_VERSION) {
    throw new Error(
      `Cannot open database ${path}: it has schema version ${from}, newer than this musicfs (${SCHEMA_VERSION})`,
    );
  }
  for (let v = from; v < SCHEMA_VERSION; v++) {
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(MIGRATIONS[v]);
      db.exec(`PRAGMA user_version = ${v + 1}`);
      db.exec("COMMIT");
    } catch (e) {
      try {
        db.exec("ROLLBACK");
      } catch {
        // Nothing to roll back.
      }
      throw e;
    }
    // A new database is created, not migrated: only an existing one's upgrade is news.
    if (from > 0) log.info("Migrated {path} to schema version {version}", { path, version: v + 1 });
  }
}

/** The outcome of {@link openLibraryDatabase}. */
export interface LibraryDatabaseOpen {
  /** The open, migrated database. */
  db: Database;
  /** The database was created now (no file, or the old one was set aside): scan everything. */
  fullRescan: boolean;
  /** Set when a damaged database was moved aside. */
  recovered?: { reason: string; movedTo: string; detail?: string };
  /** Whether the integrity check ran (not for a database closed cleanly and unchanged). */
  checked?: boolean;
}

/** Options of {@link openLibraryDatabase}. */
export interface LibraryOpenOptions {
  /** Damaged databases kept beside the new one (default 3). */
  keepCorrupt?: number;
  /**
   * Skip the integrity check of a file exactly as the last daemon closed it (clean_close.ts);
   * the daemon's start only: `musicfs check` always runs the full check.
   */
  trustCleanClose?: boolean;
}

/**
 * The daemon's way to open `library.db`: with an integrity check, and on corruption (or a file
 * that is not a database) log a WARN, move the file and its `-wal`/`-shm` aside as
 * `library.db.corrupt-<time>` (keeping the newest `keepCorrupt`), and start a fresh database,
 * reported with `fullRescan`. Other failures (permissions, full disk) are thrown.
 */
export function openLibraryDatabase(
  path: string,
  options: LibraryOpenOptions = {},
): LibraryDatabaseOpen {
  const existed = existsSync(path);
  try {
    // Exactly as the last daemon closed it: the full check (a read of the whole file) is spared.
    const clean = existed && options.trustCleanClose === true && takeCleanClose(path);
    const db = clean ? Database.open(path) : Database.openWithIntegrityCheck(path);
    if (clean) {
      log.debug("{path} was closed cleanly and is unchanged: no integrity check", { path });
    }
    return { db, fullRescan: !existed || db.origins().length === 0, checked: !clean };
  } catch (e) {
    if (!(e instanceof DatabaseCorruptedError)) throw e;
    const movedTo = setAside(path, options.keepCorrupt ?? 3);
    log.warn(
      "Library database {path} is damaged ({reason}); moved it to {movedTo} and starting a fresh one (full rescan)",
      {
        path,
        reason: e.message,
        movedTo,
      },
    );
    const db = Database.open(path);
    return { db, fullRescan: true, recovered: { reason: e.message, movedTo, detail: e.detail } };
  }
}

/**
 * Set aside `db`, found damaged after it opened (e.g. by `trackProblems` over its rows),
 * the way {@link openLibraryDatabase} does for damage found at open: closed, moved to
 * `library.db.corrupt-<time>` with its `-wal`/`-shm`, and replaced by a fresh database.
 */
export function setAsideLibraryDatabase(
  db: Database,
  reason: string,
  options: LibraryOpenOptions = {},
): LibraryDatabaseOpen {
  const path = db.path;
  try {
    // The WAL's content goes with the file set aside, for forensics.
    db.checkpoint();
  } catch { /* damaged enough to refuse: the -wal is moved along anyway */ }
  db.close();
  const movedTo = setAside(path, options.keepCorrupt ?? 3);
  log.warn(
    "Library database {path} is damaged ({reason}); moved it to {movedTo} and starting a fresh one (full rescan)",
    { path, reason, movedTo },
  );
  return { db: Database.open(path), fullRescan: true, recovered: { reason, movedTo } };
}

/** library.db with its -wal/-shm to `library.db.corrupt-<time>`, keeping the newest `keep`. */
function setAside(path: string, keep: number): string {
  const movedTo = moveAside(path, { keep, companions: ["-wal", "-shm"] });
  if (!movedTo) throw new Deno.errors.NotFound(`Cannot set aside ${path}: it is gone`);
  return movedTo;
}
