/**
 * The state the tree's rooms share: the live nodes by inode, the tracks, the origins, the
 * fixed directories, and the rooms themselves (inode numbering, directory upkeep, views,
 * covers, playlists, /.search, generated files, attributes). {@link VirtualTree} is the
 * public face over it.
 *
 * @module
 */
import type { Origin } from "../library/types.ts";
import { TreeAccess } from "./attrs.ts";
import { Covers } from "./covers.ts";
import { GeneratedFiles } from "./generated.ts";
import { INO, InodeTable, TRACK_INO_BASE } from "./inodes.ts";
import { DirJournal } from "./journal.ts";
import type { Layout } from "./layout.ts";
import type { TreeOptions } from "./tree.ts";
import {
  ALBUMS,
  type AnyNode,
  ARTISTS,
  Cover,
  Dir,
  type FileNode,
  Generated,
  GENRES,
  type Node,
  OTHER,
  Symlink,
  Track,
  YEARS,
} from "./nodes.ts";
import { Playlists } from "./playlists.ts";
import { RowLog } from "./rows.ts";
import { SearchDirs } from "./search_dirs.ts";
import { Views } from "./views.ts";

const TRAILING = /\/+$/;

/** Permissions mode of a tree (see {@link TreeOptions.permissions}). */
export type TreePermissions = NonNullable<TreeOptions["permissions"]>;

/** The shared state of one virtual tree. */
export class TreeCore {
  /** Library roots by origin id, without a trailing slash. */
  readonly origins = new Map<number, string>();
  /** Every live node but the tracks with id-derived inodes, which {@link tracks} finds. */
  readonly nodes = new Map<number, AnyNode>();
  /** Every track by its database id. */
  readonly tracks = new Map<number, Track>();
  /** Permissions mode; undefined: all is the owner's. */
  readonly perms: TreePermissions | undefined;
  /** While the constructor builds: every name is settled afresh. */
  building = true;
  /** Directories in the tree, the fixed ones included. */
  dirCount = 0;
  /** Bumped whenever problems.txt may read differently. */
  problemsVersion = 0;
  /** Bumped whenever a track's place changes: playlists render again. */
  placeVersion = 0;
  /** The time of the batch in progress. */
  now = Date.now();

  /** `/`. */
  readonly root: Dir;
  /** /Artists, /Albums, /Genres, /Years, by view ({@link ARTISTS} ...). */
  readonly viewDirs: Dir[];
  /** /.search. */
  readonly searchDir: Dir;
  /** /Playlists. */
  readonly playlistDir: Dir;

  /** Inode numbering. */
  readonly inodes = new InodeTable();
  /** Directory upkeep and the batch journal. */
  readonly dirs: DirJournal;
  /** The four tag views. */
  readonly views: Views;
  /** Album covers. */
  readonly covers: Covers;
  /** /Playlists. */
  readonly playlists: Playlists;
  /** /.search query directories. */
  readonly search: SearchDirs;
  /** /.musicfs/status.json and problems.txt. */
  readonly files: GeneratedFiles;
  /** Attributes and access. */
  readonly access: TreeAccess;
  /** The entries changed since the rows were last stored. */
  readonly rows: RowLog;

  /** The fixed directories and files, and the rooms; the tree's content comes later. */
  constructor(
    readonly uid: number,
    readonly gid: number,
    origins: Iterable<Origin>,
    layout: Layout | string | undefined,
    perms: TreePermissions | undefined,
    status: () => string,
  ) {
    for (const o of origins) this.origins.set(o.id, o.path.replace(TRAILING, ""));
    this.perms = perms;
    this.dirs = new DirJournal(this);
    this.views = new Views(this, layout);
    this.covers = new Covers(this);
    this.playlists = new Playlists(this);
    this.search = new SearchDirs(this);
    this.files = new GeneratedFiles(this, status);
    this.access = new TreeAccess(this);
    this.rows = new RowLog(this);

    const fixed = (ino: number, name: string, parent: Dir | null, view: number) => {
      const d = new Dir(ino, name, parent, view, this.now, false);
      this.nodes.set(ino, d);
      if (parent) {
        parent.entries.set(name, d);
        parent.subdirs++;
      }
      this.dirCount++;
      return d;
    };
    this.root = fixed(INO.root, "", null, OTHER);
    this.viewDirs = [
      fixed(INO.artists, "Artists", this.root, ARTISTS),
      fixed(INO.albums, "Albums", this.root, ALBUMS),
      fixed(INO.genres, "Genres", this.root, GENRES),
      fixed(INO.years, "Years", this.root, YEARS),
    ];
    this.searchDir = fixed(INO.search, ".search", this.root, OTHER);
    const musicfs = fixed(INO.musicfs, ".musicfs", this.root, OTHER);
    for (
      const g of [
        new Generated(INO.status, "status.json", () => this.files.statusBytes()),
        new Generated(INO.problems, "problems.txt", () => this.files.bytes()),
      ]
    ) {
      musicfs.entries.set(g.name, g);
      this.nodes.set(g.ino, g);
    }
    this.playlistDir = fixed(INO.playlists, "Playlists", this.root, OTHER);
  }

  /** The live node of `ino`. */
  node(ino: number): AnyNode | undefined {
    return ino >= TRACK_INO_BASE ? this.tracks.get(ino - TRACK_INO_BASE) : this.nodes.get(ino);
  }

  /** The node called `name` in directory `parent`; undefined when there is none. */
  lookup(parent: number, name: string): Node | undefined {
    const d = this.node(parent);
    return d instanceof Dir ? d.entries.get(name) : undefined;
  }

  /** Absolute source path of `relPath` in origin `originId`. */
  source(originId: number, relPath: string): string {
    return `${this.origins.get(originId) ?? `<origin ${originId}>`}/${relPath}`;
  }

  /** Absolute source path behind a file node. */
  nodeSource(n: FileNode): string {
    if (n instanceof Track) return this.source(n.track.originId, n.track.relPath);
    return n.sourcePath;
  }

  /** Virtual path of a directory (`""` for the root). */
  dirPath(d: Dir): string {
    let p = "";
    for (let x: Dir | null = d; x && x.parent; x = x.parent) p = `/${x.name}${p}`;
    return p;
  }

  /** Virtual path of `n` in directory `d`. */
  filePath(d: Dir, n: FileNode): string {
    return `${this.dirPath(d)}/${this.nameIn(d, n)}`;
  }

  /** The name `n` has in `d` (its wanted name when it is not there). */
  nameIn(d: Dir, n: FileNode): string {
    const base = this.baseOf(d, n);
    if (d.entries.get(base) === n) return base;
    for (const [name, e] of d.entries) if (e === n) return name;
    return base;
  }

  /** The name `n` wants in `d`, before any collision suffix. */
  baseOf(d: Dir, n: FileNode): string {
    if (n instanceof Track) return d.view === ARTISTS ? n.aname ?? n.name : n.name;
    if (n instanceof Generated) return n.name;
    return n.base;
  }

  /** The extension a collision suffix goes before. */
  extOf(n: FileNode): string {
    return n instanceof Track
      ? n.track.ext
      : n instanceof Cover
      ? n.cover.ext
      : n instanceof Symlink
      ? n.ext
      : n.ext;
  }
}
