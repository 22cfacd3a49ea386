/**
 * Directory upkeep: every change to a directory's entries goes through {@link DirJournal},
 * which creates and prunes directories, settles names (collision suffixes, stored names that
 * stay put) and keeps the journal of a batch: what each touched name held before, turned into
 * the kernel invalidations at the end of the batch.
 *
 * @module
 */
import type { TreeCore } from "./core.ts";
import { INO } from "./inodes.ts";
import { compare, withCollisionSuffix } from "./naming.ts";
import { bump } from "./grouping.ts";
import { Dir, type FileNode, Track, YEARS } from "./nodes.ts";

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

/** Whether `name` is `base` with a collision suffix ` (n)` before `.ext`. */
export function isSuffixed(name: string, base: string, ext: string): boolean {
  const tail = ext === "" ? "" : `.${ext}`;
  if (!name.endsWith(`)${tail}`)) return false;
  const open = name.lastIndexOf(" (", name.length - tail.length);
  if (open < 0) return false;
  const n = Number(name.slice(open + 2, name.length - tail.length - 1));
  return Number.isInteger(n) && n >= 2 && withCollisionSuffix(base, ext, n) === name;
}

/** The directories' upkeep and the journal of the batch in progress. */
export class DirJournal {
  /** Stored-name changes not yet taken by {@link takeNameChanges}. */
  readonly rowLog = new Map<string, NameRowChange>();
  rowsDirty = new Set<Dir>();
  /** Directories holding a renamed entry. */
  readonly collided = new Set<Dir>();
  // State of the batch in progress (build, apply, search update).
  log: Map<string, { dir: Dir; name: string; old: number }> | null = null;
  fresh = new Set<Dir>();
  coverDirty = new Set<Dir>();
  resolveDirty = new Set<Dir>();
  pruneCheck = new Set<Dir>();

  constructor(readonly c: TreeCore) {}

  /** Run one batch of changes and turn what it touched into invalidations. */
  batch(fn: (inodes: Set<number>) => void): Invalidation[] {
    this.log = new Map();
    this.fresh = new Set();
    this.c.now = Date.now();
    const inodes = new Set<number>();
    const version = this.c.problemsVersion;
    try {
      fn(inodes);
      this.finish();
      if (this.c.perms) this.c.access.afterBatch(this.log.values(), inodes);
      const out: Invalidation[] = [];
      for (const { dir, name, old } of this.log.values()) {
        const cur = dir.entries.get(name)?.ino ?? 0;
        if (cur === old) continue;
        if (this.c.nodes.get(dir.ino) === dir) {
          dir.mtimeMs = this.c.now;
          inodes.add(dir.ino);
        }
        // `delete` makes the kernel drop the inode's link count: only for objects now gone,
        // not for a track that merely left one of its four directories.
        if (old !== 0 && cur === 0 && !this.c.node(old)) {
          out.push({ kind: "delete", parent: dir.ino, child: old, name });
        } else out.push({ kind: "entry", parent: dir.ino, name });
      }
      if (this.c.problemsVersion !== version) inodes.add(INO.problems);
      for (const ino of inodes) this.c.rows.touchFile(ino);
      for (const ino of inodes) if (this.c.node(ino)) out.push({ kind: "inode", ino });
      return out;
    } finally {
      this.log = null;
      this.fresh = new Set();
    }
  }

  /** Remember what `dir` held under `name` before this batch first changed it. */
  touch(dir: Dir, name: string): void {
    if (this.log === null) return;
    this.c.rows.touch(dir, name);
    if (this.fresh.has(dir)) return;
    const key = `${dir.ino}/${name}`;
    if (!this.log.has(key)) {
      this.log.set(key, { dir, name, old: dir.entries.get(name)?.ino ?? 0 });
    }
  }

