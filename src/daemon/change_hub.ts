/**
 * Where a committed library batch goes: the virtual tree (and the names it settled, stored
 * right away), the kernel's caches (invalidations), the search index, and the health probes.
 * The scanner, the source check and background permission lookups all feed it; data flows one
 * way, library -> tree and search -> kernel.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { INO, VirtualTree } from "../fs/mod.ts";
 * import { emptyChange, type TrackRecord } from "../library/mod.ts";
 * import { SearchIndex } from "../search/mod.ts";
 * import { ChangeHub, type KernelNotifier } from "./change_hub.ts";
 *
 * const track = (id: number, relPath: string): TrackRecord => ({
 *   id, originId: 1, relPath, ext: "flac", size: 1, mtimeMs: 0,
 *   albumArtist: "Queen", album: "News of the World", title: "We Will Rock You", track: 1,
 * });
 * const take = track(1, "Queen/News/01.flac");
 * const copy = track(2, "Queen/News (remaster)/01.flac"); // the same tags in another folder
 * const origins = [{ id: 1, path: "/music" }];
 * const tree = new VirtualTree({ origins, tracks: [take], uid: 0, gid: 0 });
 * const search = SearchIndex.create("search.db"); // in memory until its first commit
 * search.indexFile(take);
 * const saved: { fileId: number; name: string | null }[] = []; // name rows for library.db
 * const told: string[] = []; // the FUSE session's notify calls
 * const kernel: KernelNotifier = {
 *   notifyInvalEntry: (parent, name) => told.push(`entry ${parent} ${name}`),
 *   notifyDelete: (parent, child, name) => told.push(`delete ${parent} ${child} ${name}`),
 *   notifyInvalInode: (ino) => told.push(`inode ${ino}`),
 * };
 * const hub = new ChangeHub({
 *   tree,
 *   search,
 *   names: { saveNames: (rows) => void saved.push(...rows) },
 *   problems: () => [],
 * });
 * // The daemon: `new Scanner(db, { onChange: (c) => hub.apply(c) })`, and once mounted:
 * hub.kernel = kernel;
 * try {
 *   hub.apply({ ...emptyChange(2), added: [copy] });
 *   const album = tree.lookup(tree.lookup(INO.artists, "Queen")!.ino, "News of the World")!;
 *   const names = () => tree.children(album.ino)!.map((e) => e.name);
 *   assert.deepEqual(names(), ["01 - We Will Rock You (2).flac", "01 - We Will Rock You.flac"]);
 *   // The settled names are stored at once, so a restart gives each file the same name.
 *   assert.ok(saved.some((row) => row.fileId === 2 && row.name?.endsWith("(2).flac")));
 *   assert.ok(told.includes(`inode ${album.ino}`)); // the kernel drops the cached listing
 *   assert.deepEqual(search.search("rock you").map((hit) => hit.id).sort(), [1, 2]);
 *
 *   told.length = 0;
 *   hub.apply({ ...emptyChange(3), removed: [copy] });
 *   assert.deepEqual(names(), ["01 - We Will Rock You.flac"]);
 *   assert.ok(told.some((t) => t.startsWith(`delete ${album.ino} `)));
 *   assert.deepEqual(search.search("rock you").map((hit) => hit.id), [1]);
 * } finally {
 *   search.close();
 * }
 * ```
 */
import type { Invalidation, VirtualTree } from "../fs/mod.ts";
import type { LibraryChange, Problem, TrackRecord } from "../library/mod.ts";
import { logger } from "../log/mod.ts";
import type { ProbeFiles } from "./probe_files.ts";

const log = logger("daemon");

/** The kernel side of invalidations: what a FUSE session offers (the notify calls). */
export interface KernelNotifier {
  /** Forget the dentry `name` in `parent`. */
  notifyInvalEntry(parent: number, name: string): unknown;
  /** `child` named `name` in `parent` is gone. */
  notifyDelete(parent: number, child: number, name: string): unknown;
  /** Forget the attributes and (from `off`, `len` bytes; -1: all) data of `ino`. */
  notifyInvalInode(ino: number, off: number, len: number): unknown;
}

