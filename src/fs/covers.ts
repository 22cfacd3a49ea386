/**
 * Covers: each album folder shows one `cover.<ext>`, the image of a track's source folder,
 * else of the parent of a disc folder (`CD1`), else a track's embedded front picture.
 *
 * @module
 */
import type { CoverImage, LibraryChange } from "../library/change.ts";
import type { TreeCore } from "./core.ts";
import { compare } from "./naming.ts";
import {
  type AnyNode,
  Cover,
  type CoverNode,
  type Dir,
  dirOf,
  normDir,
  sourceDirKey,
  Track,
  YEARS,
} from "./nodes.ts";

/** Folders holding one disc of an album (`CD1`, `Disc 2`, `disk 03 - Bonus`). */
export const DISC_FOLDER = /^(?:cd|dis[ck])[\s._-]*\d{1,3}(?:\b.*)?$/i;

/** Image type of a picture's MIME type, as a cover extension. */
export function pictureExt(mime: string): string {
  const sub = mime.toLowerCase().replace(/^image\//, "").replace(/[^a-z0-9]/g, "");
  return sub === "jpeg" || sub === "pjpeg" || sub === "" ? "jpg" : sub.slice(0, 8);
}

/** The cover images of source folders, and the embedded pictures in use. */
export class Covers {
  /** The cover image of each source folder, by {@link sourceDirKey}. */
  readonly byDir = new Map<string, Cover>();
  /** Embedded-picture covers by track id, made when an album folder first needs one. */
  readonly embedded = new Map<number, Cover>();

  constructor(readonly c: TreeCore) {}

  /** The covers of a new tree. */
  build(covers: Iterable<CoverImage>): void {
    for (const c of covers) {
      const key = sourceDirKey(c.originId, normDir(c.dir));
      const had = this.byDir.get(key);
      // Several images in one folder: the first by path wins, whatever the input order.
      if (!had || compare(c.relPath, had.cover.relPath) < 0) this.set(c);
    }
  }

  /** The cover part of a library change: the album folders they show in are settled later. */
  apply(changes: Partial<LibraryChange>, inodes: Set<number>): void {
    const coverKeys = new Set<string>();
    for (const c of changes.covers ?? []) {
      const key = sourceDirKey(c.originId, normDir(c.dir));
      const had = this.byDir.get(key);
      if (had && had.cover.relPath === c.relPath && had.cover.ext === c.ext) {
        had.cover = c;
        inodes.add(had.ino);
      } else {
        this.set(c);
        coverKeys.add(key);
      }
    }
    for (const r of changes.removedCovers ?? []) {
      const key = sourceDirKey(r.originId, normDir(r.dir));
      const had = this.byDir.get(key);
      if (!had) continue;
      this.byDir.delete(key);
      this.c.nodes.delete(had.ino);
      coverKeys.add(key);
    }
    if (coverKeys.size) {
      for (const t of this.c.tracks.values()) {
        const dir = dirOf(t.track.relPath);
        const slash = dir.lastIndexOf("/");
        const parent = slash < 0 ? "" : dir.slice(0, slash);
        if (
          coverKeys.has(sourceDirKey(t.track.originId, dir)) ||
          coverKeys.has(sourceDirKey(t.track.originId, parent))
        ) {
          for (const d of t.parents) this.c.dirs.coverDirty.add(d);
        }
      }
    }
  }

  /** Record the cover of a source folder (replacing the folder's previous one). */
  set(c: CoverImage): void {
    const key = sourceDirKey(c.originId, normDir(c.dir));
    const had = this.byDir.get(key);
    if (had) this.c.nodes.delete(had.ino);
    const node = new Cover(
      this.c.inodes.hash(`c${c.originId}\0${c.relPath}`),
      c,
      key,
      this.c.source(c.originId, c.relPath),
      this.c.source(c.originId, normDir(c.dir)),
    );
    this.byDir.set(key, node);
    this.c.nodes.set(node.ino, node);
    if (this.c.perms) this.c.access.toLearn(node);
  }

  /** The embedded-picture cover of a track, made on first need. */
  embeddedCover(t: Track): Cover {
    let c = this.embedded.get(t.track.id);
    if (c) return c;
    const rec = t.track;
    const src = this.c.source(rec.originId, rec.relPath);
    c = new Cover(
      this.c.inodes.hash(`e${rec.originId}\0${rec.relPath}`),
      {
        originId: rec.originId,
        dir: dirOf(rec.relPath),
        relPath: rec.relPath,
        ext: pictureExt(rec.picture ?? ""),
        mtimeMs: rec.mtimeMs,
      },
      `e${rec.id}`,
      src,
      src,
      true,
    );
    this.embedded.set(rec.id, c);
    this.c.nodes.set(c.ino, c);
    return c;
  }

  /** A track changed or went: its embedded cover (if made) goes with it. */
  dropEmbedded(id: number, inodes: Set<number>): void {
    const c = this.embedded.get(id);
    if (!c) return;
    this.embedded.delete(id);
    this.c.nodes.delete(c.ino);
    inodes.add(c.ino);
  }

  /**
   * Show the right cover in an album folder. For each track: an image in its source folder,
   * else in the parent folder when its folder is a disc folder (`CD1`, `Disc 2`), else its
   * embedded front picture. The folder shows the best of these over its tracks: a folder
   * image before a parent's before an embedded one, then the first source folder by path
   * (for embedded pictures: the first track by source path).
   */
  updateCover(d: Dir): void {
    if (!d.prunable || d.view > YEARS || this.c.nodes.get(d.ino) !== d) return;
    let best: Cover | undefined;
    let bestRank = 3;
    let bestKey = "";
    let embedded: Track | undefined;
    let embeddedKey = "";
    // Tracks of one folder come together: look a folder up once, without building its key.
    let lastOrigin = -1;
    let lastDir = "";
    const consider = (n: AnyNode) => {
      if (!(n instanceof Track)) return;
      const { originId, relPath, picture } = n.track;
      if (bestRank > 1 && picture) {
        const key = this.c.source(originId, relPath);
        if (!embedded || compare(key, embeddedKey) < 0) {
          embedded = n;
          embeddedKey = key;
        }
      }
      const slash = relPath.lastIndexOf("/");
      if (
        originId === lastOrigin && slash === lastDir.length && relPath.startsWith(lastDir)
      ) return;
      lastOrigin = originId;
      lastDir = slash < 0 ? "" : relPath.slice(0, slash);
      let rank = 0;
      let c = this.byDir.get(sourceDirKey(originId, lastDir));
      if (!c && slash > 0) {
        const up = lastDir.lastIndexOf("/");
        if (DISC_FOLDER.test(lastDir.slice(up + 1))) {
          c = this.byDir.get(sourceDirKey(originId, up < 0 ? "" : lastDir.slice(0, up)));
          rank = 1;
        }
      }
      if (!c) return;
      if (rank < bestRank || (rank === bestRank && compare(c.folder, bestKey) < 0)) {
        best = c;
        bestRank = rank;
        bestKey = c.folder;
      }
    };
    for (const n of d.entries.values()) consider(n);
    for (const n of d.pending ?? []) consider(n);
    if (!best && embedded) best = this.embeddedCover(embedded);
    if (best === d.cover) return;
    if (d.cover) this.c.dirs.remove(d, d.cover);
    if (best) this.c.dirs.insert(d, best);
    d.cover = best;
  }

  /** Record the size of an embedded cover once its picture was extracted (until then: 0). */
  setCoverSize(node: CoverNode, size: number): void {
    const c = node as Cover;
    c.cover = { ...c.cover, size };
  }
}
