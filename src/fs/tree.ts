/**
 * The in-memory virtual tree of SPEC.md section 2, built from the library's track records and
 * kept up to date by {@link VirtualTree.apply}, which also says which kernel caches to drop.
 *
 * ```
 * /Artists/<layout>                      (default: <AlbumArtist>/<Album>[ (<Year>)]/<file>)
 * /Albums/<Album>[ (<Year>)] - <AlbumArtist>/<file>
 * /Genres/<Genre>/<AlbumArtist>/<Album>[ (<Year>)]/<file>     (once per genre of the track)
 * /Years/<Year>/<AlbumArtist> - <Album>/<file>
 * /Playlists/<name>.m3u8                 the library's playlists, entries pointing into the mount
 * /.search/<query>/<Artist> - <Title>.<ext>   symlinks (see setSearchResults)
 * /.musicfs/status.json, /.musicfs/problems.txt
 * ```
 * `<file>` is `[D-]NN - Title.<ext>`. The README's "How the tree names things" is the user's
 * version of the rules below.
 *
 * Grouping: album artists, albums, genres (and the layout's artist fields) group by
 * {@link foldKey}; a folder shows the spelling most of its tracks use (ties: a leading
 * capital, then fewer capitals, then code unit order). An album is (album artist, album);
 * its year is the most common one of its tracks (ties: the earliest). When a new spelling or
 * year takes over, the album's tracks move together.
 *
 * Names that stay put: files keep the name they have; a newcomer that wants a taken name gets
 * the first free ` (n)`; files arriving together settle by source path. The assignments that
 * a restart could not work out again (a suffixed name, or a name several files want) are
 * handed to the library as rows ({@link VirtualTree.takeNameChanges}) and come back through
 * {@link TreeOptions.names}.
 *
 * Covers: an album folder shows one `cover.<ext>`: the image of a track's folder, else of the
 * parent of a disc folder (`CD1`), else a track's embedded front picture (its bytes are read
 * by MusicOps on demand; the tree knows only where it is).
 *
 * Inode numbers (stable across restarts for the same library, never reused for another object
 * during a mount):
 * - 1..10: the root, its seven directories, status.json and problems.txt ({@link INO});
 * - a track file: 2^52 + its database id. A track is one object under several names (like a
 *   hard link; nlink counts them), so the kernel caches its pages once for every view;
 * - directories, covers, playlists and /.search symlinks: a 52-bit hash (cyrb53, truncated)
 *   of a key naming the object: `d` + the virtual path for a directory, `c` + origin id +
 *   source path for a cover image, `e` + origin id + source path of the audio file for an
 *   embedded picture, `p` + origin id + source path for a playlist, `s` + query + track id
 *   for a symlink. Every number handed out is remembered with its key for the life of the
 *   tree; when a hash is already held by another key, the key is rehashed with a counter
 *   until a free number turns up (and a warning is logged). Only such a probe, astronomically
 *   rare, can make a number depend on build order. The hash function is part of the on-disk
 *   contract: changing it changes every directory inode (and the stored names' keys).
 *
 * Directories whose subtree holds no file disappear. A directory name is shared by everything
 * that lands there (two albums whose names sanitise alike merge); a file that wants the name
 * of a directory or of another file gets a collision suffix.
 *
 * @module
 */
import type { Attr } from "../fuse/ops.ts";
import { S_IFDIR, S_IFLNK, S_IFREG } from "../fuse/ops.ts";
import type { Origin, Playlist, Problem, TrackRecord } from "../library/types.ts";
import type { CoverImage, LibraryChange } from "../library/change.ts";

export type { CoverImage };
import { logger } from "../log/mod.ts";
import { escapeControl } from "./escape.ts";
import {
  DEFAULT_LAYOUT,
  type Layout,
  type LayoutPart,
  type LayoutTrack,
  parseLayout,
  renderLayout,
} from "./layout.ts";
import {
  type Access,
  AccessTally,
  fileAccess,
  PRIVATE_DIR_MODE,
  SHARED_SEARCH_MODE,
} from "./access.ts";
import {
  albumArtistName,
  albumFolderParts,
  albumName,
  artistName,
  compare,
  discsOf,
  fitName,
  foldKey,
  positive,
  present,
  sanitizeName,
  titleName,
  trackFileName,
  UNKNOWN_GENRE,
  UNKNOWN_YEAR,
  utf8Length,
  withCollisionSuffix,
} from "./naming.ts";

const log = logger("fs", "tree");

/** Fixed inode numbers. */
export const INO = {
  root: 1,
  artists: 2,
  albums: 3,
  genres: 4,
  years: 5,
  search: 6,
  musicfs: 7,
  status: 8,
  problems: 9,
  playlists: 10,
} as const;

/** Track inodes are this plus the track id. */
export const TRACK_INO_BASE = 2 ** 52;
const FIRST_HASHED_INO = 16;

// Which view a directory belongs to: decides which of a track's names applies in it.
const ARTISTS = 0;
const ALBUMS = 1;
const GENRES = 2;
const YEARS = 3;
const OTHER = 4;

/** A stored name: `fileId` (a track id) is called `name` in the directory of inode `dir`. */
export interface NameRow {
  /** The track id (library.db `files.id`). */
  fileId: number;
  /** Inode of the virtual directory. */
  dir: number;
  /** The entry's name there. */
  name: string;
}

/** A change to the stored names: `name: null` drops the row. */
export interface NameRowChange {
  /** The track id. */
  fileId: number;
  /** Inode of the virtual directory. */
  dir: number;
  /** The new name, or null when no row is needed any more. */
  name: string | null;
}

/** A directory. */
export interface DirNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "dir";
  /** Fixed ({@link INO}) or a hash of the virtual path: stable across restarts. */
  readonly ino: number;
  /** Its name in its parent (`""` for the root). */
  readonly name: string;
}

/** A track file: serve the bytes of `track` (origin + relPath). */
export interface TrackNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "track";
  /** {@link TRACK_INO_BASE} + the track id: one inode under every view's name. */
  readonly ino: number;
  /** The library record: source file, size, mtime and tags. */
  readonly track: TrackRecord;
}

/**
 * `cover.<ext>`: serve the bytes of the source image, or, when `embedded`, the front picture
 * inside the audio file `cover.relPath` (extracted on demand, see {@link VirtualTree.setCoverSize}).
 */
export interface CoverNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "cover";
  /** A hash of the origin and source path of the image: stable across restarts. */
  readonly ino: number;
  /** The source image served (for an embedded picture: the audio file holding it). */
  readonly cover: CoverImage;
  /** The picture embedded in an audio file, not an image file. */
  readonly embedded: boolean;
}

/** A file whose content is made on demand ({@link VirtualTree.content}). */
export interface GeneratedNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "generated";
  /** Fixed ({@link INO}`.status`, {@link INO}`.problems`) or a hash of a playlist's source. */
  readonly ino: number;
  /** `status.json`, `problems.txt` or `<playlist>.m3u8`. */
  readonly name: string;
}

/** A symbolic link (the /.search results). */
export interface SymlinkNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "symlink";
  /** A hash of the query and the track id. */
  readonly ino: number;
  /** Relative link target, e.g. `../../Artists/A/B/01 - C.flac`. */
  readonly target: string;
}

/** Anything in the tree. */
export type Node = DirNode | TrackNode | CoverNode | GeneratedNode | SymlinkNode;

/** One name in a directory. */
export interface TreeEntry {
  /** The name in the directory, as listed (already sanitised). */
  readonly name: string;
  /** What the name refers to; a track appears under several names with the same node. */
  readonly node: Node;
}

/**
 * A kernel cache to drop after {@link VirtualTree.apply}, in the order given:
 * `entry`: the name -> inode mapping (FUSE_NOTIFY_INVAL_ENTRY);
 * `delete`: the name is gone and so is the object (FUSE_NOTIFY_DELETE);
 * `inode`: the attributes and cached data (FUSE_NOTIFY_INVAL_INODE; offset 0, length -1).
 * The kernel answers ENOENT for what it never cached, and a `delete` of a directory still
 * in use may fail with ENOTEMPTY: both are harmless, send an `entry` instead of the latter.
 */
export type Invalidation =
  | { kind: "entry"; parent: number; name: string }
  | { kind: "delete"; parent: number; child: number; name: string }
  | { kind: "inode"; ino: number };

/** A name given a collision suffix (listed in problems.txt). */
export interface Collision {
  /** Virtual path of the renamed entry. */
  path: string;
  /** The name it wanted. */
  wanted: string;
  /** The source file behind it. */
  sourcePath: string;
}

/** Counts for status.json. */
export interface TreeStats {
  /** Track files (each counted once, though listed in several views). */
  tracks: number;
  /** Distinct (album artist, album) groups. */
  albums: number;
  /** Directories in the tree, the fixed ones included. */
  dirs: number;
  /** Source directories with a cover image. */
  covers: number;
  /** Entries of the library's problem list. */
  problems: number;
  /** Names that got a collision suffix. */
  collisions: number;
  /** Playlists under /Playlists. */
  playlists: number;
  /** Playlist entries that point at nothing in the library (listed in problems.txt). */
  missingPlaylistEntries: number;
}

