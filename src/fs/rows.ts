/**
 * The tree as rows of library.db (see library/tree_rows.ts): what each directory of the four
 * views holds, so that a restarted daemon serves at once from the database (stored.ts) while
 * it rebuilds the tree in memory. Here: the rows of the tree in memory, all of them (a full
 * dump) or those a batch touched (a delta, recorded by the journal's `touch`).
 *
 * @module
 */
import {
  type PackedTreeRows,
  TREE_ROW_WIDTH,
  type TreeRow,
  TreeRowKind,
} from "../library/tree_rows.ts";
import type { TreeCore } from "./core.ts";
import { type AnyNode, Cover, Dir, Track, YEARS } from "./nodes.ts";

/**
 * Write the row of `n`, called `name` in `d`, at row `at` of `out` ({@link TREE_ROW_WIDTH}
 * values a row); false (nothing written) for what is not stored.
 */
function packRow(
  out: (string | number | null)[],
  at: number,
  d: Dir,
  name: string,
  n: AnyNode,
): boolean {
  const o = at * TREE_ROW_WIDTH;
  out[o] = d.ino;
  out[o + 1] = name;
  out[o + 2] = n.ino;
  if (n instanceof Dir) {
    out[o + 3] = TreeRowKind.dir;
    out[o + 4] = 0;
    out[o + 5] = null;
    out[o + 6] = null;
    out[o + 7] = n.mtimeMs;
    out[o + 8] = 2 + n.subdirs;
  } else if (n instanceof Track) {
    out[o + 3] = TreeRowKind.track;
    out[o + 4] = n.track.id;
    out[o + 5] = null;
    out[o + 6] = n.track.size;
    out[o + 7] = n.track.mtimeMs;
    out[o + 8] = n.links;
  } else if (n instanceof Cover) {
    out[o + 3] = n.embedded ? TreeRowKind.coverEmbedded : TreeRowKind.coverFile;
    out[o + 4] = n.cover.originId;
    out[o + 5] = n.cover.relPath;
    out[o + 6] = n.cover.size ?? null;
    out[o + 7] = n.cover.mtimeMs ?? null;
    out[o + 8] = n.links;
  } else return false;
  return true;
}

/** Row `at` of packed values, as a {@link TreeRow}. */
function unpackRow(v: readonly (string | number | null)[], at: number): TreeRow {
  const o = at * TREE_ROW_WIDTH;
  return {
    parent: v[o] as number,
    name: v[o + 1] as string,
    ino: v[o + 2] as number,
    kind: v[o + 3] as TreeRowKind,
    ref: v[o + 4] as number,
    path: v[o + 5] as string | null,
    size: v[o + 6] as number | null,
    mtimeMs: v[o + 7] as number | null,
    nlink: v[o + 8] as number,
  };
}

const one: (string | number | null)[] = [];

/** The rows of `n`, called `name` in `d`; undefined for what is not stored. */
export function rowOf(d: Dir, name: string, n: AnyNode): TreeRow | undefined {
  return packRow(one, 0, d, name, n) ? unpackRow(one, 0) : undefined;
}

/**
 * Every row of the four views, part by part, for a full dump: by directory inode, the order
 * of the table's key, so the rows are appended rather than scattered (4x faster to write).
 * The tree must not change between parts.
 */
export class RowCursor {
  readonly #dirs: Dir[] = [];
  #at = 0;
  #entries: Iterator<[string, AnyNode]> | undefined;
  #views: [Dir, string, Dir][] | undefined;

  constructor(c: TreeCore) {
    const dirs = this.#dirs;
    this.#views = c.viewDirs.map((v) => [c.root, v.name, v]);
    for (const v of c.viewDirs) dirs.push(v);
    for (let i = 0; i < dirs.length; i++) {
      for (const n of dirs[i].entries.values()) if (n instanceof Dir) dirs.push(n);
    }
    dirs.sort((a, b) => a.ino - b.ino);
  }

