/**
 * The in-memory virtual tree of SPEC.md section 2, built from the library's track records and
 * kept up to date by {@link VirtualTree.apply}, which also says which kernel caches to drop.
 *
 * ```
 * /Artists/<layout>                      (default: <AlbumArtist>/<Album>[ (<Year>)]/<file>)
 * /Albums/<Album>[ (<Year>)] - <AlbumArtist>/<file>
 * /Genres/<Genre>/<AlbumArtist>/<Album>[ (<Year>)]/<file>
 * /Years/<Year>/<AlbumArtist> - <Album>/<file>
 * /.search/<query>/<Artist> - <Title>.<ext>   symlinks (see setSearchResults)
 * /.musicfs/status.json, /.musicfs/problems.txt
 * ```
 * `<file>` is `[D-]NN - Title.<ext>`; album folders also hold `cover.<ext>` when the source
 * folder of one of their tracks has a cover (that of the first folder by path when several do).
 *
 * Inode numbers (stable across restarts for the same library, never reused for another object
 * during a mount):
 * - 1..9: the root, its six directories, status.json and problems.txt ({@link INO});
 * - a track file: 2^52 + its database id. A track is one object under four names (like a
 *   hard link; nlink counts them), so the kernel caches its pages once for every view;
 * - directories, covers and /.search symlinks: a 52-bit hash (cyrb53, truncated) of a key
 *   naming the object: `d` + the virtual path for a directory, `c` + origin id + source path
 *   for a cover, `s` + query + track id for a symlink. Every number handed out is remembered
 *   with its key for the life of the tree; when a hash is already held by another key, the
 *   key is rehashed with a counter until a free number turns up (and a warning is logged).
 *   Only such a probe, astronomically rare, can make a number depend on build order. The hash
 *   function is part of the on-disk contract: changing it changes every directory inode.
 *
 * Directories whose subtree holds no file disappear. A directory name is shared by everything
 * that lands there (two albums whose names sanitise alike merge); a file that wants the name
 * of a directory or of another file gets a collision suffix (see naming.ts).
 *
 * @module
 */
import type { Attr } from "../fuse/ops.ts";
import { S_IFDIR, S_IFLNK, S_IFREG } from "../fuse/ops.ts";
import type { Origin, Problem, TrackRecord } from "../library/types.ts";
import { logger } from "../log/mod.ts";
import { escapeControl } from "./escape.ts";
import { DEFAULT_LAYOUT, type Layout, parseLayout, renderLayout } from "./layout.ts";
import {
  type Access,
  AccessTally,
  fileAccess,
  PRIVATE_DIR_MODE,
  SHARED_SEARCH_MODE,
} from "./access.ts";
import {
  albumArtistName,
  albumFolder,
  albumName,
  artistName,
  compare,
  discsOf,
  genreName,
  resolveCollisions,
  sanitizeName,
  titleName,
  trackFileName,
  UNKNOWN_YEAR,
  utf8Length,
  yearText,
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
  /** Size in bytes; when absent, the file is stat'ed once on first {@link VirtualTree.attr}. */
  size?: number;
  /** Modification time in ms since the epoch; stat'ed along with `size` when absent. */
  mtimeMs?: number;
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

/** `cover.<ext>`: serve the bytes of the source image. */
export interface CoverNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "cover";
  /** A hash of the origin and source path of the image: stable across restarts. */
  readonly ino: number;
  /** The source image served. */
  readonly cover: CoverImage;
}

