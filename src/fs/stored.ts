/**
 * Serving the four views from library.db's rows (rows.ts wrote them) while the tree in memory
 * is being rebuilt: a restarted daemon answers at once, with no O(library) work before the
 * mount serves. Lookups and listings are indexed queries (`tree_entries` by parent and name,
 * by inode); a bounded cache keeps the nodes and listings handed out lately.
 *
 * The rows are served only when their stamp says they picture the library as it is (same
 * generation, layout and libraries); the daemon checks that. What the rows do not hold
 * (/.search, the playlists' content, collisions in problems.txt) waits for the tree.
 *
 * @module
 */
import type { TreeRow } from "../library/tree_rows.ts";
import { TreeRowKind } from "../library/tree_rows.ts";
import type { CoverImage } from "../library/change.ts";
import type { TrackRecord } from "../library/types.ts";
import type { Attr } from "../fuse/ops.ts";
import { S_IFDIR, S_IFREG } from "../fuse/ops.ts";
import type { CoverNode, DirNode, TrackNode, TreeEntry } from "./nodes.ts";
import { compare } from "./naming.ts";
import { TRACK_INO_BASE } from "./inodes.ts";
import { coverAttr } from "./attrs.ts";

/** What the stored tree reads (library.db's {@link Database} has these). */
export interface TreeRowSource {
  /** The stored entry `name` of directory `parent`. */
  treeEntry(parent: number, name: string): TreeRow | undefined;
  /** The stored entries of directory `parent`, in any order. */
  treeChildren(parent: number): TreeRow[];
  /** A stored entry of inode `ino`. */
  treeEntryOf(ino: number): TreeRow | undefined;
  /** The record of track `id`. */
  getTrack(id: number): TrackRecord | undefined;
}

/** A directory served from its row. */
export class StoredDir implements DirNode {
  readonly kind = "dir";
  constructor(readonly ino: number, readonly name: string, readonly row: TreeRow) {}
}

/** A track served from its row (its record is read when asked for: an open, a source path). */
export class StoredTrack implements TrackNode {
  readonly kind = "track";
  #track: TrackRecord | undefined;
  constructor(
    readonly ino: number,
    readonly row: TreeRow,
    readonly read: (id: number) => TrackRecord | undefined,
  ) {}
  /** The library record (a track removed since the rows were stored: a stand-in of the row). */
  get track(): TrackRecord {
    this.#track ??= this.read(this.row.ref) ?? {
      id: this.row.ref,
      originId: -1,
      relPath: "",
      ext: "",
      size: this.row.size ?? 0,
      mtimeMs: this.row.mtimeMs ?? 0,
    };
    return this.#track;
  }
}

/** A cover served from its row. */
export class StoredCover implements CoverNode {
  readonly kind = "cover";
  constructor(
    readonly ino: number,
    public cover: CoverImage,
    readonly embedded: boolean,
    readonly links: number,
  ) {}
}

/** A node of the stored tree. */
export type StoredNode = StoredDir | StoredTrack | StoredCover;

/** Nodes and listings kept: about 300 bytes a node, 100 an entry: some 5 MB at most. */
const NODES_KEPT = 10_000;
const ENTRIES_KEPT = 20_000;

/** The views served from rows. */
export class StoredTree {
  readonly #nodes = new Map<number, StoredNode>();
  readonly #lists = new Map<number, TreeEntry[]>();
  #listed = 0;
  /** Directories whose entries were handed to the kernel: checked when the tree is built. */
  readonly served = new Set<number>();

  constructor(
    readonly src: TreeRowSource,
    readonly uid: number,
    readonly gid: number,
    readonly originOf: (id: number) => string | undefined,
    readonly now: number,
  ) {}

  /** The node of `ino`, if a row names it. */
  get(ino: number): StoredNode | undefined {
    const kept = this.#nodes.get(ino);
    if (kept) return kept;
    const row = this.src.treeEntryOf(ino);
    return row && this.#node(row);
  }

  /** The entry `name` of directory `parent`. */
  lookup(parent: number, name: string): StoredNode | undefined {
    this.served.add(parent);
    const row = this.src.treeEntry(parent, name);
    return row && this.#node(row);
  }