/** What a tree is built from. */
export interface TreeOptions {
  /** Library roots: source paths are `<origin path>/<relPath>`. */
  origins: Iterable<Origin>;
  /** Every track of the library; none when absent. */
  tracks?: Iterable<TrackRecord>;
  /** The cover of each source directory that has one. */
  covers?: Iterable<CoverImage>;
  /** The library's problem list, for /.musicfs/problems.txt. */
  problems?: Iterable<Problem>;
  /** The library's playlists, for /Playlists. */
  playlists?: Iterable<Playlist>;
  /**
   * Stored names ({@link VirtualTree.takeNameChanges}): a track keeps the name it had, so a
   * newcomer that sorts first cannot take it. Rows that no longer fit are ignored.
   */
  names?: Iterable<NameRow>;
  /** Owner of every node (the mounting user). */
  uid: number;
  /** Group of every node (the mounting user's group). */
  gid: number;
  /** The /Artists layout (`--layout`); default {@link DEFAULT_LAYOUT}. */
  layout?: Layout | string;
  /** Content of /.musicfs/status.json; default: {@link VirtualTree.stats} as JSON. */
  status?: () => string;
  /**
   * Serve every node with the owner, group and mode of access.ts (for `--allow-other`
   * mounts, which the kernel checks with `default_permissions`); `shareSearch` opens
   * /.search to other users. Absent: everything belongs to `uid`/`gid`, 0444 and 0555.
   */
  permissions?: {
    shareSearch?: boolean;
    /**
     * Called with the kernel invalidations of what {@link VirtualTree.resolveAccess} learnt;
     * when given, the tree runs it by itself whenever there is something to learn.
     */
    onAccessResolved?: (inv: Invalidation[]) => void;
  };
}

class Dir implements DirNode {
  readonly kind = "dir";
  readonly entries = new Map<string, AnyNode>();
  subdirs = 0;
  /** Files waiting for {@link VirtualTree} to settle their names (only inside a batch). */
  pending: FileNode[] | undefined = undefined;
  collisions: { name: string; wanted: string; node: FileNode }[] | undefined = undefined;
  cover: Cover | undefined = undefined;
  sorted: TreeEntry[] | undefined = undefined;
  constructor(
    readonly ino: number,
    readonly name: string,
    readonly parent: Dir | null,
    readonly view: number,
    public mtimeMs: number,
    public prunable: boolean,
  ) {}
  /** Pruned from the tree. */
  dead = false;
  /** Access computed from the entries (permissions mode); undefined when stale. */
  acc: Access | undefined = undefined;
}

/** Upper-case letters in `s`. */
function capitals(s: string): number {
  let n = 0;
  for (const c of s) if (c !== c.toLowerCase()) n++;
  return n;
}

/**
 * Tie-break between two equally common spellings: one starting with a capital first, then
 * the one with fewer capitals, then code unit order. So `The Beatles` beats `the beatles`
 * and `THE BEATLES`, and `Rock` beats `ROCK` and `rock`, whatever order tracks come in.
 */
function betterSpelling(a: string, b: string): boolean {
  const ua = a !== "" && a[0] !== a[0].toLowerCase();
  const ub = b !== "" && b[0] !== b[0].toLowerCase();
  if (ua !== ub) return ua;
  const ca = capitals(a);
  const cb = capitals(b);
  if (ca !== cb) return ca < cb;
  return compare(a, b) < 0;
}

/**
 * Every spelling of one name that folds to the same key (see foldKey): the folder shows the
 * most common spelling (NFC); ties go by {@link betterSpelling}.
 */
class Group {
  readonly counts = new Map<string, number>();
  display = "";
  /** The albums showing this name (album artists only; other groups are found by a scan). */
  readonly albums = new Set<Album>();
  /** `[this]`, shared by every track whose only genre this is (one array, not one per track). */
  readonly single: readonly Group[] = [this];
  constructor(readonly key: string) {}
  /** Recompute the display spelling; true when it changed. */
  settle(): boolean {
    let best = "";
    let n = 0;
    for (const [s, c] of this.counts) {
      if (c > n || (c === n && betterSpelling(s, best))) {
        best = s;
        n = c;
      }
    }
    if (best === this.display) return false;
    this.display = best;
    return true;
  }
}

const nfcCache = new Map<string, string>();
/** NFC, remembered: tag values repeat once per track of an album. */
function nfc(s: string): string {
  let v = nfcCache.get(s);
  if (v === undefined) {
    v = s.normalize("NFC");
    if (nfcCache.size > 200_000) nfcCache.clear();
    nfcCache.set(s, v);
  }
  return v;
}

function bump<K>(m: Map<K, number>, k: K, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
}

/** Every genre of a track (several GENRE fields, `;`-separated), or `Unknown Genre`. */
function genresOf(t: TrackRecord): readonly string[] {
  if (!t.genres?.length || (t.genres.length === 1 && t.genres[0] === t.genre)) {
    // The common case: one genre (or none), no separators.
    const g = present(t.genre);
    if (g === undefined) return UNKNOWN_GENRES;
    if (!g.includes(";") && !g.includes("\0")) return [g];
  }
  const out: string[] = [];
  const list = t.genres && t.genres.length ? t.genres : t.genre !== undefined ? [t.genre] : [];
  for (const g of list) {
    if (g.includes(";") || g.includes("\0")) {
      for (const part of g.split(/[;\0]/)) {
        const p = present(part);
        if (p !== undefined) out.push(p);
      }
    } else {
      const p = present(g);
      if (p !== undefined) out.push(p);
    }
  }
  if (out.length === 0) out.push(UNKNOWN_GENRE);
  return out;
}

const UNKNOWN_GENRES: readonly string[] = [UNKNOWN_GENRE];

/** `{artistsort}` as the layout renders it. */
function artistSortOf(t: TrackRecord): string {
  return present(t.artistSort) ?? artistName(t);
}

/** `{albumartistsort}` as the layout renders it. */
function albumArtistSortOf(t: TrackRecord): string {
  return present(t.albumArtistSort) ?? present(t.albumArtist) ?? present(t.artistSort) ??
    albumArtistName(t);
}

/** Folders holding one disc of an album (`CD1`, `Disc 2`, `disk 03 - Bonus`). */
const DISC_FOLDER = /^(?:cd|dis[ck])[\s._-]*\d{1,3}(?:\b.*)?$/i;

/**
 * An album: (album artist, album title) compared by foldKey, whatever per-track years or
 * genres say. Its title shows the most common spelling, its year the most common year (ties:
 * the earliest).
 */
class Album {
  readonly tracks = new Set<Track>();
  readonly titles = new Map<string, number>();
  readonly years = new Map<number, number>();
  discs = 1;
  title = "";
  year: number | undefined = undefined;
  #sig = "\0";
  /** Sanitised names, shared by every track of the album. */
  artistDir = "";
  albumDir = "";
  albumsDir = "";
  yearDir = "";
  yearsAlbumDir = "";
  /** The album's folder in each view, remembered to skip walking the path for every track. */
  readonly leaves: (Dir | undefined)[] = [undefined, undefined, undefined, undefined];
  /** Its folder under each genre, with the genre spelling it was made for. */
  readonly genreLeaves = new Map<Group, [Dir, string]>();
  constructor(readonly key: string, readonly aa: Group) {}