/** A file whose content is made on demand ({@link VirtualTree.content}). */
export interface GeneratedNode {
  /** Discriminant of {@link Node}. */
  readonly kind: "generated";
  /** Fixed: {@link INO}`.status` or {@link INO}`.problems`. */
  readonly ino: number;
  /** `status.json` or `problems.txt`. */
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

/** What changed in the library. Records in `added` and `changed` are treated alike. */
export interface TreeChanges {
  /** Tracks new to the library. */
  added?: Iterable<TrackRecord>;
  /** Tracks whose tags, size or mtime changed (same id). */
  changed?: Iterable<TrackRecord>;
  /** Track ids. */
  removed?: Iterable<number>;
  /** New or replaced covers (one per source directory). */
  covers?: Iterable<CoverImage>;
  /** Source directories that no longer have a cover. */
  removedCovers?: Iterable<{ originId: number; dir: string }>;
  /** The full new problem list, when it changed. */
  problems?: Iterable<Problem>;
}

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
  /** Distinct (album artist, album, year) groups. */
  albums: number;
  /** Directories in the tree, the fixed ones included. */
  dirs: number;
  /** Source directories with a cover image. */
  covers: number;
  /** Entries of the library's problem list. */
  problems: number;
  /** Names that got a collision suffix. */
  collisions: number;
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

class Album {
  readonly tracks = new Set<Track>();
  discs = 1;
  constructor(
    readonly key: string,
    /** Sanitised names, shared by every track of the album. */
    readonly artistDir: string,
    readonly albumDir: string,
    readonly albumsDir: string,
    readonly yearDir: string,
    readonly yearsAlbumDir: string,
  ) {}
  /** The album's folder in each view, remembered to skip walking the path for every track. */
  readonly leaves: (Dir | undefined)[] = [undefined, undefined, undefined, undefined];
  /** The genre (unsanitised) of `leaves[GENRES]`. */
  leafGenre = "";
}

class Track implements TrackNode {
  readonly kind = "track";
  links = 0;
  /** File name in /Albums, /Genres, /Years. */
  name = "";
  /** File name in /Artists when the layout makes it differ from {@link name}. */
  aname: string | undefined = undefined;
  multi = false;
  parents: Dir[] = [];
  album!: Album;
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
  constructor(readonly ino: number, readonly name: string, readonly make: () => Uint8Array) {}
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
  readonly #unknown = new Set<Track | Cover>();
  /** One tally per depth of the directory walk (see #accessOf). */
  readonly #tallies: AccessTally[] = [];

  readonly #root: Dir;
  readonly #views: Dir[];
  readonly #search: Dir;

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

    for (const rec of opts.tracks ?? []) {
      let t = this.#tracks.get(rec.id);
      if (t) {
        // The same id twice: the later record wins.
        t.album.tracks.delete(t);
        t.track = rec;
      } else {
        t = new Track(this.#trackIno(rec.id), rec);
        this.#tracks.set(rec.id, t);
        if (t.ino < TRACK_INO_BASE) this.#nodes.set(t.ino, t);
      }
      this.#joinAlbum(t, null);
    }
    for (const t of this.#tracks.values()) this.#place(t);
    for (const c of opts.covers ?? []) {
      const key = sourceDirKey(c.originId, normDir(c.dir));
      const had = this.#covers.get(key);
      // Several images in one folder: the first by path wins, whatever the input order.
      if (!had || compare(c.relPath, had.cover.relPath) < 0) this.#setCover(c);
    }
    this.#finish();
    // Settle every folder's access now, before the mount serves: later changes cost only
    // the folders they touch.
    if (this.#perms) {
      for (const t of this.#tracks.values()) this.#accessOf(t);
      this.#accessOf(this.#root);
    }
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
    // Generated files (inside the private /.musicfs), links to tracks gone: the daemon's.
    return { uid: this.uid, gid: this.gid, mode: 0o400 };
  }

  /**
   * `n`'s source access is not in its record: it shows as the daemon user's alone until
   * {@link resolveAccess} has stat'ed it (run by itself when `onAccessResolved` is given).
   */
  #toLearn(n: Track | Cover): void {
    n.acc = { uid: this.uid, gid: this.gid, mode: 0o400 };
    n.accOf = n instanceof Track ? n.track : n.cover;
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
      if (c.size === undefined) {
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
        size: n.cover.size!,
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
    };
  }

  // ---- updates -------------------------------------------------------------------------

  /**
   * Apply library changes; returns the kernel invalidations that make open shells see them.
   * Costs O(changed tracks + the albums and directories they touch), not O(library) (except
   * cover changes, which look through every track once).
   */
  apply(changes: TreeChanges): Invalidation[] {
    return this.#batch((inodes) => {
      const albums = new Set<Album>();
      const placing = new Set<Track>();
      for (const id of changes.removed ?? []) {
        const t = this.#tracks.get(id);
        if (!t) continue;
        this.#detach(t);
        this.#leaveAlbum(t, albums);
        this.#tracks.delete(id);
        this.#nodes.delete(t.ino);
        placing.delete(t);
      }
      const upserts = [...(changes.added ?? []), ...(changes.changed ?? [])];
      for (const rec of upserts) {
        let t = this.#tracks.get(rec.id);
        if (t) {
          this.#detach(t);
          this.#leaveAlbum(t, albums);
          t.track = rec;
          inodes.add(t.ino);
        } else {
          t = new Track(this.#trackIno(rec.id), rec);
          this.#tracks.set(rec.id, t);
          if (t.ino < TRACK_INO_BASE) this.#nodes.set(t.ino, t);
        }
        this.#joinAlbum(t, albums);
        placing.add(t);
      }
      for (const a of albums) {
        if (a.tracks.size === 0) {
          this.#albums.delete(a.key);
          continue;
        }
        let discs = 1;
        for (const t of a.tracks) discs = Math.max(discs, discsOf(t.track));
        a.discs = discs;
        // Gaining or losing a second disc renames every track of the album.
        for (const t of a.tracks) {
          if (!placing.has(t) && t.multi !== discs > 1) {
            this.#detach(t);
            placing.add(t);
          }
        }
      }
      for (const t of placing) this.#place(t);

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
          if (coverKeys.has(sourceDirKey(t.track.originId, dirOf(t.track.relPath)))) {
            for (const d of t.parents) this.#coverDirty.add(d);
          }
        }
      }
      if (changes.problems) {
        this.#problems = [...changes.problems];
        this.#problemsVersion++;
      }
    });
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
    if (n instanceof Generated) return "";
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

