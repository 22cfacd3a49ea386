/**
 * What `stat(2)` shows for the tree's nodes: attributes, and in permissions mode the owner,
 * group and mode each node gets from its sources (the policy is access.ts), learnt with async
 * stats where the records do not say.
 *
 * @module
 */
import type { Attr } from "../fuse/ops.ts";
import type { CoverImage } from "../library/change.ts";
import { S_IFDIR, S_IFLNK, S_IFREG } from "../fuse/ops.ts";
import { logger } from "../log/mod.ts";
import {
  type Access,
  AccessTally,
  fileAccess,
  PRIVATE_DIR_MODE,
  SHARED_SEARCH_MODE,
} from "./access.ts";
import type { TreeCore } from "./core.ts";
import { INO } from "./inodes.ts";
import type { Invalidation } from "./journal.ts";
import { utf8Length } from "./naming.ts";
import { type AnyNode, Cover, Dir, Generated, type Node, Symlink, Track } from "./nodes.ts";

const log = logger("fs", "tree");

/** Attributes and access of the tree's nodes. */
export class TreeAccess {
  resolveScheduled = false;
  /** Tracks and covers whose source access is yet to be stat'ed (see resolveAccess). */
  readonly unknown = new Set<Track | Cover | Generated>();
  /** One tally per depth of the directory walk (see accessOf). */
  readonly tallies: AccessTally[] = [];

  constructor(readonly c: TreeCore) {}

  /** `stat(2)` attributes of a node. */
  attr(node: Node): Attr {
    const a = this.plainAttr(node);
    if (this.c.perms && !(node instanceof Symlink)) {
      const acc = this.accessOf(node as AnyNode);
      a.uid = acc.uid;
      a.gid = acc.gid;
      a.mode = (a.mode & ~0o7777) | acc.mode;
    }
    return a;
  }

  /**
   * The owner, group and permission bits `node` is served with (see access.ts); a /.search
   * symlink answers those of the track it links to.
   */
  access(node: Node): Access {
    if (this.c.perms) return this.accessOf(node as AnyNode);
    const a = this.plainAttr(node);
    return { uid: a.uid, gid: a.gid, mode: a.mode & 0o7777 };
  }

  /** The access `n` is served with (permissions mode), computed and remembered. */
  accessOf(n: AnyNode, depth = 0): Access {
    if (n instanceof Track) {
      if (n.accOf !== n.track || !n.acc) {
        const t = n.track;
        if (t.uid !== undefined && t.gid !== undefined && t.mode !== undefined) {
          n.acc = fileAccess(t.uid, t.gid, t.mode);
          n.accOf = t;
        } else this.toLearn(n);
      }
      return n.acc!;
    }
    if (n instanceof Cover) {
      if (n.accOf !== n.cover || !n.acc) this.toLearn(n);
      return n.acc!;
    }
    if (n instanceof Dir) {
      if (n.ino === INO.musicfs || (n === this.c.searchDir && !this.c.perms!.shareSearch)) {
        return { uid: this.c.uid, gid: this.c.gid, mode: PRIVATE_DIR_MODE };
      }
      if (n === this.c.searchDir) {
        return { uid: this.c.uid, gid: this.c.gid, mode: SHARED_SEARCH_MODE };
      }
      if (n.acc) return n.acc;
      // Entries after the first readable by everyone are not even looked at.
      const tally = (this.tallies[depth] ??= new AccessTally()).reset();
      for (const e of n.entries.values()) {
        // Covers do not open folders: their access is learnt later (resolveAccess), and a
        // folder's tracks decide it anyway.
        if (!(e instanceof Cover) && tally.add(this.accessOf(e, depth + 1))) break;
      }
      n.acc = tally.result(this.c);
      return n.acc;
    }
    if (n instanceof Symlink && n.track && this.c.tracks.get(n.track.track.id) === n.track) {
      return this.accessOf(n.track);
    }
    if (n instanceof Generated && n.sourcePath !== "") {
      // A playlist: whom its source file allows (learnt like a cover's).
      if (n.accOf !== n.make || !n.acc) this.toLearn(n);
      return n.acc!;
    }
    // Generated files (inside the private /.musicfs), links to tracks gone: the daemon's.
    return { uid: this.c.uid, gid: this.c.gid, mode: 0o400 };
  }

  /**
   * `n`'s source access is not in its record: it shows as the daemon user's alone until
   * {@link resolveAccess} has stat'ed it (run by itself when `onAccessResolved` is given).
   */
  toLearn(n: Track | Cover | Generated): void {
    n.acc = { uid: this.c.uid, gid: this.c.gid, mode: 0o400 };
    n.accOf = n instanceof Track ? n.track : n instanceof Cover ? n.cover : n.make;
    this.unknown.add(n);
    const done = this.c.perms?.onAccessResolved;
    if (!done || this.resolveScheduled) return;
    this.resolveScheduled = true;
    setTimeout(() => {
      this.resolveScheduled = false;
      this.resolveAccess().then(done, (e) => {
        log.warn("Cannot learn source permissions: {error}", { error: String(e) });
      });
    }, 0);
  }