/** The name assignments the tree settles, as rows (library.db). */
type NameChanges = ReturnType<VirtualTree["takeNameChanges"]>;

/** What the hub feeds. */
export interface ChangeHubOptions {
  /** The tree changes are applied to. */
  tree: Pick<VirtualTree, "apply" | "takeNameChanges">;
  /** The search index tracks are indexed in and removed from. */
  search: { indexFile(track: TrackRecord): void; remove(id: number): void };
  /** Where the tree's name assignments are stored (library.db); a failure is retried later. */
  names: { saveNames(changes: NameChanges): void };
  /** This mount's full problem list, read when a change says it changed. */
  problems: () => Problem[];
  /** One known file per origin for the health monitor. */
  probes?: ProbeFiles;
  /** Called before the tree update when the problem list changed. */
  onProblemsChanged?: () => void;
}

/** Milliseconds spent per destination since {@link ChangeHub.resetTimings}. */
export interface ChangeTimings {
  /** Tree updates and name storage. */
  tree: number;
  /** Kernel invalidations. */
  invalidate: number;
  /** Search indexing. */
  search: number;
}

/** Turns library changes into tree updates, search updates and kernel invalidations. */
export class ChangeHub {
  /** Where invalidations go; undefined until mounted (the kernel then has nothing cached). */
  kernel: KernelNotifier | undefined;
  /** Where the change listener's time goes during a scan (the scan's debug stage line). */
  readonly timings: ChangeTimings = { tree: 0, invalidate: 0, search: 0 };
  readonly #opts: ChangeHubOptions;
  #unsavedNames: NameChanges = [];

  /** A hub feeding `opts`' destinations. */
  constructor(opts: ChangeHubOptions) {
    this.#opts = opts;
  }

  /** Apply one committed library batch everywhere. */
  apply(c: LibraryChange): void {
    const { tree, search } = this.#opts;
    const t0 = performance.now();
    this.#opts.probes?.update(c);
    if (c.problemsChanged) this.#opts.onProblemsChanged?.();
    const inv = tree.apply(c, c.problemsChanged ? this.#opts.problems() : undefined);
    this.saveNames();
    const t1 = performance.now();
    this.invalidate(inv);
    const t2 = performance.now();
    for (const t of c.added) search.indexFile(t);
    for (const t of c.changed) search.indexFile(t);
    for (const t of c.removed) search.remove(t.id);
    this.timings.tree += t1 - t0;
    this.timings.invalidate += t2 - t1;
    this.timings.search += performance.now() - t2;
  }

  /** Take tracks out of the tree and the search index (sources found missing). */
  removeTracks(tracks: TrackRecord[]): void {
    this.invalidate(this.#opts.tree.apply({ removed: tracks }));
    for (const t of tracks) this.#opts.search.remove(t.id);
  }

  /** Tell the kernel to forget what `inv` names (nothing before the mount). */
  invalidate(inv: readonly Invalidation[]): void {
    const k = this.kernel;
    if (!k) return;
    for (const i of inv) {
      if (i.kind === "entry") k.notifyInvalEntry(i.parent, i.name);
      else if (i.kind === "delete") k.notifyDelete(i.parent, i.child, i.name);
      else k.notifyInvalInode(i.ino, 0, -1);
    }
  }

  /**
   * Names that stay put: what the tree settled is stored right after each library batch (the
   * next synchronous step after its commit), so a restart gives every file its name. A failed
   * store keeps the rows for the next try.
   */
  saveNames(): void {
    const changes = [...this.#unsavedNames, ...this.#opts.tree.takeNameChanges()];
    try {
      this.#opts.names.saveNames(changes);
      this.#unsavedNames = [];
    } catch (e) {
      this.#unsavedNames = changes;
      log.warn("Cannot store {n} name assignments (will retry): {error}", {
        n: changes.length,
        error: String(e),
      });
    }
  }

  /** Zero {@link timings} (at the start of a scan). */
  resetTimings(): void {
    this.timings.tree = this.timings.invalidate = this.timings.search = 0;
  }
}