  /** Up to `max` more rows into `out` (from its start; `out.count` says how many); true at the end. */
  fill(out: PackedTreeRows, max: number): boolean {
    const v = out.values;
    let n = 0;
    for (const [d, name, dir] of this.#views ?? []) if (packRow(v, n, d, name, dir)) n++;
    this.#views = undefined;
    const dirs = this.#dirs;
    while (n < max) {
      if (this.#entries === undefined) {
        if (this.#at >= dirs.length) break;
        this.#entries = dirs[this.#at++].entries[Symbol.iterator]();
      }
      const d = dirs[this.#at - 1];
      const it = this.#entries;
      for (;;) {
        const e = it.next();
        if (e.done) {
          this.#entries = undefined;
          break;
        }
        if (packRow(v, n, d, e.value[0], e.value[1])) n++;
        if (n >= max) break;
      }
    }
    out.count = n;
    return n < max;
  }
}

/** The entries of the views changed since the last {@link take}, as row upserts and deletes. */
export class RowLog {
  /** Recording (the daemon stores rows); off, the journal records nothing. */
  on = false;
  readonly #touched = new Map<string, { dir: Dir; name: string }>();
  /** Files whose attributes or link count may have changed (all their rows follow). */
  readonly #files = new Set<number>();

  constructor(readonly c: TreeCore) {}

  /** `name` in `dir` may have changed (called by the journal for every change). */
  touch(dir: Dir, name: string): void {
    if (!this.on || dir.view > YEARS) return;
    const key = `${dir.ino}/${name}`;
    if (!this.#touched.has(key)) this.#touched.set(key, { dir, name });
  }

  /** The attributes of file `ino` may have changed (its size, time or number of names). */
  touchFile(ino: number): void {
    if (this.on) this.#files.add(ino);
  }

  /** Whether anything was touched since the last {@link take}. */
  get dirty(): boolean {
    return this.#touched.size > 0 || this.#files.size > 0;
  }

  /**
   * The rows touched since the last call: an upsert for each name that holds something, a
   * delete for each that does not, and the own rows of the directories touched (their link
   * count and time change with their entries).
   */
  take(): {
    upserts: TreeRow[];
    deletes: [number, string][];
    attrs: [number, number | null, number | null, number][];
  } {
    const upserts: TreeRow[] = [];
    const deletes: [number, string][] = [];
    const dirs = new Set<Dir>();
    for (const { dir, name } of this.#touched.values()) {
      const live = !dir.dead && this.c.nodes.get(dir.ino) === dir;
      const n = live ? dir.entries.get(name) : undefined;
      const row = n && rowOf(dir, name, n);
      if (row) upserts.push(row);
      else deletes.push([dir.ino, name]);
      if (live) dirs.add(dir);
    }
    this.#touched.clear();
    for (const d of dirs) {
      if (d.parent && d.parent.entries.get(d.name) === d) upserts.push(rowOf(d.parent, d.name, d)!);
    }
    const attrs: [number, number | null, number | null, number][] = [];
    for (const ino of this.#files) {
      const n = this.c.node(ino);
      if (n instanceof Track) attrs.push([ino, n.track.size, n.track.mtimeMs, n.links]);
      else if (n instanceof Cover) {
        attrs.push([ino, n.cover.size ?? null, n.cover.mtimeMs ?? null, n.links]);
      }
    }
    this.#files.clear();
    return { upserts, deletes, attrs };
  }

  /** Forget what was touched (the rows are rewritten whole anyway). */
  clear(): void {
    this.#touched.clear();
    this.#files.clear();
  }

  /** Every row of the four views (see {@link RowCursor}), one by one. */
  *all(): Generator<TreeRow> {
    const cursor = new RowCursor(this.c);
    const out: PackedTreeRows = { values: [], count: 0 };
    for (;;) {
      const done = cursor.fill(out, 1000);
      for (let i = 0; i < out.count; i++) yield unpackRow(out.values, i);
      if (done) return;
    }
  }
}
