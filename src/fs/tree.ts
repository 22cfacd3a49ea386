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
 * In library.db: the journal also records which entries of the views each batch changes
 * (rows.ts), so the daemon keeps the tree as rows there. A tree made with
 * {@link TreeOptions.stored} and no tracks serves the views from those rows (stored.ts) and
 * builds itself only when something needs it (a change, /Playlists, /.search); it can be
 * dropped again ({@link VirtualTree.unload}). Either way it answers the same.
 *
 * The tree is cut into rooms over one shared state ({@link TreeCore}, core.ts): inode
 * numbering (inodes.ts), directory upkeep and the journal that yields the invalidations
 * (journal.ts), the views (views.ts, grouping.ts; playlists.ts), covers (covers.ts), /.search
 * (search_dirs.ts), generated files (generated.ts), and attributes and access (attrs.ts, with
 * the policy in access.ts). {@link VirtualTree} is their public face.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { INO, VirtualTree } from "./tree.ts";
 *
 * const track = {
 *   id: 1, originId: 1, relPath: "Queen/News/01.flac", ext: "flac", size: 1, mtimeMs: 0,
 *   albumArtist: "Queen", album: "News of the World", title: "We Will Rock You", track: 1,
 * };
 * const origins = [{ id: 1, path: "/music" }];
 * const tree = new VirtualTree({ origins, tracks: [track], uid: 0, gid: 0 });
 * const artists = tree.lookup(INO.root, "Artists")!;
 * assert.deepEqual(tree.children(artists.ino)!.map((e) => e.name), ["Queen"]);
 * // A library change, as the scanner reports it: the kernel caches to drop come back.
 * const [album] = tree.children(tree.lookup(artists.ino, "Queen")!.ino)!;
 * assert.equal(album.name, "News of the World");
 * const inv = tree.apply({ removed: [track] });
 * assert.ok(inv.some((i) => i.kind === "delete" && i.name === "Queen"));
 * assert.deepEqual(tree.children(artists.ino), []);
 * ```
 *
 * @module
 */
import type { CoverImage, LibraryChange } from "../library/change.ts";
import type { Problem } from "../library/types.ts";
import type { Attr } from "../fuse/ops.ts";
import type { Origin, Playlist, TrackRecord } from "../library/types.ts";
import { logger } from "../log/mod.ts";
import type { Access } from "./access.ts";
import { TreeCore } from "./core.ts";
import { INO, TRACK_INO_BASE } from "./inodes.ts";
import type { Collision, Invalidation, NameRow, NameRowChange } from "./journal.ts";
import type { Layout } from "./layout.ts";
import {
  ARTISTS,
  type Cover,
  type CoverNode,
  Dir,
  type DirNode,
  type Generated,
  type GeneratedNode,
  type Node,
  Track,
  type TrackNode,
  type TreeEntry,
} from "./nodes.ts";
import { compare } from "./naming.ts";
import type { TreeRow } from "../library/tree_rows.ts";
import { RowCursor } from "./rows.ts";
import {
  dirAttr,
  StoredCover,
  StoredDir,
  type StoredNode,
  StoredTrack,
  StoredTree,
  type TreeRowSource,
} from "./stored.ts";

export { INO, TRACK_INO_BASE };
export type { Collision, CoverImage, Invalidation, NameRow, NameRowChange };
export type { TreeRowSource } from "./stored.ts";
export type {
  CoverNode,
  DirNode,
  GeneratedNode,
  Node,
  SymlinkNode,
  TrackNode,
  TreeEntry,
} from "./nodes.ts";

const log = logger("fs", "tree");

/** How long {@link VirtualTree.load} builds before it lets requests in. */
const LOAD_SLICE_MS = 8;

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

/** How a tree serves library.db's rows until it is built (see {@link TreeOptions.stored}). */
export interface StoredTreeOptions {
  /** The rows. */
  source: TreeRowSource;
  /** The tree's counts when the rows were stored (status.json meanwhile). */
  stats: TreeStats;
  /**
   * The library generation the rows picture: a build from the same generation needs no check
   * against them (see {@link VirtualTree.load}).
   */
  generation?: number;
  /**
   * What to build the tree from when it is needed ({@link VirtualTree.ensureLoaded}): read
   * at once, with the library generation it reflects. Without it, only
   * {@link VirtualTree.load} builds, and the tree can not be dropped again.
   */
  content?: () => Pick<TreeOptions, "tracks" | "covers" | "playlists" | "names" | "problems"> & {
    generation: number;
  };
  /** Called after a build on demand with the invalidations of the build and the queued changes. */
  onLoaded?: (
    r: { invalidations: Invalidation[]; differences: number; generation: number },
  ) => void;
}

/** The counts of an empty tree. */
export const EMPTY_TREE_STATS: Readonly<TreeStats> = Object.freeze({
  tracks: 0,
  albums: 0,
  dirs: 0,
  covers: 0,
  problems: 0,
  collisions: 0,
  playlists: 0,
  missingPlaylistEntries: 0,
});

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
  /** The /Artists layout (`--layout`); default `DEFAULT_LAYOUT` (layout.ts). */
  layout?: Layout | string;
  /** Content of /.musicfs/status.json; default: {@link VirtualTree.stats} as JSON. */
  status?: () => string;
  /**
   * library.db's rows of the tree (stored.ts). Without `tracks`, the four views are served
   * from them until the tree is built ({@link VirtualTree.ensureLoaded},
   * {@link VirtualTree.load}); with `tracks`, the tree is built now and may be dropped for
   * them later ({@link VirtualTree.unload}). Not with `permissions` (folder access needs the
   * whole tree).
   */
  stored?: StoredTreeOptions;
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

/** The virtual tree; see the module documentation. */
export class VirtualTree {
  /** Owner of every node. */
  readonly uid: number;
  /** Owner group of every node. */
  readonly gid: number;
  /** The /Artists layout in use. */
  readonly layout: Layout;
  #c: TreeCore;
  readonly #makeCore: () => TreeCore;
  /** While the tree is not built: the views served from library.db's rows. */
  #stored: StoredTree | undefined;
  #storedStats: TreeStats | undefined;
  readonly #storedOpts: StoredTreeOptions | undefined;
  #loading: Promise<void> | undefined;
  #loaded!: () => void;
  #whenLoaded: Promise<void> = new Promise((r) => (this.#loaded = r));
  /** Changes that came while the tree was being built from a snapshot older than them. */
  #queued: { changes: Partial<LibraryChange>; problems?: Problem[] }[] = [];
  #snapshotTaken = false;
  #lastUse = 0;
  /** The generation library.db's rows picture (see StoredTreeOptions.generation). */
  #rowsGeneration: number | undefined;
  #recording = false;

  /** Build the tree of `opts.tracks`. Throws {@link LayoutError} for a bad layout string. */
  constructor(opts: TreeOptions) {
    this.uid = opts.uid;
    this.gid = opts.gid;
    this.#makeCore = () =>
      new TreeCore(
        opts.uid,
        opts.gid,
        opts.origins,
        opts.layout,
        opts.permissions,
        opts.status ?? (() => JSON.stringify(this.stats(), null, 2) + "\n"),
      );
    const c = this.#c = this.#makeCore();
    this.layout = c.views.layout;
    c.files.list = [...(opts.problems ?? [])];
    if (opts.stored && !c.perms) {
      this.#storedOpts = opts.stored;
      this.#rowsGeneration = opts.stored.generation;
      if (opts.tracks === undefined) {
        this.#serveRows(opts.stored.stats);
        return;
      }
    }
    this.#build(opts);
  }

  #serveRows(stats: TreeStats): void {
    const origins = this.#c.origins;
    this.#stored = new StoredTree(
      this.#storedOpts!.source,
      this.uid,
      this.gid,
      (id) => origins.get(id),
      this.#c.now,
    );
    this.#storedStats = stats;
  }

  #build(opts: Pick<TreeOptions, "tracks" | "covers" | "playlists" | "names">): void {
    for (const _ of this.#buildSteps(opts));
  }

  *#buildSteps(
    opts: Pick<TreeOptions, "tracks" | "covers" | "playlists" | "names">,
  ): Generator<void> {
    const started = performance.now();
    const c = this.#c;
    c.building = true;
    yield* c.views.buildSteps(opts.tracks ?? [], opts.names ?? []);
    c.covers.build(opts.covers ?? []);
    for (const p of opts.playlists ?? []) c.playlists.set(p);
    c.playlists.reindex();
    yield* c.dirs.finishSteps();
    // Settle every folder's access now, before the mount serves: later changes cost only
    // the folders they touch.
    if (c.perms) {
      for (const t of c.tracks.values()) c.access.accessOf(t);
      c.access.accessOf(c.root);
    }
    c.building = false;
    log.debug("Tree built: {tracks} tracks, {dirs} directories in {ms} ms", {
      tracks: c.tracks.size,
      dirs: c.dirCount,
      ms: Math.round(performance.now() - started),
    });
  }

  /** Whether the tree is built (else the views are served from library.db's rows). */
  get loaded(): boolean {
    return this.#stored === undefined;
  }

  /** Resolves once the tree is built (see {@link ensureLoaded}). */
  get whenLoaded(): Promise<void> {
    if (this.loaded) return Promise.resolve();
    return this.#whenLoaded;
  }

  /**
   * The tree built in memory, for what the rows cannot serve (/.search, /Playlists, changes):
   * a tree serving rows builds itself from {@link StoredTreeOptions.content} (in slices, the
   * rows serving meanwhile). Also marks the tree as in use (see {@link idleMs}).
   */
  ensureLoaded(): Promise<void> {
    this.#lastUse = performance.now();
    if (this.loaded) return Promise.resolve();
    if (!this.#loading) {
      this.#loading = this.#loadFromSource().finally(() => (this.#loading = undefined));
    }
    return this.#loading;
  }

  /** Milliseconds since the tree in memory was last needed (0 while serving rows). */
  get idleMs(): number {
    return this.loaded ? performance.now() - this.#lastUse : 0;
  }

  async #loadFromSource(): Promise<void> {
    const o = this.#storedOpts!;
    // Let the request that asked be answered by the rows first where it can.
    await new Promise((r) => setTimeout(r, 0));
    let result;
    try {
      // Changes committed before this read are in it; those queued after are applied next.
      const content = o.content!();
      this.#queued = [];
      this.#snapshotTaken = true;
      result = await this.load(content, content.generation !== this.#rowsGeneration);
      o.onLoaded?.({ ...result, generation: content.generation });
    } finally {
      this.#snapshotTaken = false;
      this.#queued = [];
    }
  }

  /**
   * Drop the tree in memory and serve library.db's rows again (they must be current: the
   * caller knows, see TreeRowsKeeper), picturing library generation `rowsGeneration`. Query
   * folders under /.search go with it.
   */
  unload(rowsGeneration?: number): void {
    if (!this.#storedOpts?.content || !this.loaded || this.#loading) return;
    this.#rowsGeneration = rowsGeneration;
    const stats = this.stats();
    const problems = this.#c.files.list;
    this.#c = this.#makeCore();
    this.#c.files.list = problems;
    this.#c.rows.on = this.#recording;
    this.#whenLoaded = new Promise((r) => (this.#loaded = r));
    this.#serveRows(stats);
    log.debug("Tree dropped from memory; serving library.db's rows");
  }

  /**
   * Build the tree of a tree made with `stored` (the rows stop being read), and, with `check`,
   * compare it with the rows the kernel was given meanwhile: the invalidations returned drop
   * what differs (and /Playlists, empty until now); `differences` counts the entries that did.
   * A build from the generation the rows picture needs no check.
   */
  async load(
    opts: Pick<TreeOptions, "tracks" | "covers" | "playlists" | "names" | "problems">,
    check = true,
  ): Promise<{ invalidations: Invalidation[]; differences: number }> {
    const stored = this.#stored;
    if (!stored) throw new Error("The tree is built already");
    if (opts.problems) this.#c.files.list = [...opts.problems];
    // The rows serve meanwhile: the build gives the loop back every few milliseconds.
    let slice = performance.now();
    for (const _ of this.#buildSteps(opts)) {
      if (performance.now() - slice < LOAD_SLICE_MS) continue;
      await new Promise((r) => setTimeout(r, 0));
      slice = performance.now();
    }
    this.#stored = undefined;
    this.#storedStats = undefined;
    this.#lastUse = performance.now();
    this.#loaded();
    const out: Invalidation[] = [{ kind: "inode", ino: INO.playlists }];
    // Changes that came during the build, in order, before anything else reaches the tree.
    const queued = this.#queued;
    this.#queued = [];
    this.#snapshotTaken = false;
    for (const q of queued) out.push(...this.apply(q.changes, q.problems));
    let differences = 0;
    if (!check) return { invalidations: out, differences };
    // The tree serves from here on; the check of what the kernel was given goes in slices.
    slice = performance.now();
    for (const ino of stored.served) {
      if (performance.now() - slice >= LOAD_SLICE_MS) {
        await new Promise((r) => setTimeout(r, 0));
        slice = performance.now();
      }
      const was = stored.names(ino);
      const d = this.#c.node(ino);
      const now = d instanceof Dir ? d.entries : new Map<string, { ino: number }>();
      let differs = false;
      for (const [name, child] of was) {
        if (now.get(name)?.ino !== child) {
          out.push({ kind: "entry", parent: ino, name });
          differs = true;
          differences++;
        }
      }
      for (const [name] of now) {
        if (!was.has(name)) {
          out.push({ kind: "entry", parent: ino, name });
          differs = true;
          differences++;
        }
      }
      if (differs) out.push({ kind: "inode", ino });
    }
    return { invalidations: out, differences };
  }

  #isStored(n: Node): n is StoredNode {
    return n instanceof StoredDir || n instanceof StoredTrack || n instanceof StoredCover;
  }

  /** Whether `ino`'s entries are served from the rows (a view's folder, or below). */
  #storedDir(ino: number): boolean {
    return (ino >= INO.artists && ino <= INO.years) || this.#c.node(ino) === undefined;
  }

  // ---- serving -------------------------------------------------------------------------

  /** The node of `ino`, if it exists now. */
  get(ino: number): Node | undefined {
    const n = this.#c.node(ino);
    if (n || !this.#stored) return n;
    return this.#stored.get(ino);
  }

  /** The node called `name` in directory `parent`; undefined when there is none. */
  lookup(parent: number, name: string): Node | undefined {
    if (this.#stored && this.#storedDir(parent)) return this.#stored.lookup(parent, name);
    return this.#c.lookup(parent, name);
  }

  /**
   * The entries of directory `ino` sorted by name (UTF-16 code unit order), without `.` and
   * `..`; undefined when `ino` is not a directory. Costs O(entries) (plus a sort of them when
   * the directory changed); the array must not be modified.
   */
  children(ino: number): readonly TreeEntry[] | undefined {
    if (this.#stored && this.#storedDir(ino)) {
      const n = this.get(ino);
      return n?.kind === "dir" ? this.#stored.children(ino) : undefined;
    }
    const d = this.#c.node(ino);
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
    const stored = this.#stored;
    if (stored) {
      if (this.#isStored(node)) return stored.attr(node);
      if (node.ino >= INO.artists && node.ino <= INO.years) {
        const row = stored.dirRow(INO.root, (node as DirNode).name);
        if (row) return dirAttr({ ino: node.ino, uid: this.uid, gid: this.gid }, row);
      }
    }
    return this.#c.access.attr(node);
  }

  /**
   * The owner, group and permission bits `node` is served with (see access.ts); a /.search
   * symlink answers those of the track it links to.
   */
  access(node: Node): Access {
    if (this.#stored && this.#isStored(node)) {
      const a = this.#stored.attr(node);
      return { uid: a.uid, gid: a.gid, mode: a.mode & 0o7777 };
    }
    return this.#c.access.access(node);
  }

  /**
   * Learn the access of the sources the records do not give (covers; tracks scanned before
   * schema 2) with async stats, a few at a time, so a stalled origin never blocks a request:
   * until then they show as the daemon user's alone. Resolves with the kernel invalidations
   * the answers cause. Call it after building the tree and after each {@link apply}; a no-op
   * without permissions mode.
   */
  resolveAccess(concurrency = 4): Promise<Invalidation[]> {
    return this.#c.access.resolveAccess(concurrency);
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
    return [...this.#c.origins.values()];
  }

  /** Absolute source path of a track or cover. */
  sourcePath(node: TrackNode | CoverNode): string {
    if (node instanceof StoredTrack || node instanceof StoredCover) {
      return this.#stored!.sourcePath(node);
    }
    if (node.kind === "cover") return (node as Cover).sourcePath;
    return this.#c.source(node.track.originId, node.track.relPath);
  }

  /**
   * The virtual path of a node, e.g. `/Albums/X - Y/01 - Z.flac`: for a track, its /Artists
   * path; for a cover or symlink, one of its places, found by a scan of the whole tree (for
   * diagnostics only). Undefined when the node is not in the tree.
   */
  pathOf(ino: number): string | undefined {
    const n = this.#c.node(ino);
    if (!n && this.#stored) return this.#storedPath(ino);
    if (!n) return undefined;
    if (n instanceof Dir) return n === this.#c.root ? "/" : this.#c.dirPath(n);
    if (n instanceof Track) {
      return n.parents.length ? this.#c.filePath(n.parents[ARTISTS], n) : undefined;
    }
    for (const d of this.#c.nodes.values()) {
      if (d instanceof Dir) {
        for (const [name, e] of d.entries) if (e === n) return `${this.#c.dirPath(d)}/${name}`;
      }
    }
    return undefined;
  }

  #storedPath(ino: number): string | undefined {
    let p = "";
    let row: TreeRow | undefined;
    for (let at = ino, hops = 0; at !== INO.root; at = row.parent, hops++) {
      row = this.#stored!.src.treeEntryOf(at);
      if (!row || hops > 64) return undefined;
      p = `/${row.name}${p}`;
    }
    return p;
  }

  /** Names that were given a collision suffix, by virtual path. */
  collisions(): Collision[] {
    return this.#c.dirs.collisions();
  }

  /** The unreadable files currently listed in problems.txt. */
  problems(): readonly Problem[] {
    return this.#c.files.list;
  }

  /** Counts of what the tree holds. */
  stats(): TreeStats {
    if (this.#storedStats) {
      return { ...this.#storedStats, problems: this.#c.files.list.length };
    }
    let collisions = 0;
    for (const d of this.#c.dirs.collided) collisions += d.collisions?.length ?? 0;
    return {
      tracks: this.#c.tracks.size,
      albums: this.#c.views.albums.size,
      dirs: this.#c.dirCount,
      covers: this.#c.covers.byDir.size,
      problems: this.#c.files.list.length,
      collisions,
      playlists: this.#c.playlists.byKey.size,
      missingPlaylistEntries: this.#c.playlists.missingEntries().length,
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
    if (this.#stored) {
      if (!this.#storedOpts?.content) {
        throw new Error("Cannot apply a change before the tree is built");
      }
      // Built on demand: the change waits for the build (see ensureLoaded), which returns
      // its invalidations through onLoaded.
      log.debug(
        "A library change while library.db's rows are served ({a} added, {c} changed, " +
          "{r} removed, problems {p}): building the tree",
        {
          a: changes.added?.length ?? 0,
          c: changes.changed?.length ?? 0,
          r: changes.removed?.length ?? 0,
          p: Boolean(problems),
        },
      );
      if (this.#snapshotTaken) {
        this.#queued.push({ changes, problems: problems && [...problems] });
      }
      void this.ensureLoaded().catch((e) => {
        log.error("Cannot build the tree: {error}", { error: String(e) });
      });
      return [];
    }
    this.#lastUse = performance.now();
    const c = this.#c;
    return c.dirs.batch((inodes) => {
      const placed = c.views.apply(changes, inodes);
      c.covers.apply(changes, inodes);
      c.playlists.apply(changes, inodes, placed);
      if (problems) {
        c.files.list = [...problems];
        c.problemsVersion++;
      }
    });
  }

  /**
   * Stored-name changes since the last call (the tree's part of library.db's `names` table):
   * a row for every track whose name in a directory carries a suffix or is wanted by another
   * entry there, so the next start gives every track the name it has now.
   */
  takeNameChanges(): NameRowChange[] {
    return this.#c.dirs.takeNameChanges();
  }

  /** Every stored-name row the tree holds now (what library.db's `names` should contain). */
  nameRows(): NameRow[] {
    return this.#c.dirs.nameRows();
  }

  /**
   * Record which entries of the views each {@link apply} changes, for {@link takeRows}
   * (library.db's `tree_entries`); off by default.
   */
  recordRows(on: boolean): void {
    this.#recording = on;
    this.#c.rows.on = on;
    if (!on) this.#c.rows.clear();
  }

  /** The rows changed since the last call (see {@link recordRows}). */
  takeRows(): {
    upserts: TreeRow[];
    deletes: [number, string][];
    attrs: [number, number | null, number | null, number][];
  } {
    return this.#c.rows.take();
  }

  /** Every row of the four views (tests; do not apply changes meanwhile). */
  allRows(): Generator<TreeRow> {
    return this.#c.rows.all();
  }

  /** Every row of the four views, part by part (a full dump; no changes between parts). */
  rowCursor(): RowCursor {
    return new RowCursor(this.#c);
  }

  /** Record the size of an embedded cover once its picture was extracted (until then: 0). */
  setCoverSize(node: CoverNode, size: number): void {
    if (node instanceof StoredCover) {
      node.cover = { ...node.cover, size };
      return;
    }
    this.#c.covers.setCoverSize(node, size);
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
    if (this.#stored) throw new Error("Cannot fill /.search before the tree is built");
    this.#lastUse = performance.now();
    return this.#c.search.setSearchResults(query, trackIds);
  }

  /** Remove `/.search/<query>` and its links. */
  removeSearch(query: string): Invalidation[] {
    return this.#c.search.removeSearch(query);
  }
}