  /** Recompute title, year and folder names; true when the names changed. */
  settle(): boolean {
    let title = "";
    let n = 0;
    for (const [s, c] of this.titles) {
      if (c > n || (c === n && betterSpelling(s, title))) {
        title = s;
        n = c;
      }
    }
    let year: number | undefined;
    n = 0;
    for (const [y, c] of this.years) {
      if (c > n || (c === n && y < year!)) {
        year = y;
        n = c;
      }
    }
    this.title = title;
    this.year = year;
    const sig = `${this.aa.display}\0${title}\0${year ?? ""}`;
    if (sig === this.#sig) return false;
    this.#sig = sig;
    const artist = this.aa.display;
    const y = year === undefined ? undefined : String(year);
    const folder = albumFolderParts(title, y);
    this.artistDir = sanitizeName(artist);
    this.albumDir = fitName(folder);
    this.albumsDir = fitName([...folder, { text: " - ", fixed: true }, { text: artist }]);
    this.yearDir = y ?? UNKNOWN_YEAR;
    this.yearsAlbumDir = fitName([{ text: artist }, { text: " - ", fixed: true }, {
      text: title,
    }]);
    this.leaves.fill(undefined);
    this.genreLeaves.clear();
    return true;
  }
}

class Track implements TrackNode {
  readonly kind = "track";
  links = 0;
  /** File name in /Albums, /Genres, /Years. */
  name = "";
  /** File name in /Artists when the layout makes it differ from {@link name}. */
  aname: string | undefined = undefined;
  multi = false;
  /** Artists, Albums, first genre, Years, then the other genres. */
  parents: Dir[] = [];
  album!: Album;
  aa!: Group;
  genres: readonly Group[] = [];
  /** Groups of the layout fields artist, artistsort, albumartistsort (custom layouts only). */
  lg: Group[] | undefined = undefined;
  /** Stored names (directory inode -> name) this track keeps where it has rivals. */
  assigned: Map<number, string> | undefined = undefined;
  /** Its stored names by place in {@link parents}, while it is being moved. */
  carry: (string | undefined)[] | undefined = undefined;
  /** Access of {@link accOf} (permissions mode), for that record. */
  acc: Access | undefined = undefined;
  accOf: TrackRecord | undefined = undefined;
  constructor(readonly ino: number, public track: TrackRecord) {}
}

class Cover implements CoverNode {
  readonly kind = "cover";
  links = 0;
  readonly base: string;
  constructor(
    readonly ino: number,
    public cover: CoverImage,
    readonly key: string,
    readonly sourcePath: string,
    /** Absolute source folder: the first folder by path gives an album its cover. */
    readonly folder: string,
    readonly embedded = false,
  ) {
    this.base = sanitizeName("cover", cover.ext);
  }
  /** Access of {@link accOf} (permissions mode), for that image. */
  acc: Access | undefined = undefined;
  accOf: CoverImage | undefined = undefined;
}

class Generated implements GeneratedNode {
  readonly kind = "generated";
  links = 1;
  constructor(
    readonly ino: number,
    readonly name: string,
    readonly make: () => Uint8Array,
    /** Extension (a collision suffix goes before it); `""` for the fixed files. */
    readonly ext = "",
    readonly sourcePath = "",
  ) {}
  /** A playlist's access (from its source), learnt by resolveAccess. */
  acc: Access | undefined = undefined;
  /** What {@link acc} was learnt for (the playlist's `make`; reset when it changes). */
  accOf: unknown = undefined;
}

/** A playlist of the library, served as `/Playlists/<name>.m3u8`. */
interface PlaylistEntry {
  rec: Playlist;
  node: Generated;
  cache: { version: number; bytes: Uint8Array } | undefined;
}

/** Image type of a picture's MIME type, as a cover extension. */
function pictureExt(mime: string): string {
  const sub = mime.toLowerCase().replace(/^image\//, "").replace(/[^a-z0-9]/g, "");
  return sub === "jpeg" || sub === "pjpeg" || sub === "" ? "jpg" : sub.slice(0, 8);
}

class Symlink implements SymlinkNode {
  readonly kind = "symlink";
  links = 0;
  constructor(
    readonly ino: number,
    readonly target: string,
    readonly base: string,
    readonly ext: string,
    readonly sourcePath: string,
  ) {}
  /** The track linked to: a query directory's access follows its results'. */
  track: Track | undefined = undefined;
}

type FileNode = Track | Cover | Generated | Symlink;
type AnyNode = Dir | FileNode;

/**
 * cyrb53 (bryc, public domain) truncated to 52 bits. Part of the inode contract: do not
 * change it, or every directory inode changes across an upgrade.
 */
function hash52(s: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (h2 & 0xfffff) * 0x100000000 + (h1 >>> 0);
}

/** Whether `name` is `base` with a collision suffix ` (n)` before `.ext`. */
function isSuffixed(name: string, base: string, ext: string): boolean {
  const tail = ext === "" ? "" : `.${ext}`;
  if (!name.endsWith(`)${tail}`)) return false;
  const open = name.lastIndexOf(" (", name.length - tail.length);
  if (open < 0) return false;
  const n = Number(name.slice(open + 2, name.length - tail.length - 1));
  return Number.isInteger(n) && n >= 2 && withCollisionSuffix(base, ext, n) === name;
}

function dirOf(relPath: string): string {
  const i = relPath.lastIndexOf("/");
  return i < 0 ? "" : relPath.slice(0, i);
}

function normDir(dir: string): string {
  let d = dir.replace(/^(\.\/)+/, "").replace(/^\/+|\/+$/g, "");
  if (d === ".") d = "";
  return d;
}

function sourceDirKey(originId: number, dir: string): string {
  return `${originId}:${dir}`;
}

const encoder = new TextEncoder();

/** The virtual tree; see the module documentation. */
export class VirtualTree {
  /** Owner of every node. */
  readonly uid: number;
  /** Owner group of every node. */
  readonly gid: number;
  /** The /Artists layout in use. */
  readonly layout: Layout;
  readonly #defaultLayout: boolean;
  readonly #origins = new Map<number, string>();
  /** Every live node but the tracks with id-derived inodes, which {@link #tracks} finds. */
  readonly #nodes = new Map<number, AnyNode>();
  readonly #tracks = new Map<number, Track>();
  readonly #albums = new Map<string, Album>();
  /** Spelling groups by fold key: album artists, genres, and the layout's artist fields. */
  readonly #aaReg = new Map<string, Group>();
  readonly #genreReg = new Map<string, Group>();
  readonly #layoutRegs: Map<string, Group>[] = [new Map(), new Map(), new Map()];
  /** Which of artist, artistsort, albumartistsort the (custom) layout uses. */
  readonly #layoutUses: boolean[];
  /** Embedded-picture covers by track id, made when an album folder first needs one. */
  readonly #embedded = new Map<number, Cover>();
  readonly #playlists = new Map<string, PlaylistEntry>();
  /** Every playlist entry (an absolute source path) with the track it names, if any. */
  #plIndex = new Map<string, Track | undefined>();
  /** Bumped whenever a track's place changes: playlists render again. */
  #placeVersion = 0;
  /** Stored-name changes not yet taken by {@link takeNameChanges}. */
  readonly #rowLog = new Map<string, NameRowChange>();
  #rowsDirty = new Set<Dir>();
  #building = true;
  readonly #covers = new Map<string, Cover>();
  /** Every hashed inode handed out, with its key: the no-reuse guarantee. */
  readonly #inoKeys = new Map<number, string>();
  readonly #collided = new Set<Dir>();
  #problems: Problem[] = [];
  #problemsVersion = 0;
  #problemsText: { version: number; bytes: Uint8Array } | undefined;
  readonly #status: () => string;
  #dirCount = 0;
  /** Permissions mode (see {@link TreeOptions.permissions}); undefined: all is the owner's. */
  readonly #perms: TreeOptions["permissions"] | undefined;
  #resolveScheduled = false;
  /** Tracks and covers whose source access is yet to be stat'ed (see resolveAccess). */
  readonly #unknown = new Set<Track | Cover | Generated>();
  /** One tally per depth of the directory walk (see #accessOf). */
  readonly #tallies: AccessTally[] = [];

  readonly #root: Dir;
  readonly #views: Dir[];
  readonly #search: Dir;
  readonly #playlistDir: Dir;

  // State of the batch in progress (build, apply, search update).
  #log: Map<string, { dir: Dir; name: string; old: number }> | null = null;
  #fresh = new Set<Dir>();
  #coverDirty = new Set<Dir>();
  #resolveDirty = new Set<Dir>();
  #pruneCheck = new Set<Dir>();
  #now = Date.now();

  /** Build the tree of `opts.tracks`. Throws {@link LayoutError} for a bad layout string. */
  constructor(opts: TreeOptions) {
    const started = performance.now();
    this.uid = opts.uid;
    this.gid = opts.gid;
    this.layout = typeof opts.layout === "string"
      ? parseLayout(opts.layout)
      : opts.layout ?? parseLayout(DEFAULT_LAYOUT);
    this.#defaultLayout = this.layout.template === DEFAULT_LAYOUT;
    const used = new Set<string>();
    const collect = (parts: readonly LayoutPart[]) => {
      for (const p of parts) {
        if (p.kind === "field") used.add(p.field);
        else if (p.kind === "group") collect(p.parts);
      }
    };
    for (const seg of this.layout.segments) collect(seg);
    this.#layoutUses = this.#defaultLayout
      ? [false, false, false]
      : [used.has("artist"), used.has("artistsort"), used.has("albumartistsort")];
    for (const o of opts.origins) this.#origins.set(o.id, o.path.replace(/\/+$/, ""));
    this.#status = opts.status ?? (() => JSON.stringify(this.stats(), null, 2) + "\n");
    this.#problems = [...(opts.problems ?? [])];
    this.#perms = opts.permissions;

    const fixed = (ino: number, name: string, parent: Dir | null, view: number) => {
      const d = new Dir(ino, name, parent, view, this.#now, false);
      this.#nodes.set(ino, d);
      if (parent) {
        parent.entries.set(name, d);
        parent.subdirs++;
      }
      this.#dirCount++;
      return d;
    };
    this.#root = fixed(INO.root, "", null, OTHER);
    this.#views = [
      fixed(INO.artists, "Artists", this.#root, ARTISTS),
      fixed(INO.albums, "Albums", this.#root, ALBUMS),
      fixed(INO.genres, "Genres", this.#root, GENRES),
      fixed(INO.years, "Years", this.#root, YEARS),
    ];
    this.#search = fixed(INO.search, ".search", this.#root, OTHER);
    const musicfs = fixed(INO.musicfs, ".musicfs", this.#root, OTHER);
    for (
      const g of [
        new Generated(INO.status, "status.json", () => encoder.encode(this.#status())),
        new Generated(INO.problems, "problems.txt", () => this.#problemsBytes()),
      ]
    ) {
      musicfs.entries.set(g.name, g);
      this.#nodes.set(g.ino, g);
    }

    this.#playlistDir = fixed(INO.playlists, "Playlists", this.#root, OTHER);

    const groups = new Set<Group>();
    const albums = new Set<Album>();
    for (const rec of opts.tracks ?? []) {
      let t = this.#tracks.get(rec.id);
      if (t) {
        // The same id twice: the later record wins.
        this.#leave(t, groups, albums);
        t.track = rec;
      } else {
        t = new Track(this.#trackIno(rec.id), rec);
        this.#tracks.set(rec.id, t);
        if (t.ino < TRACK_INO_BASE) this.#nodes.set(t.ino, t);
      }
      this.#join(t, groups, albums);
    }
    for (const g of groups) g.settle();
    for (const a of albums) {
      if (a.tracks.size === 0) this.#dropAlbum(a);
      else a.settle();
    }
    for (const r of opts.names ?? []) {
      const t = this.#tracks.get(r.fileId);
      if (t) (t.assigned ??= new Map()).set(r.dir, r.name);
    }
    // Tracks with stored names first: they keep them, whatever sorts first.
    for (const t of this.#tracks.values()) if (t.assigned) this.#place(t);
    for (const t of this.#tracks.values()) if (!t.assigned) this.#place(t);
    for (const c of opts.covers ?? []) {
      const key = sourceDirKey(c.originId, normDir(c.dir));
      const had = this.#covers.get(key);
      // Several images in one folder: the first by path wins, whatever the input order.
      if (!had || compare(c.relPath, had.cover.relPath) < 0) this.#setCover(c);
    }
    for (const p of opts.playlists ?? []) this.#setPlaylist(p);
    this.#indexPlaylists();
    this.#finish();
    // Settle every folder's access now, before the mount serves: later changes cost only
    // the folders they touch.
    if (this.#perms) {
      for (const t of this.#tracks.values()) this.#accessOf(t);
      this.#accessOf(this.#root);
    }
    this.#building = false;
    log.debug("Tree built: {tracks} tracks, {dirs} directories in {ms} ms", {
      tracks: this.#tracks.size,
      dirs: this.#dirCount,
      ms: Math.round(performance.now() - started),
    });
  }

  // ---- serving -------------------------------------------------------------------------

  /** The node of `ino`, if it exists now. */
  get(ino: number): Node | undefined {
    return this.#node(ino);
  }

  /** The node called `name` in directory `parent`; undefined when there is none. */
  lookup(parent: number, name: string): Node | undefined {
    const d = this.#node(parent);
    return d instanceof Dir ? d.entries.get(name) : undefined;
  }

  /**
   * The entries of directory `ino` sorted by name (UTF-16 code unit order), without `.` and
   * `..`; undefined when `ino` is not a directory. Costs O(entries) (plus a sort of them when
   * the directory changed); the array must not be modified.
   */
  children(ino: number): readonly TreeEntry[] | undefined {
    const d = this.#node(ino);
    if (!(d instanceof Dir)) return undefined;
    if (d.sorted) return d.sorted;
    const list: TreeEntry[] = [];
    for (const [name, node] of d.entries) list.push({ name, node });
    list.sort((a, b) => compare(a.name, b.name));
    // Only big listings are kept: caching every one would double the memory after a `find`.
    if (list.length >= 32) d.sorted = list;
    return list;
  }

  /** `stat(2)` attributes of a node. */
  attr(node: Node): Attr {
    const a = this.#plainAttr(node);
    if (this.#perms && !(node instanceof Symlink)) {
      const acc = this.#accessOf(node as AnyNode);
      a.uid = acc.uid;
      a.gid = acc.gid;
      a.mode = (a.mode & ~0o7777) | acc.mode;
    }
    return a;
  }

  /**
   * The owner, group and permission bits `node` is served with (see access.ts); a /.search
   * symlink answers those of the track it links to.
   */
  access(node: Node): Access {
    if (this.#perms) return this.#accessOf(node as AnyNode);
    const a = this.#plainAttr(node);
    return { uid: a.uid, gid: a.gid, mode: a.mode & 0o7777 };
  }

  #accessOf(n: AnyNode, depth = 0): Access {
    if (n instanceof Track) {
      if (n.accOf !== n.track || !n.acc) {
        const t = n.track;
        if (t.uid !== undefined && t.gid !== undefined && t.mode !== undefined) {
          n.acc = fileAccess(t.uid, t.gid, t.mode);
          n.accOf = t;
        } else this.#toLearn(n);
      }
      return n.acc!;
    }
    if (n instanceof Cover) {
      if (n.accOf !== n.cover || !n.acc) this.#toLearn(n);
      return n.acc!;
    }
    if (n instanceof Dir) {
      if (n.ino === INO.musicfs || (n === this.#search && !this.#perms!.shareSearch)) {
        return { uid: this.uid, gid: this.gid, mode: PRIVATE_DIR_MODE };
      }
      if (n === this.#search) return { uid: this.uid, gid: this.gid, mode: SHARED_SEARCH_MODE };
      if (n.acc) return n.acc;
      // Entries after the first readable by everyone are not even looked at.
      const tally = (this.#tallies[depth] ??= new AccessTally()).reset();
      for (const e of n.entries.values()) {
        // Covers do not open folders: their access is learnt later (resolveAccess), and a
        // folder's tracks decide it anyway.
        if (!(e instanceof Cover) && tally.add(this.#accessOf(e, depth + 1))) break;
      }
      n.acc = tally.result(this);
      return n.acc;
    }
    if (n instanceof Symlink && n.track && this.#tracks.get(n.track.track.id) === n.track) {
      return this.#accessOf(n.track);
    }
    if (n instanceof Generated && n.sourcePath !== "") {
      // A playlist: whom its source file allows (learnt like a cover's).
      if (n.accOf !== n.make || !n.acc) this.#toLearn(n);
      return n.acc!;
    }
    // Generated files (inside the private /.musicfs), links to tracks gone: the daemon's.
    return { uid: this.uid, gid: this.gid, mode: 0o400 };
  }

  /**
   * `n`'s source access is not in its record: it shows as the daemon user's alone until
   * {@link resolveAccess} has stat'ed it (run by itself when `onAccessResolved` is given).
   */
  #toLearn(n: Track | Cover | Generated): void {
    n.acc = { uid: this.uid, gid: this.gid, mode: 0o400 };
    n.accOf = n instanceof Track ? n.track : n instanceof Cover ? n.cover : n.make;
    this.#unknown.add(n);
    const done = this.#perms?.onAccessResolved;
    if (!done || this.#resolveScheduled) return;
    this.#resolveScheduled = true;
    setTimeout(() => {
      this.#resolveScheduled = false;
      this.resolveAccess().then(done, (e) => {
        log.warn("Cannot learn source permissions: {error}", { error: String(e) });
      });
    }, 0);
  }

  /**
   * Learn the access of the sources the records do not give (covers; tracks scanned before
   * schema 2) with async stats, a few at a time, so a stalled origin never blocks a request:
   * until then they show as the daemon user's alone. Resolves with the kernel invalidations
   * the answers cause. Call it after building the tree and after each {@link apply}; a no-op
   * without permissions mode.
   */
  async resolveAccess(concurrency = 4): Promise<Invalidation[]> {
    if (!this.#perms || this.#unknown.size === 0) return [];
    const todo = [...this.#unknown].map((n) => ({
      n,
      of: n.accOf,
      path: n instanceof Track ? this.#source(n.track.originId, n.track.relPath) : n.sourcePath,
      acc: undefined as Access | undefined,
    }));
    this.#unknown.clear();
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const job = todo[next++];
        try {
          const st = await Deno.stat(job.path);
          job.acc = fileAccess(st.uid ?? this.uid, st.gid ?? this.gid, (st.mode ?? 0) & 0o7777);
        } catch (e) {
          log.warn("Cannot stat {path}: {error}", { path: job.path, error: String(e) });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
    const inodes = new Set<number>();
    let tracksChanged = false;
    for (const { n, of, acc } of todo) {
      // Skip what changed meanwhile: its new record or image is judged afresh.
      if (!acc || n.accOf !== of || this.#node(n.ino) !== n) continue;
      n.acc = acc;
      inodes.add(n.ino);
      if (n instanceof Track) {
        tracksChanged = true;
        for (const d of n.parents) this.#accessChanged(d, inodes);
      }
    }
    if (tracksChanged) {
      for (const q of this.#search.entries.values()) {
        if (q instanceof Dir) this.#accessChanged(q, inodes);
      }
    }
    return [...inodes].map((ino) => ({ kind: "inode" as const, ino }));
  }

  /** A directory's entries changed: it and the directories above it recompute their access. */
  #accessChanged(d: Dir | null, inodes: Set<number>): void {
    // All the way up: a directory may have been settled without looking at every entry.
    // Only one whose access was served can be in the kernel's cache.
    for (; d; d = d.parent) {
      if (d.acc === undefined) continue;
      d.acc = undefined;
      inodes.add(d.ino);
    }
  }

  #plainAttr(node: Node): Attr {
    const n = node as AnyNode;
    const base = { ino: n.ino, uid: this.uid, gid: this.gid };
    if (n instanceof Dir) {
      return {
        ...base,
        size: 0,
        mode: S_IFDIR | 0o555,
        nlink: 2 + n.subdirs,
        mtimeMs: n.mtimeMs,
        ctimeMs: n.mtimeMs,
      };
    }
    if (n instanceof Track) {
      const t = n.track;
      return {
        ...base,
        size: t.size,
        mode: S_IFREG | 0o444,
        nlink: Math.max(1, n.links),
        mtimeMs: t.mtimeMs,
        ctimeMs: t.mtimeMs,
      };
    }
    if (n instanceof Cover) {
      const c = n.cover;
      if (c.size === undefined && !n.embedded) {
        // The library did not say: one stat, remembered (covers are small and few).
        try {
          const st = Deno.statSync(n.sourcePath);
          n.cover = { ...c, size: st.size, mtimeMs: st.mtime?.getTime() ?? this.#now };
        } catch (e) {
          log.warn("Cannot stat cover {path}: {error}", { path: n.sourcePath, error: String(e) });
          n.cover = { ...c, size: 0, mtimeMs: this.#now };
        }
      }
      const mtimeMs = n.cover.mtimeMs ?? this.#now;
      return {
        ...base,
        // An embedded picture's size is known once MusicOps has read it (setCoverSize).
        size: n.cover.size ?? 0,
        mode: S_IFREG | 0o444,
        nlink: Math.max(1, n.links),
        mtimeMs,
        ctimeMs: mtimeMs,
      };
    }
    if (n instanceof Generated) {
      const now = Date.now();
      return {
        ...base,
        size: n.make().length,
        mode: S_IFREG | 0o444,
        nlink: 1,
        mtimeMs: now,
        ctimeMs: now,
      };
    }
    return {
      ...base,
      size: utf8Length(n.target),
      mode: S_IFLNK | 0o777,
      nlink: 1,
      mtimeMs: this.#now,
      ctimeMs: this.#now,
    };
  }

  /**
   * The current content of a generated file. Made afresh on each call (status.json changes
   * all the time): serve reads from one snapshot per open, with direct I/O.
   */
  content(node: GeneratedNode): Uint8Array {
    return (node as Generated).make();
  }

  /** The library roots' paths (where sources may be opened). */
  originPaths(): string[] {
    return [...this.#origins.values()];
  }

  /** Absolute source path of a track or cover. */
  sourcePath(node: TrackNode | CoverNode): string {
    if (node.kind === "cover") return (node as Cover).sourcePath;
    return this.#source(node.track.originId, node.track.relPath);
  }

  /**
   * The virtual path of a node, e.g. `/Albums/X - Y/01 - Z.flac`: for a track, its /Artists
   * path; for a cover or symlink, one of its places, found by a scan of the whole tree (for
   * diagnostics only). Undefined when the node is not in the tree.
   */
  pathOf(ino: number): string | undefined {
    const n = this.#node(ino);
    if (!n) return undefined;
    if (n instanceof Dir) return n === this.#root ? "/" : this.#dirPath(n);
    if (n instanceof Track) {
      return n.parents.length ? this.#filePath(n.parents[ARTISTS], n) : undefined;
    }
    for (const d of this.#nodes.values()) {
      if (d instanceof Dir) {
        for (const [name, e] of d.entries) if (e === n) return `${this.#dirPath(d)}/${name}`;
      }
    }
    return undefined;
  }

  /** Names that were given a collision suffix, by virtual path. */
  collisions(): Collision[] {
    const out: Collision[] = [];
    for (const d of this.#collided) {
      const dir = this.#dirPath(d);
      for (const c of d.collisions ?? []) {
        out.push({
          path: `${dir}/${c.name}`,
          wanted: c.wanted,
          sourcePath: this.#nodeSource(c.node),
        });
      }
    }
    return out.sort((a, b) => compare(a.path, b.path));
  }

  /** The unreadable files currently listed in problems.txt. */
  problems(): readonly Problem[] {
    return this.#problems;
  }

  /** Counts of what the tree holds. */
  stats(): TreeStats {
    let collisions = 0;
    for (const d of this.#collided) collisions += d.collisions?.length ?? 0;
    return {
      tracks: this.#tracks.size,
      albums: this.#albums.size,
      dirs: this.#dirCount,
      covers: this.#covers.size,
      problems: this.#problems.length,
      collisions,
      playlists: this.#playlists.size,
      missingPlaylistEntries: this.#missingEntries().length,
    };
  }

  // ---- updates -------------------------------------------------------------------------

  /**
   * Apply a library change (the scanner's, as it is; absent parts change nothing) and, when
   * given, the library's new problem list; returns the kernel invalidations that make open
   * shells see them. Costs O(changed tracks + the albums and directories they touch), not
   * O(library) (except cover changes, which look through every track once).
   */
  apply(changes: Partial<LibraryChange>, problems?: Iterable<Problem>): Invalidation[] {
    return this.#batch((inodes) => {
      const albums = new Set<Album>();
      const groups = new Set<Group>();
      const placing = new Set<Track>();
      const plKeys = this.#plIndex.size > 0;
      for (const { id } of changes.removed ?? []) {
        const t = this.#tracks.get(id);
        if (!t) continue;
        this.#detach(t);
        this.#leave(t, groups, albums);
        this.#tracks.delete(id);
        this.#nodes.delete(t.ino);
        this.#dropEmbedded(id, inodes);
        placing.delete(t);
        if (plKeys) this.#unindex(t);
      }
      const upserts = [...(changes.added ?? []), ...(changes.changed ?? [])];
      for (const rec of upserts) {
        let t = this.#tracks.get(rec.id);
        if (t) {
          this.#detach(t);
          this.#leave(t, groups, albums);
          if (plKeys) this.#unindex(t);
          t.track = rec;
          inodes.add(t.ino);
          this.#dropEmbedded(rec.id, inodes);
        } else {
          t = new Track(this.#trackIno(rec.id), rec);
          this.#tracks.set(rec.id, t);
          if (t.ino < TRACK_INO_BASE) this.#nodes.set(t.ino, t);
        }
        this.#join(t, groups, albums);
        placing.add(t);
        if (plKeys) {
          const src = this.#source(rec.originId, rec.relPath);
          if (this.#plIndex.has(src)) {
            this.#plIndex.set(src, t);
            this.#problemsVersion++;
          }
        }
      }
      const replace = (t: Track) => {
        if (placing.has(t)) return;
        this.#detach(t);
        placing.add(t);
      };
      // A spelling that becomes the most common renames the folders showing it.
      const respelled = new Set<Group>();
      for (const g of groups) {
        if (g.counts.size === 0 || !g.settle()) continue;
        if (this.#aaReg.get(g.key) === g) { for (const a of g.albums) albums.add(a); }
        else respelled.add(g);
      }
      if (respelled.size) {
        // Rare (a spelling overtaking another): one pass over the tracks finds their holders.
        for (const t of this.#tracks.values()) {
          if (
            t.genres.some((g) => respelled.has(g)) || t.lg?.some((g) => g && respelled.has(g))
          ) replace(t);
        }
      }
      for (const a of albums) {
        if (a.tracks.size === 0) {
          this.#dropAlbum(a);
          continue;
        }
        let discs = 1;
        for (const t of a.tracks) discs = Math.max(discs, discsOf(t.track));
        a.discs = discs;
        // A new title spelling or year, or gaining or losing a second disc, renames every
        // track of the album.
        const renamed = a.settle();
        for (const t of a.tracks) if (renamed || t.multi !== discs > 1) replace(t);
      }
      for (const t of placing) this.#place(t);
      if (placing.size) this.#placeVersion++;

      const coverKeys = new Set<string>();
      for (const c of changes.covers ?? []) {
        const key = sourceDirKey(c.originId, normDir(c.dir));
        const had = this.#covers.get(key);
        if (had && had.cover.relPath === c.relPath && had.cover.ext === c.ext) {
          had.cover = c;
          inodes.add(had.ino);
        } else {
          this.#setCover(c);
          coverKeys.add(key);
        }
      }
      for (const r of changes.removedCovers ?? []) {
        const key = sourceDirKey(r.originId, normDir(r.dir));
        const had = this.#covers.get(key);
        if (!had) continue;
        this.#covers.delete(key);
        this.#nodes.delete(had.ino);
        coverKeys.add(key);
      }
      if (coverKeys.size) {
        for (const t of this.#tracks.values()) {
          const dir = dirOf(t.track.relPath);
          const slash = dir.lastIndexOf("/");
          const parent = slash < 0 ? "" : dir.slice(0, slash);
          if (
            coverKeys.has(sourceDirKey(t.track.originId, dir)) ||
            coverKeys.has(sourceDirKey(t.track.originId, parent))
          ) {
            for (const d of t.parents) this.#coverDirty.add(d);
          }
        }
      }
      let playlistsChanged = false;
      for (const r of changes.removedPlaylists ?? []) {
        const key = sourceDirKey(r.originId, r.relPath);
        const had = this.#playlists.get(key);
        if (!had) continue;
        this.#remove(this.#playlistDir, had.node);
        this.#nodes.delete(had.node.ino);
        this.#playlists.delete(key);
        playlistsChanged = true;
      }
      for (const p of changes.playlists ?? []) {
        const had = this.#playlists.get(sourceDirKey(p.originId, p.relPath));
        if (had) inodes.add(had.node.ino);
        this.#setPlaylist(p);
        playlistsChanged = true;
      }
      if (playlistsChanged) this.#indexPlaylists();
      if ((placing.size || playlistsChanged) && this.#playlists.size) {
        // Entries follow their tracks: the kernel must not keep an old size.
        for (const e of this.#playlists.values()) inodes.add(e.node.ino);
      }
      if (problems) {
        this.#problems = [...problems];
        this.#problemsVersion++;
      }
    });
  }

  /**
   * Stored-name changes since the last call (the tree's part of library.db's `names` table):
   * a row for every track whose name in a directory carries a suffix or is wanted by another
   * entry there, so the next start gives every track the name it has now.
   */
  takeNameChanges(): NameRowChange[] {
    const out = [...this.#rowLog.values()];
    this.#rowLog.clear();
    return out;
  }

  /** Every stored-name row the tree holds now (what library.db's `names` should contain). */
  nameRows(): NameRow[] {
    const out: NameRow[] = [];
    for (const t of this.#tracks.values()) {
      for (const [dir, name] of t.assigned ?? []) out.push({ fileId: t.track.id, dir, name });
    }
    return out;
  }

  /** Record the size of an embedded cover once its picture was extracted (until then: 0). */
  setCoverSize(node: CoverNode, size: number): void {
    const c = node as Cover;
    c.cover = { ...c.cover, size };
  }

  /**
   * Fill `/.search/<query>` with symlinks `<Artist> - <Title>.<ext>` to the /Artists path of
   * each track (ids of unknown tracks are skipped). The directory is created if needed and
   * stays until {@link removeSearch}. Links are not updated when tracks move later: call
   * this again to refresh them.
   */
  setSearchResults(
    query: string,
    trackIds: Iterable<number>,
  ): { node: DirNode; invalidations: Invalidation[] } {
    const name = sanitizeName(query);
    let dir: Dir | undefined;
    const invalidations = this.#batch((inodes) => {
      dir = this.#subdir(this.#search, name, false);
      const old = new Map<number, Symlink>();
      for (const n of dir.entries.values()) if (n instanceof Symlink) old.set(n.ino, n);
      const keep = new Set<Symlink>();
      for (const id of trackIds) {
        const t = this.#tracks.get(id);
        if (!t || !t.parents.length) continue;
        const ino = this.#hashIno(`s${name}\0${id}`);
        const target = `../..${this.#filePath(t.parents[ARTISTS], t)}`;
        const had = old.get(ino);
        if (had && had.target === target) {
          keep.add(had);
          continue;
        }
        if (had) inodes.add(ino);
        const rec = t.track;
        const base = sanitizeName(`${artistName(rec)} - ${titleName(rec)}`, rec.ext);
        const link = new Symlink(
          ino,
          target,
          base,
          rec.ext,
          this.#source(rec.originId, rec.relPath),
        );
        link.track = t;
        if (had) {
          this.#remove(dir, had);
          old.delete(ino);
        }
        this.#nodes.set(ino, link);
        this.#insert(dir, link);
      }
      for (const n of old.values()) {
        if (keep.has(n)) continue;
        this.#remove(dir, n);
        this.#nodes.delete(n.ino);
      }
    });
    return { node: dir!, invalidations };
  }

  /** Remove `/.search/<query>` and its links. */
  removeSearch(query: string): Invalidation[] {
    const dir = this.#search.entries.get(sanitizeName(query));
    if (!(dir instanceof Dir)) return [];
    return this.#batch(() => {
      for (const n of [...dir.entries.values()]) {
        if (n instanceof Dir) continue;
        this.#remove(dir, n);
        this.#nodes.delete(n.ino);
      }
      dir.prunable = true;
      this.#pruneCheck.add(dir);
    });
  }

  // ---- internals -----------------------------------------------------------------------

  /** Run one batch of changes and turn what it touched into invalidations. */
  #batch(fn: (inodes: Set<number>) => void): Invalidation[] {
    this.#log = new Map();
    this.#fresh = new Set();
    this.#now = Date.now();
    const inodes = new Set<number>();
    const version = this.#problemsVersion;
    try {
      fn(inodes);
      this.#finish();
      if (this.#perms) {
        for (const { dir } of this.#log.values()) this.#accessChanged(dir, inodes);
        let searchStale = false;
        for (const ino of inodes) {
          const n = this.#node(ino);
          if (n instanceof Track) {
            searchStale = true;
            this.#accessOf(n);
          } else if (n instanceof Cover && n.accOf !== n.cover) this.#toLearn(n);
        }
        if (searchStale) {
          for (const q of this.#search.entries.values()) {
            if (q instanceof Dir) this.#accessChanged(q, inodes);
          }
        }
      }
      const out: Invalidation[] = [];
      for (const { dir, name, old } of this.#log.values()) {
        const cur = dir.entries.get(name)?.ino ?? 0;
        if (cur === old) continue;
        if (this.#nodes.get(dir.ino) === dir) {
          dir.mtimeMs = this.#now;
          inodes.add(dir.ino);
        }
        // `delete` makes the kernel drop the inode's link count: only for objects now gone,
        // not for a track that merely left one of its four directories.
        if (old !== 0 && cur === 0 && !this.#node(old)) {
          out.push({ kind: "delete", parent: dir.ino, child: old, name });
        } else out.push({ kind: "entry", parent: dir.ino, name });
      }
      if (this.#problemsVersion !== version) inodes.add(INO.problems);
      for (const ino of inodes) if (this.#node(ino)) out.push({ kind: "inode", ino });
      return out;
    } finally {
      this.#log = null;
      this.#fresh = new Set();
    }
  }

  /** The inode of the directory holding virtual path `path` (for problems.txt). */
  #dirIno(path: string): number {
    let ino: number = INO.root;
    const parts = path.split("/").filter(Boolean);
    for (let i = 0; i < parts.length - 1; i++) {
      const n = this.lookup(ino, parts[i]);
      if (!n) return 0;
      ino = n.ino;
    }
    return ino;
  }

  #node(ino: number): AnyNode | undefined {
    return ino >= TRACK_INO_BASE ? this.#tracks.get(ino - TRACK_INO_BASE) : this.#nodes.get(ino);
  }

  /** Remember what `dir` held under `name` before this batch first changed it. */
  #touch(dir: Dir, name: string): void {
    if (this.#log === null || this.#fresh.has(dir)) return;
    const key = `${dir.ino}/${name}`;
    if (!this.#log.has(key)) {
      this.#log.set(key, { dir, name, old: dir.entries.get(name)?.ino ?? 0 });
    }
  }

  #trackIno(id: number): number {
    if (Number.isSafeInteger(id) && id >= 0 && id < TRACK_INO_BASE) return TRACK_INO_BASE + id;
    return this.#hashIno(`t${id}`);
  }

  #hashIno(key: string): number {
    let h = hash52(key);
    for (let n = 1;; n++) {
      if (h >= FIRST_HASHED_INO) {
        const holder = this.#inoKeys.get(h);
        if (holder === undefined) {
          this.#inoKeys.set(h, key);
          return h;
        }
        if (holder === key) return h;
        log.warn("Inode hash collision between {a} and {b}; probing", { a: holder, b: key });
      }
      h = hash52(`${key}\0${n}`);
    }
  }

  #source(originId: number, relPath: string): string {
    return `${this.#origins.get(originId) ?? `<origin ${originId}>`}/${relPath}`;
  }

  #nodeSource(n: FileNode): string {
    if (n instanceof Track) return this.#source(n.track.originId, n.track.relPath);
    return n.sourcePath;
  }

  #dirPath(d: Dir): string {
    let p = "";
    for (let x: Dir | null = d; x && x.parent; x = x.parent) p = `/${x.name}${p}`;
    return p;
  }

  #filePath(d: Dir, n: FileNode): string {
    return `${this.#dirPath(d)}/${this.#nameIn(d, n)}`;
  }

  #nameIn(d: Dir, n: FileNode): string {
    const base = this.#baseOf(d, n);
    if (d.entries.get(base) === n) return base;
    for (const [name, e] of d.entries) if (e === n) return name;
    return base;
  }

  #baseOf(d: Dir, n: FileNode): string {
    if (n instanceof Track) return d.view === ARTISTS ? n.aname ?? n.name : n.name;
    if (n instanceof Generated) return n.name;
    return n.base;
  }

  #groupJoin(reg: Map<string, Group>, raw: string, touched: Set<Group>): Group {
    const spelling = nfc(raw);
    const key = foldKey(spelling);
    let g = reg.get(key);
    if (!g) {
      g = new Group(key);
      reg.set(key, g);
    }
    bump(g.counts, spelling, 1);
    touched.add(g);
    return g;
  }

  #groupLeave(reg: Map<string, Group>, g: Group, raw: string, touched: Set<Group>): void {
    bump(g.counts, nfc(raw), -1);
    if (g.counts.size === 0) reg.delete(g.key);
    else touched.add(g);
  }

  /** Count a track in its album and its spelling groups. */
  #join(t: Track, groups: Set<Group>, albums: Set<Album>): void {
    const rec = t.track;
    const aa = this.#groupJoin(this.#aaReg, albumArtistName(rec), groups);
    t.aa = aa;
    const title = albumName(rec);
    const key = `${aa.key}\0${foldKey(title)}`;
    let a = this.#albums.get(key);
    if (!a) {
      a = new Album(key, aa);
      this.#albums.set(key, a);
      aa.albums.add(a);
    }
    a.tracks.add(t);
    bump(a.titles, nfc(title), 1);
    const y = positive(rec.year);
    if (y !== undefined) bump(a.years, y, 1);
    a.discs = Math.max(a.discs, discsOf(rec));
    t.album = a;
    albums.add(a);
    const list = genresOf(rec);
    if (list.length === 1) t.genres = this.#groupJoin(this.#genreReg, list[0], groups).single;
    else {
      const seen: Group[] = [];
      for (const g of list) {
        const grp = this.#groupJoin(this.#genreReg, g, groups);
        // The same genre twice (`Rock` and `rock`) counts once.
        if (seen.includes(grp)) bump(grp.counts, nfc(g), -1);
        else seen.push(grp);
      }
      t.genres = seen;
    }
    if (this.#layoutUses.some(Boolean)) {
      const raws = [artistName(rec), artistSortOf(rec), albumArtistSortOf(rec)];
      t.lg = raws.map((r, i) =>
        this.#layoutUses[i] ? this.#groupJoin(this.#layoutRegs[i], r, groups) : undefined!
      );
    }
  }

  /** Undo {@link join} for the track's current record. */
  #leave(t: Track, groups: Set<Group>, albums: Set<Album>): void {
    const rec = t.track;
    this.#groupLeave(this.#aaReg, t.aa, albumArtistName(rec), groups);
    const a = t.album;
    a.tracks.delete(t);
    bump(a.titles, nfc(albumName(rec)), -1);
    const y = positive(rec.year);
    if (y !== undefined) bump(a.years, y, -1);
    albums.add(a);
    const seen = new Set<Group>();
    for (const g of genresOf(rec)) {
      const grp = this.#genreReg.get(foldKey(nfc(g)));
      if (!grp || seen.has(grp)) continue;
      seen.add(grp);
      this.#groupLeave(this.#genreReg, grp, g, groups);
    }
    if (t.lg) {
      const raws = [artistName(rec), artistSortOf(rec), albumArtistSortOf(rec)];
      for (let i = 0; i < 3; i++) {
        if (t.lg[i]) this.#groupLeave(this.#layoutRegs[i], t.lg[i], raws[i], groups);
      }
    }
  }

  #dropAlbum(a: Album): void {
    if (this.#albums.get(a.key) === a) this.#albums.delete(a.key);
    a.aa.albums.delete(a);
  }

  /** The record a custom layout renders: grouped spellings, the album's year. */
  #layoutView(t: Track): LayoutTrack {
    const rec = t.track;
    const a = t.album;
    const v: LayoutTrack = {
      ...rec,
      albumArtist: a.aa.display,
      album: present(rec.album) === undefined ? undefined : a.title,
      year: a.year,
      genre: present(rec.genre) === undefined && !rec.genres?.length
        ? undefined
        : t.genres[0].display,
    };
    if (t.lg) {
      if (t.lg[0] && present(rec.artist) !== undefined) v.artist = t.lg[0].display;
      if (t.lg[1] && present(rec.artistSort) !== undefined) v.artistSort = t.lg[1].display;
      if (t.lg[2] && present(rec.albumArtistSort) !== undefined) {
        v.albumArtistSort = t.lg[2].display;
      }
    }
    return v;
  }

  /** Put a track in its directories (one per view, one per genre), creating them as needed. */
  #place(t: Track): void {
    const rec = t.track;
    const a = t.album;
    t.multi = a.discs > 1;
    t.name = trackFileName(rec, t.multi);
    let d: Dir | undefined;
    if (this.#defaultLayout) {
      t.aname = undefined;
      d = a.leaves[ARTISTS];
      if (!d || d.dead) {
        d = a.leaves[ARTISTS] = this.#subdir(
          this.#subdir(this.#views[ARTISTS], a.artistDir),
          a.albumDir,
        );
      }
    } else {
      const segs = renderLayout(this.layout, this.#layoutView(t), t.multi);
      const file = segs[segs.length - 1];
      t.aname = file === t.name ? undefined : file;
      d = this.#views[ARTISTS];
      for (let i = 0; i < segs.length - 1; i++) d = this.#subdir(d, segs[i]);
    }
    const artists = d;
    d = a.leaves[ALBUMS];
    if (!d || d.dead) d = a.leaves[ALBUMS] = this.#subdir(this.#views[ALBUMS], a.albumsDir);
    const albums = d;
    d = a.leaves[YEARS];
    if (!d || d.dead) {
      d = a.leaves[YEARS] = this.#subdir(
        this.#subdir(this.#views[YEARS], a.yearDir),
        a.yearsAlbumDir,
      );
    }
    // One exact-size array: growing it by push would reserve 17 slots per track.
    const genres = t.genres;
    const parents = new Array<Dir>(3 + genres.length);
    parents[ARTISTS] = artists;
    parents[ALBUMS] = albums;
    parents[YEARS] = d;
    for (let i = 0; i < genres.length; i++) {
      const g = genres[i];
      const leaf = a.genreLeaves.get(g);
      if (leaf && !leaf[0].dead && leaf[1] === g.display) d = leaf[0];
      else {
        d = this.#subdir(this.#views[GENRES], sanitizeName(g.display));
        d = this.#subdir(this.#subdir(d, a.artistDir), a.albumDir);
        a.genreLeaves.set(g, [d, g.display]);
      }
      parents[i === 0 ? GENRES : 3 + i] = d;
    }
    t.parents = parents;
    if (t.carry) {
      for (let i = 0; i < parents.length && i < t.carry.length; i++) {
        const name = t.carry[i];
        if (name !== undefined && !t.assigned?.has(parents[i].ino)) {
          this.#setRow(t, parents[i].ino, name);
        }
      }
      t.carry = undefined;
    }
    for (const p of parents) this.#insert(p, t);
    if (t.assigned) {
      // Names kept in directories the track has left are free again.
      for (const dir of [...t.assigned.keys()]) {
        if (!parents.some((p) => p.ino === dir)) this.#setRow(t, dir, null);
      }
    }
  }

  #detach(t: Track): void {
    // A track with stored names takes them along when its folder is renamed (a new year or
    // spelling): the same place in the new folder keeps the same file name.
    if (t.assigned) t.carry = t.parents.map((p) => t.assigned!.get(p.ino));
    for (const d of t.parents) this.#remove(d, t);
    t.parents = [];
  }

  /** The subdirectory `name` of `parent`, created if missing. */
  #subdir(parent: Dir, name: string, prunable = true): Dir {
    const e = parent.entries.get(name);
    if (e instanceof Dir) return e;
    const ino = this.#hashIno(`d${this.#dirPath(parent)}/${name}`);
    const d = new Dir(ino, name, parent, parent.view, this.#now, prunable);
    this.#touch(parent, name);
    if (e) {
      // Directories keep their names; the file that held this one is renamed.
      (parent.pending ??= []).push(e);
      this.#resolveDirty.add(parent);
    }
    parent.entries.set(name, d);
    parent.subdirs++;
    parent.sorted = undefined;
    this.#nodes.set(ino, d);
    if (this.#log) this.#fresh.add(d);
    this.#dirCount++;
    return d;
  }

  #insert(d: Dir, n: FileNode): void {
    n.links++;
    if (n instanceof Track) this.#coverDirty.add(d);
    const base = this.#baseOf(d, n);
    const kept = n instanceof Track ? n.assigned?.get(d.ino) : undefined;
    if (kept === undefined && !this.#resolveDirty.has(d) && !d.entries.has(base)) {
      // A free name stays free of any suffix the directory's other collisions were given.
      this.#touch(d, base);
      d.entries.set(base, n);
      d.sorted = undefined;
    } else {
      (d.pending ??= []).push(n);
      this.#resolveDirty.add(d);
    }
  }

  #remove(d: Dir, n: FileNode): void {
    n.links--;
    if (n instanceof Track) this.#coverDirty.add(d);
    this.#pruneCheck.add(d);
    if (d.pending) {
      const i = d.pending.indexOf(n);
      if (i >= 0) {
        d.pending.splice(i, 1);
        return;
      }
    }
    const base = this.#baseOf(d, n);
    d.sorted = undefined;
    // The others keep their names (a removed source frees only its own).
    if (d.collisions) this.#rowsDirty.add(d);
    if (d.entries.get(base) === n) {
      this.#touch(d, base);
      d.entries.delete(base);
      return;
    }
    for (const [name, e] of d.entries) {
      if (e === n) {
        this.#touch(d, name);
        d.entries.delete(name);
        break;
      }
    }
  }

  #setCover(c: CoverImage): void {
    const key = sourceDirKey(c.originId, normDir(c.dir));
    const had = this.#covers.get(key);
    if (had) this.#nodes.delete(had.ino);
    const node = new Cover(
      this.#hashIno(`c${c.originId}\0${c.relPath}`),
      c,
      key,
      this.#source(c.originId, c.relPath),
      this.#source(c.originId, normDir(c.dir)),
    );
    this.#covers.set(key, node);
    this.#nodes.set(node.ino, node);
    if (this.#perms) this.#toLearn(node);
  }

  /** The embedded-picture cover of a track, made on first need. */
  #embeddedCover(t: Track): Cover {
    let c = this.#embedded.get(t.track.id);
    if (c) return c;
    const rec = t.track;
    const src = this.#source(rec.originId, rec.relPath);
    c = new Cover(
      this.#hashIno(`e${rec.originId}\0${rec.relPath}`),
      {
        originId: rec.originId,
        dir: dirOf(rec.relPath),
        relPath: rec.relPath,
        ext: pictureExt(rec.picture ?? ""),
        mtimeMs: rec.mtimeMs,
      },
      `e${rec.id}`,
      src,
      src,
      true,
    );
    this.#embedded.set(rec.id, c);
    this.#nodes.set(c.ino, c);
    return c;
  }

  /** A track changed or went: its embedded cover (if made) goes with it. */
  #dropEmbedded(id: number, inodes: Set<number>): void {
    const c = this.#embedded.get(id);
    if (!c) return;
    this.#embedded.delete(id);
    this.#nodes.delete(c.ino);
    inodes.add(c.ino);
  }

  /**
   * Show the right cover in an album folder. For each track: an image in its source folder,
   * else in the parent folder when its folder is a disc folder (`CD1`, `Disc 2`), else its
   * embedded front picture. The folder shows the best of these over its tracks: a folder
   * image before a parent's before an embedded one, then the first source folder by path
   * (for embedded pictures: the first track by source path).
   */
  #updateCover(d: Dir): void {
    if (!d.prunable || d.view > YEARS || this.#nodes.get(d.ino) !== d) return;
    let best: Cover | undefined;
    let bestRank = 3;
    let bestKey = "";
    let embedded: Track | undefined;
    let embeddedKey = "";
    // Tracks of one folder come together: look a folder up once, without building its key.
    let lastOrigin = -1;
    let lastDir = "";
    const consider = (n: AnyNode) => {
      if (!(n instanceof Track)) return;
      const { originId, relPath, picture } = n.track;
      if (bestRank > 1 && picture) {
        const key = this.#source(originId, relPath);
        if (!embedded || compare(key, embeddedKey) < 0) {
          embedded = n;
          embeddedKey = key;
        }
      }
      const slash = relPath.lastIndexOf("/");
      if (
        originId === lastOrigin && slash === lastDir.length && relPath.startsWith(lastDir)
      ) return;
      lastOrigin = originId;
      lastDir = slash < 0 ? "" : relPath.slice(0, slash);
      let rank = 0;
      let c = this.#covers.get(sourceDirKey(originId, lastDir));
      if (!c && slash > 0) {
        const up = lastDir.lastIndexOf("/");
        if (DISC_FOLDER.test(lastDir.slice(up + 1))) {
          c = this.#covers.get(sourceDirKey(originId, up < 0 ? "" : lastDir.slice(0, up)));
          rank = 1;
        }
      }
      if (!c) return;
      if (rank < bestRank || (rank === bestRank && compare(c.folder, bestKey) < 0)) {
        best = c;
        bestRank = rank;
        bestKey = c.folder;
      }
    };
    for (const n of d.entries.values()) consider(n);
    for (const n of d.pending ?? []) consider(n);
    if (!best && embedded) best = this.#embeddedCover(embedded);
    if (best === d.cover) return;
    if (d.cover) this.#remove(d, d.cover);
    if (best) this.#insert(d, best);
    d.cover = best;
  }

  /** A stored name of `t` in directory `dir` changes (null: no row needed any more). */
  #setRow(t: Track, dir: number, name: string | null): void {
    const cur = t.assigned?.get(dir);
    if (name === null ? cur === undefined : cur === name) return;
    if (name === null) {
      t.assigned!.delete(dir);
      if (t.assigned!.size === 0) t.assigned = undefined;
    } else (t.assigned ??= new Map()).set(dir, name);
    this.#rowLog.set(`${t.track.id}:${dir}`, { fileId: t.track.id, dir, name });
  }