  /** The subdirectory `name` of `parent`, created if missing. */
  subdir(parent: Dir, name: string, prunable = true): Dir {
    const e = parent.entries.get(name);
    if (e instanceof Dir) return e;
    const ino = this.c.inodes.hash(`d${this.c.dirPath(parent)}/${name}`);
    const d = new Dir(ino, name, parent, parent.view, this.c.now, prunable);
    this.touch(parent, name);
    if (e) {
      // Directories keep their names; the file that held this one is renamed.
      (parent.pending ??= []).push(e);
      this.resolveDirty.add(parent);
    }
    parent.entries.set(name, d);
    parent.subdirs++;
    parent.sorted = undefined;
    this.c.nodes.set(ino, d);
    if (this.log) this.fresh.add(d);
    this.c.dirCount++;
    return d;
  }

  /** Put `n` in `d` under its wanted name, or queue it for {@link resolve} when contested. */
  insert(d: Dir, n: FileNode): void {
    n.links++;
    if (this.log) this.c.rows.touchFile(n.ino);
    if (n instanceof Track) this.coverDirty.add(d);
    const base = this.c.baseOf(d, n);
    const kept = n instanceof Track ? n.assigned?.get(d.ino) : undefined;
    if (kept === undefined && !this.resolveDirty.has(d) && !d.entries.has(base)) {
      // A free name stays free of any suffix the directory's other collisions were given.
      this.touch(d, base);
      d.entries.set(base, n);
      d.sorted = undefined;
    } else {
      (d.pending ??= []).push(n);
      this.resolveDirty.add(d);
    }
  }

  /** Take `n` out of `d`; the directory is pruned at the end of the batch if left empty. */
  remove(d: Dir, n: FileNode): void {
    n.links--;
    if (this.log) this.c.rows.touchFile(n.ino);
    if (n instanceof Track) this.coverDirty.add(d);
    this.pruneCheck.add(d);
    if (d.pending) {
      const i = d.pending.indexOf(n);
      if (i >= 0) {
        d.pending.splice(i, 1);
        return;
      }
    }
    const base = this.c.baseOf(d, n);
    d.sorted = undefined;
    // The others keep their names (a removed source frees only its own).
    if (d.collisions) this.rowsDirty.add(d);
    if (d.entries.get(base) === n) {
      this.touch(d, base);
      d.entries.delete(base);
      return;
    }
    for (const [name, e] of d.entries) {
      if (e === n) {
        this.touch(d, name);
        d.entries.delete(name);
        break;
      }
    }
  }

  /** A stored name of `t` in directory `dir` changes (null: no row needed any more). */
  setRow(t: Track, dir: number, name: string | null): void {
    const cur = t.assigned?.get(dir);
    if (name === null ? cur === undefined : cur === name) return;
    if (name === null) {
      t.assigned!.delete(dir);
      if (t.assigned!.size === 0) t.assigned = undefined;
    } else (t.assigned ??= new Map()).set(dir, name);
    this.rowLog.set(`${t.track.id}:${dir}`, { fileId: t.track.id, dir, name });
  }

