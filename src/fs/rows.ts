/**
 * The tree as rows of library.db (see library/tree_rows.ts): what each directory of the four
 * views holds, so that a restarted daemon serves at once from the database (stored.ts) while
 * it rebuilds the tree in memory. Here: the rows of the tree in memory, all of them (a full
 * dump) or those a batch touched (a delta, recorded by the journal's `touch`).
 *
 * @module
 */
import { type TreeRow, TreeRowKind } from "../library/tree_rows.ts";
import type { TreeCore } from "./core.ts";
import { type AnyNode, Cover, Dir, Track, YEARS } from "./nodes.ts";

/** The rows of `n`, called `name` in `d`; undefined for what is not stored. */
export function rowOf(d: Dir, name: string, n: AnyNode): TreeRow | undefined {
  if (n instanceof Dir) {
    return {
      parent: d.ino,
      name,
      ino: n.ino,
      kind: TreeRowKind.dir,
      ref: 0,
      path: null,
      size: null,
      mtimeMs: n.mtimeMs,
      nlink: 2 + n.subdirs,
    };
  }
  if (n instanceof Track) {
    return {
      parent: d.ino,
      name,
      ino: n.ino,
      kind: TreeRowKind.track,
      ref: n.track.id,
      path: null,
      size: n.track.size,
      mtimeMs: n.track.mtimeMs,
      nlink: n.links,
    };
  }
  if (n instanceof Cover) {
    return {
      parent: d.ino,
      name,
      ino: n.ino,
      kind: n.embedded ? TreeRowKind.coverEmbedded : TreeRowKind.coverFile,
      ref: n.cover.originId,
      path: n.cover.relPath,
      size: n.cover.size ?? null,
      mtimeMs: n.cover.mtimeMs ?? null,
      nlink: n.links,
    };
  }
  return undefined;
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

  /**
   * Every row of the four views, for a full dump: by directory inode, the order of the table's
   * key, so the rows are appended rather than scattered (4x faster to write).
   */
  *all(): Generator<TreeRow> {
    const dirs: Dir[] = [];
    for (const v of this.c.viewDirs) {
      yield rowOf(this.c.root, v.name, v)!;
      dirs.push(v);
    }
    for (let i = 0; i < dirs.length; i++) {
      for (const n of dirs[i].entries.values()) if (n instanceof Dir) dirs.push(n);
    }
    dirs.sort((a, b) => a.ino - b.ino);
    for (const d of dirs) {
      for (const [name, n] of d.entries) {
        const row = rowOf(d, name, n);
        if (row) yield row;
      }
    }
  }
}