  /**
   * Give the waiting files of `d` their names. Files already there keep theirs (only a new
   * build treats every file as new). A track with a stored name gets it back when it still
   * fits; the rest, first by wanted name then by source path, take their wanted name when
   * free, else the first free ` (n)` suffix (skipping names others want).
   */
  #resolve(d: Dir): void {
    const pending = d.pending ?? [];
    d.pending = undefined;
    // Entries placed in this batch compete with the waiting ones as equals: only names held
    // before the batch are kept (the batch's log says what a name held before it).
    const allNew = this.#building || this.#fresh.has(d);
    for (const [name, n] of d.entries) {
      if (n instanceof Dir) continue;
      if (!allNew) {
        const r = this.#log?.get(`${d.ino}/${name}`);
        if (r === undefined || r.old === n.ino) continue;
      }
      this.#touch(d, name);
      d.entries.delete(name);
      pending.push(n);
    }
    const wanted = new Set<string>();
    for (const [name, n] of d.entries) {
      if (!(n instanceof Dir)) wanted.add(this.#baseOf(d, n));
      else wanted.add(name);
    }
    const claims = pending.map((n) => {
      const base = this.#baseOf(d, n);
      wanted.add(base);
      const ext = this.#extOf(n);
      let kept = n instanceof Track ? n.assigned?.get(d.ino) : undefined;
      if (kept !== undefined && kept !== base && !isSuffixed(kept, base, ext)) kept = undefined;
      // A file re-placed in this batch (re-read, or its album renamed) that held its plain
      // name before keeps it against newcomers, stored row or not.
      if (kept === undefined && this.#log?.get(`${d.ino}/${base}`)?.old === n.ino) kept = base;
      return { n, base, ext, kept, src: this.#nodeSource(n) };
    });
    claims.sort((a, b) =>
      (a.kept === undefined ? 1 : 0) - (b.kept === undefined ? 1 : 0) ||
      compare(a.base, b.base) || compare(a.src, b.src) || a.n.ino - b.n.ino
    );
    for (const c of claims) {
      let name: string;
      if (c.kept !== undefined && !d.entries.has(c.kept)) name = c.kept;
      else if (!d.entries.has(c.base)) name = c.base;
      else {
        let k = 2;
        do name = withCollisionSuffix(c.base, c.ext, k++); while (
          d.entries.has(name) || wanted.has(name)
        );
      }
      this.#touch(d, name);
      d.entries.set(name, c.n);
    }
    d.sorted = undefined;
    this.#rowsDirty.add(d);
  }

  #extOf(n: FileNode): string {
    return n instanceof Track
      ? n.track.ext
      : n instanceof Cover
      ? n.cover.ext
      : n instanceof Symlink
      ? n.ext
      : n.ext;
  }

  /** Recount `d`'s renamed entries and the stored names its tracks need. */
  #settleRows(d: Dir): void {
    const bases = new Map<string, number>();
    for (const [name, n] of d.entries) bump(bases, n instanceof Dir ? name : this.#baseOf(d, n), 1);
    const collisions: { name: string; wanted: string; node: FileNode }[] = [];
    const live = this.#nodes.get(d.ino) === d;
    for (const [name, n] of d.entries) {
      if (n instanceof Dir) continue;
      const base = this.#baseOf(d, n);
      if (name !== base) collisions.push({ name, wanted: base, node: n });
      if (!(n instanceof Track) || d.view > YEARS) continue;
      const need = live && (name !== base || bases.get(base)! > 1);
      this.#setRow(n, d.ino, need ? name : null);
    }
    if (d.collisions || collisions.length) this.#problemsVersion++;
    d.collisions = collisions.length ? collisions : undefined;
    if (d.collisions) this.#collided.add(d);
    else this.#collided.delete(d);
  }

  /** Settle covers and names, then drop directories left empty. */
  #finish(): void {
    for (const d of this.#coverDirty) this.#updateCover(d);
    this.#coverDirty.clear();
    for (const d of this.#resolveDirty) this.#resolve(d);
    this.#resolveDirty.clear();
    const work = [...this.#pruneCheck];
    this.#pruneCheck.clear();
    while (work.length) {
      const d = work.pop()!;
      if (!d.prunable || d.entries.size > 0 || this.#nodes.get(d.ino) !== d) continue;
      const p = d.parent!;
      this.#touch(p, d.name);
      p.entries.delete(d.name);
      p.subdirs--;
      p.sorted = undefined;
      this.#nodes.delete(d.ino);
      d.dead = true;
      this.#dirCount--;
      this.#rowsDirty.add(d);
      work.push(p);
    }
    for (const d of this.#rowsDirty) this.#settleRows(d);
    this.#rowsDirty.clear();
  }

  /** Show a playlist (new or changed) in /Playlists. */
  #setPlaylist(p: Playlist): void {
    const key = sourceDirKey(p.originId, p.relPath);
    const had = this.#playlists.get(key);
    if (had) {
      had.rec = p;
      had.cache = undefined;
      had.node.acc = undefined;
      had.node.accOf = undefined;
      return;
    }
    const base = p.relPath.slice(p.relPath.lastIndexOf("/") + 1).replace(/\.m3u8?$/i, "");
    const entry: PlaylistEntry = {
      rec: p,
      cache: undefined,
      node: undefined!,
    };
    entry.node = new Generated(
      this.#hashIno(`p${p.originId}\0${p.relPath}`),
      sanitizeName(base, "m3u8"),
      () => this.#playlistBytes(entry),
      "m3u8",
      this.#source(p.originId, p.relPath),
    );
    entry.node.links = 0;
    this.#playlists.set(key, entry);
    this.#nodes.set(entry.node.ino, entry.node);
    this.#insert(this.#playlistDir, entry.node);
  }

  /** Map every playlist entry to its track (one pass over the tracks). */
  #indexPlaylists(): void {
    const index = new Map<string, Track | undefined>();
    for (const e of this.#playlists.values()) {
      for (const p of e.rec.entries) index.set(p, undefined);
    }
    if (index.size) {
      for (const t of this.#tracks.values()) {
        const src = this.#source(t.track.originId, t.track.relPath);
        if (index.has(src)) index.set(src, t);
      }
    }
    this.#plIndex = index;
    this.#problemsVersion++;
  }

  #unindex(t: Track): void {
    const src = this.#source(t.track.originId, t.track.relPath);
    if (this.#plIndex.get(src) === t) {
      this.#plIndex.set(src, undefined);
      this.#problemsVersion++;
    }
  }

  /** `#EXTM3U`, then for each entry found: `#EXTINF` and its path relative to /Playlists. */
  #playlistBytes(e: PlaylistEntry): Uint8Array {
    if (e.cache?.version === this.#placeVersion) return e.cache.bytes;
    const lines = ["#EXTM3U"];
    for (const p of e.rec.entries) {
      const t = this.#plIndex.get(p);
      if (!t || !t.parents.length) continue;
      const r = t.track;
      const secs = r.duration === undefined ? -1 : Math.round(r.duration);
      lines.push(`#EXTINF:${secs},${artistName(r)} - ${titleName(r)}`.replace(/[\r\n]/g, " "));
      lines.push(`..${this.#filePath(t.parents[ARTISTS], t)}`);
    }
    const bytes = encoder.encode(lines.join("\n") + "\n");
    e.cache = { version: this.#placeVersion, bytes };
    return bytes;
  }

  /** Playlist entries that point at nothing in the library. */
  #missingEntries(): { playlist: string; entry: string }[] {
    const out: { playlist: string; entry: string }[] = [];
    for (const e of this.#playlists.values()) {
      for (const p of e.rec.entries) {
        if (!this.#plIndex.get(p)) out.push({ playlist: e.node.sourcePath, entry: p });
      }
    }
    return out.sort((a, b) => compare(a.playlist, b.playlist));
  }

  #problemsBytes(): Uint8Array {
    if (this.#problemsText?.version === this.#problemsVersion) return this.#problemsText.bytes;
    const problems = this.#problems
      .map((p) => ({ path: this.#source(p.originId, p.relPath), reason: p.reason }))
      .sort((a, b) => compare(a.path, b.path));
    const collisions = this.collisions();
    const missing = this.#missingEntries();
    const lines = [
      `# musicfs problems: ${problems.length} unreadable file(s), ${collisions.length} renamed entr${
        collisions.length === 1 ? "y" : "ies"
      }, ${missing.length} playlist entr${missing.length === 1 ? "y" : "ies"} not found`,
    ];
    // One line per entry whatever the names hold (a name with a newline would forge lines).
    const e = escapeControl;
    for (const p of problems) lines.push(`unreadable: ${e(p.path)}: ${e(p.reason)}`);
    for (const c of collisions) {
      // A name whose first holder went away stays with its source (names stay put).
      const why = this.lookup(this.#dirIno(c.path), c.wanted) ? "name taken" : "name was taken";
      lines.push(
        `renamed: ${e(c.path)} (${why}: ${e(c.wanted)}; source: ${e(c.sourcePath)})`,
      );
    }
    for (const m of missing) {
      lines.push(`playlist entry not found: ${e(m.playlist)}: ${e(m.entry)}`);
    }
    const bytes = encoder.encode(lines.join("\n") + "\n");
    this.#problemsText = { version: this.#problemsVersion, bytes };
    return bytes;
  }
}