  /**
   * Give the waiting files of `d` their names. Files already there keep theirs (only a new
   * build treats every file as new). A track with a stored name gets it back when it still
   * fits; the rest, first by wanted name then by source path, take their wanted name when
   * free, else the first free ` (n)` suffix (skipping names others want).
   */
  resolve(d: Dir): void {
    const pending = d.pending ?? [];
    d.pending = undefined;
    // Entries placed in this batch compete with the waiting ones as equals: only names held
    // before the batch are kept (the batch's log says what a name held before it).
    const allNew = this.c.building || this.fresh.has(d);
    for (const [name, n] of d.entries) {
      if (n instanceof Dir) continue;
      if (!allNew) {
        const r = this.log?.get(`${d.ino}/${name}`);
        if (r === undefined || r.old === n.ino) continue;
      }
      this.touch(d, name);
      d.entries.delete(name);
      pending.push(n);
    }
    const wanted = new Set<string>();
    for (const [name, n] of d.entries) {
      if (!(n instanceof Dir)) wanted.add(this.c.baseOf(d, n));
      else wanted.add(name);
    }
    const claims = pending.map((n) => {
      const base = this.c.baseOf(d, n);
      wanted.add(base);
      const ext = this.c.extOf(n);
      let kept = n instanceof Track ? n.assigned?.get(d.ino) : undefined;
      if (kept !== undefined && kept !== base && !isSuffixed(kept, base, ext)) kept = undefined;
      // A file re-placed in this batch (re-read, or its album renamed) that held its plain
      // name before keeps it against newcomers, stored row or not.
      if (kept === undefined && this.log?.get(`${d.ino}/${base}`)?.old === n.ino) kept = base;
      return { n, base, ext, kept, src: this.c.nodeSource(n) };
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
      this.touch(d, name);
      d.entries.set(name, c.n);
    }
    d.sorted = undefined;
    this.rowsDirty.add(d);
  }

  /** Recount `d`'s renamed entries and the stored names its tracks need. */
  settleRows(d: Dir): void {
    const bases = new Map<string, number>();
    for (const [name, n] of d.entries) {
      bump(bases, n instanceof Dir ? name : this.c.baseOf(d, n), 1);
    }
    const collisions: { name: string; wanted: string; node: FileNode }[] = [];
    const live = this.c.nodes.get(d.ino) === d;
    for (const [name, n] of d.entries) {
      if (n instanceof Dir) continue;
      const base = this.c.baseOf(d, n);
      if (name !== base) collisions.push({ name, wanted: base, node: n });
      if (!(n instanceof Track) || d.view > YEARS) continue;
      const need = live && (name !== base || bases.get(base)! > 1);
      this.setRow(n, d.ino, need ? name : null);
    }
    if (d.collisions || collisions.length) this.c.problemsVersion++;
    d.collisions = collisions.length ? collisions : undefined;
    if (d.collisions) this.collided.add(d);
    else this.collided.delete(d);
  }

  /** Settle covers and names, then drop directories left empty. */
  finish(): void {
    for (const _ of this.finishSteps());
  }

  /** {@link finish} in steps: it yields every `every` directories. */
  *finishSteps(every = 500): Generator<void> {
    let n = 0;
    for (const d of this.coverDirty) {
      this.c.covers.updateCover(d);
      if (++n % every === 0) yield;
    }
    this.coverDirty.clear();
    for (const d of this.resolveDirty) {
      this.resolve(d);
      if (++n % every === 0) yield;
    }
    this.resolveDirty.clear();
    const work = [...this.pruneCheck];
    this.pruneCheck.clear();
    while (work.length) {
      const d = work.pop()!;
      if (!d.prunable || d.entries.size > 0 || this.c.nodes.get(d.ino) !== d) continue;
      const p = d.parent!;
      this.touch(p, d.name);
      p.entries.delete(d.name);
      p.subdirs--;
      p.sorted = undefined;
      this.c.nodes.delete(d.ino);
      d.dead = true;
      this.c.dirCount--;
      this.rowsDirty.add(d);
      work.push(p);
    }
    for (const d of this.rowsDirty) {
      this.settleRows(d);
      if (++n % every === 0) yield;
    }
    this.rowsDirty.clear();
  }

  /**
   * Stored-name changes since the last call (the tree's part of library.db's `names` table):
   * a row for every track whose name in a directory carries a suffix or is wanted by another
   * entry there, so the next start gives every track the name it has now.
   */
  takeNameChanges(): NameRowChange[] {
    const out = [...this.rowLog.values()];
    this.rowLog.clear();
    return out;
  }

  /** Every stored-name row the tree holds now (what library.db's `names` should contain). */
  nameRows(): NameRow[] {
    const out: NameRow[] = [];
    for (const t of this.c.tracks.values()) {
      for (const [dir, name] of t.assigned ?? []) out.push({ fileId: t.track.id, dir, name });
    }
    return out;
  }

  /** Names that were given a collision suffix, by virtual path. */
  collisions(): Collision[] {
    const out: Collision[] = [];
    for (const d of this.collided) {
      const dir = this.c.dirPath(d);
      for (const c of d.collisions ?? []) {
        out.push({
          path: `${dir}/${c.name}`,
          wanted: c.wanted,
          sourcePath: this.c.nodeSource(c.node),
        });
      }
    }
    return out.sort((a, b) => compare(a.path, b.path));
  }
}