  /**
   * Learn the access of the sources the records do not give (covers; tracks scanned before
   * schema 2) with async stats, a few at a time, so a stalled origin never blocks a request:
   * until then they show as the daemon user's alone. Resolves with the kernel invalidations
   * the answers cause. Call it after building the tree and after each {@link apply}; a no-op
   * without permissions mode.
   */
  async resolveAccess(concurrency = 4): Promise<Invalidation[]> {
    if (!this.c.perms || this.unknown.size === 0) return [];
    const todo = [...this.unknown].map((n) => ({
      n,
      of: n.accOf,
      path: n instanceof Track ? this.c.source(n.track.originId, n.track.relPath) : n.sourcePath,
      acc: undefined as Access | undefined,
    }));
    this.unknown.clear();
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const job = todo[next++];
        try {
          const st = await Deno.stat(job.path);
          job.acc = fileAccess(st.uid ?? this.c.uid, st.gid ?? this.c.gid, (st.mode ?? 0) & 0o7777);
        } catch (e) {
          log.warn("Cannot stat {path}: {error}", { path: job.path, error: String(e) });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
    const inodes = new Set<number>();
    let tracksChanged = false;
    for (const { n, of, acc } of todo) {
      // Skip what changed meanwhile: its new record or image is judged afresh.
      if (!acc || n.accOf !== of || this.c.node(n.ino) !== n) continue;
      n.acc = acc;
      inodes.add(n.ino);
      if (n instanceof Track) {
        tracksChanged = true;
        for (const d of n.parents) this.accessChanged(d, inodes);
      }
    }
    if (tracksChanged) {
      for (const q of this.c.searchDir.entries.values()) {
        if (q instanceof Dir) this.accessChanged(q, inodes);
      }
    }
    return [...inodes].map((ino) => ({ kind: "inode" as const, ino }));
  }

  /**
   * After a batch (permissions mode): the directories it touched and the nodes it refreshed
   * are judged again, and /.search folders follow their tracks.
   */
  afterBatch(touched: Iterable<{ dir: Dir }>, inodes: Set<number>): void {
    for (const { dir } of touched) this.accessChanged(dir, inodes);
    let searchStale = false;
    for (const ino of inodes) {
      const n = this.c.node(ino);
      if (n instanceof Track) {
        searchStale = true;
        this.accessOf(n);
      } else if (n instanceof Cover && n.accOf !== n.cover) this.toLearn(n);
    }
    if (searchStale) {
      for (const q of this.c.searchDir.entries.values()) {
        if (q instanceof Dir) this.accessChanged(q, inodes);
      }
    }
  }

  /** A directory's entries changed: it and the directories above it recompute their access. */
  accessChanged(d: Dir | null, inodes: Set<number>): void {
    // All the way up: a directory may have been settled without looking at every entry.
    // Only one whose access was served can be in the kernel's cache.
    for (; d; d = d.parent) {
      if (d.acc === undefined) continue;
      d.acc = undefined;
      inodes.add(d.ino);
    }
  }

  /** Attributes before permissions mode: everything is the daemon user's. */
  plainAttr(node: Node): Attr {
    const n = node as AnyNode;
    const base = { ino: n.ino, uid: this.c.uid, gid: this.c.gid };
    if (n instanceof Dir) {
      return {
        ...base,
        size: 0,
        mode: S_IFDIR | 0o555,
        nlink: 2 + n.subdirs,
        mtimeMs: n.mtimeMs,
        ctimeMs: n.mtimeMs,
      };
    }
    if (n instanceof Track) {
      const t = n.track;
      return {
        ...base,
        size: t.size,
        mode: S_IFREG | 0o444,
        nlink: Math.max(1, n.links),
        mtimeMs: t.mtimeMs,
        ctimeMs: t.mtimeMs,
      };
    }
    if (n instanceof Cover) return coverAttr(base, n, n.sourcePath, this.c.now);
    if (n instanceof Generated) {
      const now = Date.now();
      return {
        ...base,
        size: n.make().length,
        mode: S_IFREG | 0o444,
        nlink: 1,
        mtimeMs: now,
        ctimeMs: now,
      };
    }
    return {
      ...base,
      size: utf8Length(n.target),
      mode: S_IFLNK | 0o777,
      nlink: 1,
      mtimeMs: this.c.now,
      ctimeMs: this.c.now,
    };
  }
}

/**
 * A cover's attributes. When the library did not give an image's size: one stat, remembered in
 * the node (covers are small and few). An embedded picture's size is known once MusicOps has
 * read it (setCoverSize); 0 until then.
 */
export function coverAttr(
  base: { ino: number; uid: number; gid: number },
  n: { cover: CoverImage; embedded: boolean; links: number },
  sourcePath: string,
  now: number,
): Attr {
  const c = n.cover;
  if (c.size === undefined && !n.embedded) {
    try {
      const st = Deno.statSync(sourcePath);
      n.cover = { ...c, size: st.size, mtimeMs: st.mtime?.getTime() ?? now };
    } catch (e) {
      log.warn("Cannot stat cover {path}: {error}", { path: sourcePath, error: String(e) });
      n.cover = { ...c, size: 0, mtimeMs: now };
    }
  }
  const mtimeMs = n.cover.mtimeMs ?? now;
  return {
    ...base,
    size: n.cover.size ?? 0,
    mode: S_IFREG | 0o444,
    nlink: Math.max(1, n.links),
    mtimeMs,
    ctimeMs: mtimeMs,
  };
}
