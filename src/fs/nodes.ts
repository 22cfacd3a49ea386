/**
 * The objects of the virtual tree: the public node shapes that {@link VirtualTree} hands out,
 * and the classes behind them that the tree's rooms (directories, views, covers, playlists,
 * /.search, generated files) share.
 *
 * @module
 */
import type { Playlist, TrackRecord } from "../library/types.ts";
import type { CoverImage } from "../library/change.ts";
import type { Access } from "./access.ts";
import type { Album, Group } from "./grouping.ts";
import { sanitizeName } from "./naming.ts";

// Which view a directory belongs to: decides which of a track's names applies in it.
/** View of the directories under /Artists (a track's /Artists name may follow the layout). */
export const ARTISTS = 0;
/** View of the directories under /Albums. */
export const ALBUMS = 1;
/** View of the directories under /Genres. */
export const GENRES = 2;
/** View of the directories under /Years. */
export const YEARS = 3;
/** Any other directory (the root, /.search, /.musicfs, /Playlists). */
export const OTHER = 4;

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

/** A directory, with what the tree's upkeep needs to know about it. */
export class Dir implements DirNode {
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

/** A track: one object under a name in each of its directories. */
export class Track implements TrackNode {
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

/** A `cover.<ext>` image, shown in the album folders that pick it. */
export class Cover implements CoverNode {
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

/** A file made on demand: status.json, problems.txt, a playlist. */
export class Generated implements GeneratedNode {
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
export interface PlaylistEntry {
  rec: Playlist;
  node: Generated;
  cache: { version: number; bytes: Uint8Array } | undefined;
}

/** A /.search result link. */
export class Symlink implements SymlinkNode {
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

/** Anything but a directory. */
export type FileNode = Track | Cover | Generated | Symlink;
/** Any node class of the tree. */
export type AnyNode = Dir | FileNode;

/** The directory part of a relative path (`""` at the origin root). */
export function dirOf(relPath: string): string {
  const i = relPath.lastIndexOf("/");
  return i < 0 ? "" : relPath.slice(0, i);
}

/** A relative directory without `./` prefixes or slashes at either end. */
export function normDir(dir: string): string {
  let d = dir.replace(/^(\.\/)+/, "").replace(/^\/+|\/+$/g, "");
  if (d === ".") d = "";
  return d;
}

/** Key of a source directory or file (`<origin id>:<relative path>`). */
export function sourceDirKey(originId: number, dir: string): string {
  return `${originId}:${dir}`;
}