  /** The entries of directory `ino`, sorted as the tree sorts them. */
  children(ino: number): readonly TreeEntry[] {
    this.served.add(ino);
    const kept = this.#lists.get(ino);
    if (kept) {
      // Most recently used last.
      this.#lists.delete(ino);
      this.#lists.set(ino, kept);
      return kept;
    }
    const out: TreeEntry[] = [];
    for (const row of this.src.treeChildren(ino)) {
      const node = this.#node(row);
      if (node) out.push({ name: row.name, node });
    }
    out.sort((a, b) => compare(a.name, b.name));
    this.#lists.set(ino, out);
    this.#listed += out.length;
    for (const [k, v] of this.#lists) {
      if (this.#listed <= ENTRIES_KEPT || k === ino) break;
      this.#lists.delete(k);
      this.#listed -= v.length;
    }
    return out;
  }

  /** The names and inodes stored in directory `ino` (for the check against the tree). */
  names(ino: number): Map<string, number> {
    return new Map(this.src.treeChildren(ino).map((r) => [r.name, r.ino]));
  }

  /** The row of a directory (a view's own row lives under the root). */
  dirRow(parent: number, name: string): TreeRow | undefined {
    return this.src.treeEntry(parent, name);
  }

  /** `stat(2)` attributes of a stored node, as the tree gives them. */
  attr(n: StoredNode): Attr {
    const base = { ino: n.ino, uid: this.uid, gid: this.gid };
    if (n instanceof StoredDir) return dirAttr(base, n.row);
    if (n instanceof StoredTrack) {
      const mtimeMs = n.row.mtimeMs ?? 0;
      return {
        ...base,
        size: n.row.size ?? 0,
        mode: S_IFREG | 0o444,
        nlink: Math.max(1, n.row.nlink),
        mtimeMs,
        ctimeMs: mtimeMs,
      };
    }
    return coverAttr(base, n, this.sourcePath(n), this.now);
  }

  /** Absolute source path of a stored track or cover. */
  sourcePath(n: StoredTrack | StoredCover): string {
    const [origin, rel] = n instanceof StoredTrack
      ? [n.track.originId, n.track.relPath]
      : [n.cover.originId, n.cover.relPath];
    return `${this.originOf(origin) ?? `<origin ${origin}>`}/${rel}`;
  }

  #node(row: TreeRow): StoredNode | undefined {
    const kept = this.#nodes.get(row.ino);
    if (kept) return kept;
    let n: StoredNode | undefined;
    switch (row.kind) {
      case TreeRowKind.dir:
        n = new StoredDir(row.ino, row.name, row);
        break;
      case TreeRowKind.track:
        if (row.ino === TRACK_INO_BASE + row.ref) {
          n = new StoredTrack(row.ino, row, (id) => this.src.getTrack(id));
        }
        break;
      case TreeRowKind.coverFile:
      case TreeRowKind.coverEmbedded: {
        const relPath = row.path ?? "";
        const slash = relPath.lastIndexOf("/");
        const embedded = row.kind === TreeRowKind.coverEmbedded;
        const dot = row.name.lastIndexOf(".");
        n = new StoredCover(
          row.ino,
          {
            originId: row.ref,
            dir: slash < 0 ? "" : relPath.slice(0, slash),
            relPath,
            ext: dot < 0 ? "" : row.name.slice(dot + 1),
            ...(row.size === null ? {} : { size: row.size }),
            ...(row.mtimeMs === null ? {} : { mtimeMs: row.mtimeMs }),
          },
          embedded,
          row.nlink,
        );
        break;
      }
    }
    if (!n) return undefined;
    if (this.#nodes.size >= NODES_KEPT) this.#nodes.clear();
    this.#nodes.set(n.ino, n);
    return n;
  }
}

/** A directory's attributes from its row. */
export function dirAttr(base: { ino: number; uid: number; gid: number }, row: TreeRow): Attr {
  const mtimeMs = row.mtimeMs ?? 0;
  return {
    ...base,
    size: 0,
    mode: S_IFDIR | 0o555,
    nlink: row.nlink,
    mtimeMs,
    ctimeMs: mtimeMs,
  };
}
