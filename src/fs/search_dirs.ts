/**
 * /.search: one directory per query, holding symlinks `<Artist> - <Title>.<ext>` to the
 * /Artists path of each result.
 *
 * @module
 */
import type { TreeCore } from "./core.ts";
import type { Invalidation } from "./journal.ts";
import { artistName, sanitizeName, titleName } from "./naming.ts";
import { ARTISTS, Dir, type DirNode, Symlink } from "./nodes.ts";

/** The query directories under /.search. */
export class SearchDirs {
  constructor(readonly c: TreeCore) {}

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
    const invalidations = this.c.dirs.batch((inodes) => {
      dir = this.c.dirs.subdir(this.c.searchDir, name, false);
      const old = new Map<number, Symlink>();
      for (const n of dir.entries.values()) if (n instanceof Symlink) old.set(n.ino, n);
      const keep = new Set<Symlink>();
      for (const id of trackIds) {
        const t = this.c.tracks.get(id);
        if (!t || !t.parents.length) continue;
        const ino = this.c.inodes.hash(`s${name}\0${id}`);
        const target = `../..${this.c.filePath(t.parents[ARTISTS], t)}`;
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
          this.c.source(rec.originId, rec.relPath),
        );
        link.track = t;
        if (had) {
          this.c.dirs.remove(dir, had);
          old.delete(ino);
        }
        this.c.nodes.set(ino, link);
        this.c.dirs.insert(dir, link);
      }
      for (const n of old.values()) {
        if (keep.has(n)) continue;
        this.c.dirs.remove(dir, n);
        this.c.nodes.delete(n.ino);
      }
    });
    return { node: dir!, invalidations };
  }

  /** Remove `/.search/<query>` and its links. */
  removeSearch(query: string): Invalidation[] {
    const dir = this.c.searchDir.entries.get(sanitizeName(query));
    if (!(dir instanceof Dir)) return [];
    return this.c.dirs.batch(() => {
      for (const n of [...dir.entries.values()]) {
        if (n instanceof Dir) continue;
        this.c.dirs.remove(dir, n);
        this.c.nodes.delete(n.ino);
      }
      dir.prunable = true;
      this.c.dirs.pruneCheck.add(dir);
    });
  }
}