  #joinAlbum(t: Track, touched: Set<Album> | null): void {
    const rec = t.track;
    const artist = albumArtistName(rec);
    const album = albumName(rec);
    const year = yearText(rec);
    const key = `${artist}\0${album}\0${year ?? ""}`;
    let a = this.#albums.get(key);
    if (!a) {
      const folder = albumFolder(rec);
      a = new Album(
        key,
        sanitizeName(artist),
        sanitizeName(folder),
        sanitizeName(`${folder} - ${artist}`),
        year ?? UNKNOWN_YEAR,
        sanitizeName(`${artist} - ${album}`),
      );
      this.#albums.set(key, a);
    }
    a.tracks.add(t);
    a.discs = Math.max(a.discs, discsOf(rec));
    t.album = a;
    touched?.add(a);
  }

  #leaveAlbum(t: Track, touched: Set<Album>): void {
    t.album.tracks.delete(t);
    touched.add(t.album);
  }

  /** Put a track in its four directories, creating them as needed. */
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
      const segs = renderLayout(this.layout, rec, t.multi);
      const file = segs[segs.length - 1];
      t.aname = file === t.name ? undefined : file;
      d = this.#views[ARTISTS];
      for (let i = 0; i < segs.length - 1; i++) d = this.#subdir(d, segs[i]);
    }
    const artists = d;
    d = a.leaves[ALBUMS];
    if (!d || d.dead) d = a.leaves[ALBUMS] = this.#subdir(this.#views[ALBUMS], a.albumsDir);
    const albums = d;
    const genre = genreName(rec);
    d = a.leaves[GENRES];
    if (!d || d.dead || a.leafGenre !== genre) {
      d = this.#subdir(this.#views[GENRES], sanitizeName(genre));
      d = a.leaves[GENRES] = this.#subdir(this.#subdir(d, a.artistDir), a.albumDir);
      a.leafGenre = genre;
    }
    const genres = d;
    d = a.leaves[YEARS];
    if (!d || d.dead) {
      d = a.leaves[YEARS] = this.#subdir(
        this.#subdir(this.#views[YEARS], a.yearDir),
        a.yearsAlbumDir,
      );
    }
    // One exact-size array: growing it by push would reserve 17 slots per track.
    t.parents = [artists, albums, genres, d];
    for (const p of t.parents) this.#insert(p, t);
  }

  #detach(t: Track): void {
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
    if (!this.#resolveDirty.has(d) && !d.entries.has(base)) {
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
    if (d.entries.get(base) === n && !d.collisions) {
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
    // A sibling carrying a suffix may get the plain name back.
    this.#resolveDirty.add(d);
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

  /** Show the right cover in an album folder: that of its tracks' first source folder. */
  #updateCover(d: Dir): void {
    if (!d.prunable || d.view > YEARS || this.#nodes.get(d.ino) !== d) return;
    let best: Cover | undefined;
    // Tracks of one folder come together: look a folder up once, without building its key.
    let lastOrigin = -1;
    let lastDir = "";
    const consider = (n: AnyNode) => {
      if (!(n instanceof Track)) return;
      const { originId, relPath } = n.track;
      const slash = relPath.lastIndexOf("/");
      if (
        originId === lastOrigin && slash === lastDir.length && relPath.startsWith(lastDir)
      ) return;
      lastOrigin = originId;
      lastDir = slash < 0 ? "" : relPath.slice(0, slash);
      const c = this.#covers.get(sourceDirKey(originId, lastDir));
      if (c && (!best || compare(c.folder, best.folder) < 0)) best = c;
    };
    for (const n of d.entries.values()) consider(n);
    for (const n of d.pending ?? []) consider(n);
    if (best === d.cover) return;
    if (d.cover) this.#remove(d, d.cover);
    if (best) this.#insert(d, best);
    d.cover = best;
  }

  /** Give every file of `d` its final name (see resolveCollisions). */
  #resolve(d: Dir): void {
    const files: FileNode[] = [];
    const taken = new Set<string>();
    for (const [name, n] of d.entries) {
      if (n instanceof Dir) taken.add(name);
      else files.push(n);
    }
    if (d.pending) files.push(...d.pending);
    d.pending = undefined;
    const claims = files.map((n) => ({
      base: this.#baseOf(d, n),
      ext: n instanceof Track
        ? n.track.ext
        : n instanceof Cover
        ? n.cover.ext
        : n instanceof Symlink
        ? n.ext
        : "",
      sourcePath: this.#nodeSource(n),
      tiebreak: n.ino,
    }));
    const names = resolveCollisions(claims, taken);
    for (const [name, n] of d.entries) {
      if (n instanceof Dir) continue;
      this.#touch(d, name);
      d.entries.delete(name);
    }
    const collisions: { name: string; wanted: string; node: FileNode }[] = [];
    for (let i = 0; i < files.length; i++) {
      this.#touch(d, names[i]);
      d.entries.set(names[i], files[i]);
      if (names[i] !== claims[i].base) {
        collisions.push({ name: names[i], wanted: claims[i].base, node: files[i] });
      }
    }
    d.sorted = undefined;
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
      if (d.collisions) {
        this.#collided.delete(d);
        this.#problemsVersion++;
      }
      // A file renamed because this directory held its name can have it back.
      if (p.collisions) this.#resolve(p);
      work.push(p);
    }
  }

  #problemsBytes(): Uint8Array {
    if (this.#problemsText?.version === this.#problemsVersion) return this.#problemsText.bytes;
    const problems = this.#problems
      .map((p) => ({ path: this.#source(p.originId, p.relPath), reason: p.reason }))
      .sort((a, b) => compare(a.path, b.path));
    const collisions = this.collisions();
    const lines = [
      `# musicfs problems: ${problems.length} unreadable file(s), ${collisions.length} renamed entr${
        collisions.length === 1 ? "y" : "ies"
      }`,
    ];
    // One line per entry whatever the names hold (a name with a newline would forge lines).
    const e = escapeControl;
    for (const p of problems) lines.push(`unreadable: ${e(p.path)}: ${e(p.reason)}`);
    for (const c of collisions) {
      lines.push(
        `renamed: ${e(c.path)} (name taken: ${e(c.wanted)}; source: ${e(c.sourcePath)})`,
      );
    }
    const bytes = encoder.encode(lines.join("\n") + "\n");
    this.#problemsText = { version: this.#problemsVersion, bytes };
    return bytes;
  }
}
