/**
 * The virtual tree as rows of library.db (issue 14): what a restarted daemon serves before it
 * has rebuilt the tree in memory. The tree (src/fs) writes them, the database stores them;
 * these types are the contract between the two.
 *
 * @module
 */

/** What a stored entry is. */
export const TreeRowKind = {
  /** A directory; `nlink` and `mtimeMs` are its attributes. */
  dir: 0,
  /** A track; `ref` is its `files.id`. */
  track: 1,
  /** A cover image file; `ref` is its origin id, `path` the image. */
  coverFile: 2,
  /** The picture embedded in an audio file; `ref` is the origin id, `path` the audio file. */
  coverEmbedded: 3,
} as const;

/** One of {@link TreeRowKind}. */
export type TreeRowKind = typeof TreeRowKind[keyof typeof TreeRowKind];

/** One stored entry: `name` in the directory of inode `parent`. */
export interface TreeRow {
  /** Inode of the directory holding the entry. */
  parent: number;
  /** The entry's name there. */
  name: string;
  /** The entry's inode. */
  ino: number;
  /** What it is. */
  kind: TreeRowKind;
  /** A track's `files.id`; a cover's origin id; 0 for a directory. */
  ref: number;
  /** A cover's source path (relative to its origin); null otherwise. */
  path: string | null;
  /** A track's or a cover's size (null: a cover's not known yet); null for a directory. */
  size: number | null;
  /** The modification time served (null: a cover's not known yet). */
  mtimeMs: number | null;
  /** A directory's link count (2 + subdirectories); a file's names in the tree. */
  nlink: number;
}

/** Values per row in {@link PackedTreeRows}. */
export const TREE_ROW_WIDTH = 9;

/**
 * Rows packed {@link TREE_ROW_WIDTH} values each, in {@link TreeRow}'s field order (parent,
 * name, ino, kind, ref, path, size, mtimeMs, nlink): a full dump's 5M rows at 1M tracks
 * without an object each. `values` may be longer than `count` rows; the rest is ignored.
 */
export interface PackedTreeRows {
  values: (string | number | null)[];
  count: number;
}

/** What the stored rows are a picture of. */
export interface TreeStamp {
  /** The library.db generation the rows reflect: any other means they are stale. */
  generation: number;
  /** The /Artists layout the rows were laid out with. */
  layout: string;
  /** The tree's counts then (status.json while the rows are served), as JSON. */
  stats: string;
}

/** A change to the stored rows, saved in one transaction with the names and the stamp. */
export interface TreeRowsUpdate {
  /** Drop every stored row first (a full dump's first part). */
  clear?: boolean;
  /** Rows to insert or replace (by parent and name). */
  upserts: readonly TreeRow[];
  /** More rows to insert or replace, packed (after {@link upserts}). */
  packed?: PackedTreeRows;
  /** Entries gone: [parent inode, name]. */
  deletes: readonly (readonly [number, string])[];
  /** New attributes of a file under every name it has: [inode, size, mtime, nlink]. */
  attrs?: readonly (readonly [number, number | null, number | null, number])[];
  /** The stamp to record with this part; absent: the stamp is removed (the rows are partial). */
  stamp?: TreeStamp;
}
