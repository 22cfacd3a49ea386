/**
 * The FUSE operations of musicfs: the virtual tree served through src/fuse. Track and cover
 * files read the source bytes (kernel passthrough when the session has it, else pread, or
 * through the chunk cache for network origins); generated files serve a snapshot per open;
 * `/.search/<query>` directories are made on lookup from the search index.
 */
import {
  type Attr,
  copyRange,
  type DirEntry,
  type Entry,
  Errno,
  FsError,
  type FuseOperations,
  type OpenResult,
  preadAsync,
  preadCached,
  type RequestContext,
  type StatFs,
} from "../fuse/mod.ts";
import {
  type CoverNode,
  INO,
  type Invalidation,
  type Node,
  type TrackNode,
  type VirtualTree,
} from "./tree.ts";
import { SourceOpener, SourceOpenError, type SourceVersion } from "./source_open.ts";
import { readFrontPicture } from "../library/front_picture.ts";
import { logger } from "../log/mod.ts";

const log = logger("fs");

/** Largest query, in bytes, a `/.search/<query>` directory accepts. */
export const SEARCH_QUERY_MAX_BYTES = 256;
/** Most results listed in one `/.search/<query>` directory. */
export const SEARCH_RESULTS_MAX = 1000;
/**
 * How many query directories are kept before the oldest is dropped; one the kernel still holds
 * (a lookup not yet forgotten: an open handle, a cwd, a cached entry) is only dropped once the
 * kernel forgets it, so it never vanishes between a lookup and its listing.
 */
const SEARCH_DIRS_KEPT = 64;

/** A track file as the chunk cache sees it. */
export interface CachedFile {
  /** Id of the origin holding the source file. */
  originId: number;
  /** Track id in library.db; may be reused after a rebuild, so not a safe cache key. */
  id: number;
  /** Source size in bytes, as scanned. */
  size: number;
  /** Source modification time in ms since the epoch, as scanned. */
  mtimeMs: number;
  /** Source status-change time in ms, as scanned (absent in rows scanned before schema 2). */
  ctimeMs?: number;
  /** Source inode number, as scanned (absent in rows scanned before schema 2). */
  ino?: number;
  /** Absolute path of the source file. */
  path: string;
}

/** A source that could not be opened as the library recorded it (a swap, a FIFO, a vanished file). */
export interface SourceFault {
  /** The origin holding the source. */
  originId: number;
  /** Absolute source path. */
  path: string;
  /** One-line reason. */
  reason: string;
}

/** Reads through the chunk cache, for origins that should not be read directly. */
export interface CacheRoute {
  /** Whether reads of this origin go through the cache. */
  routes(originId: number): boolean;
  /** Fill `dst` with the bytes of `file` from `offset`; resolves to the byte count. */
  read(file: CachedFile, offset: number, dst: Uint8Array): Promise<number>;
  /** A file was opened: warm the cache with the rest of it (and what follows). */
  opened?(file: CachedFile): void;
}

/** What the operations need besides the tree. */
export interface MusicOpsOptions {
  /** The tree served; updated by its owner, read on every request. */
  tree: VirtualTree;
  /** Track ids matching a query, best first; absent: /.search stays empty. */
  search?: (query: string, limit: number) => Promise<number[]>;
  /** Called with the kernel invalidations that search directories cause. */
  invalidate?: (inv: Invalidation[]) => void;
  /** Chunk cache route for origins read through it; absent: every read goes to the source. */
  cache?: CacheRoute;
  /** Whether an origin is reachable; reads of an unhealthy origin fail fast with EIO. */
  healthy?: (originId: number) => boolean;
  /**
   * Opens sources (off the request loop, checked to be regular files inside a root); default:
   * one over `tree.origins` paths, symlinks out of the library not followed.
   */
  opener?: SourceOpener;
  /**
   * Drop the kernel's cached attributes of `ino` now; resolves once the kernel has them (the
   * open that found a new version waits for it, so its first read sees the new size).
   */
  invalidateAttr?: (ino: number) => Promise<void>;
  /** A source was found swapped, not a regular file, or gone at open: list it and rescan. */
  onSourceFault?: (fault: SourceFault) => void;
  /** A source was found changed at open (another version than scanned): rescan it. */
  onSourceChanged?: (originId: number, path: string) => void;
  /** Reads the embedded front picture of an audio file (default: music-metadata's). */
  readPicture?: (path: string) => Promise<Uint8Array | null>;
}

interface FdHandle {
  kind: "fd";
  fd: number;
  /** Size of the version opened: reads stop there, and a source of another size is EIO. */
  size: number;
  path: string;
  /** The version this handle reads. */
  version: SourceVersion;
  /** Page-cache-only reads may run on the request loop (not FUSE or network sources). */
  nowait: boolean;
  live: Live;
}

/**
 * What the daemon knows about the source behind an inode while it is open (or was found
 * changed at an open): the kernel keeps one page cache and one size per inode, while each
 * handle must keep reading the version it opened.
 */
interface Live {
  ino: number;
  /** The tree record this was recorded against; another one (a rescan landed) ends `version`. */
  rec: object;
  /** The newest version an open found; undefined while it is the record's. */
  version?: SourceVersion;
  /** Open handles of this inode. */
  handles: Set<FdHandle>;
  /** The kernel page cache may hold bytes of another version than `version`. */
  dirty: boolean;
}

type Handle =
  | FdHandle
  | { kind: "mem"; data: Uint8Array }
  | { kind: "cache"; file: CachedFile };

function sameVersion(rec: Partial<SourceVersion>, v: SourceVersion): boolean {
  return rec.size === v.size && rec.mtimeMs === v.mtimeMs &&
    (rec.ctimeMs === undefined || rec.ctimeMs === v.ctimeMs) &&
    (rec.ino === undefined || rec.ino === v.ino);
}

const encoder = new TextEncoder();
/** The extended attribute naming a file's source. */
const SOURCE_XATTR = "user.musicfs.source";
/**
 * The extended attribute of an embedded cover, naming the audio file holding the picture: not
 * `user.musicfs.source`, whose bytes are the file's own (tools that pair mount files with
 * their sources must not take the cover for a second copy of the track).
 */
const EMBEDDED_XATTR = "user.musicfs.embedded-in";

/** {@link FuseOperations} over a {@link VirtualTree}. */
export class MusicOps implements FuseOperations {
  #tree: VirtualTree;
  #opts: MusicOpsOptions;
  #handles = new Map<number, Handle>();
  #nextFh = 1;
  /** Query directories, least recently looked up first: query -> directory inode. */
  #searchDirs = new Map<string, number>();
  /** Query directory inodes the kernel holds (looked up, not forgotten). */
  #searchHeld = new Set<number>();
  /** Held query directories past the kept window: inode -> query; dropped when forgotten. */
  #searchOverflow = new Map<number, string>();
  #opener: SourceOpener;
  #live = new Map<number, Live>();
  /** Stats of origins read through the cache that timed out and have not returned, by origin. */
  #statStuck = new Map<number, number>();
  /** Embedded covers being measured, so concurrent lookups extract once. */
  #measuring = new Map<number, Promise<void>>();
  readonly #readPicture: (path: string) => Promise<Uint8Array | null>;

  /** Serve `opts.tree`. */
  constructor(opts: MusicOpsOptions) {
    this.#tree = opts.tree;
    this.#opts = opts;
    this.#opener = opts.opener ?? new SourceOpener({ roots: opts.tree.originPaths() });
    this.#readPicture = opts.readPicture ??
      (async (path) => (await readFrontPicture(path))?.data ?? null);
  }

  /** The bytes of an embedded cover, read now (never kept beyond the open file). */
  async #picture(n: CoverNode): Promise<Uint8Array> {
    const path = this.#tree.sourcePath(n);
    // The same guard as every source open (regular file inside a root, off the loop, bounded)
    // before the picture is read from it (a reader given in the options reads no file).
    if (!this.#opts.readPicture) {
      try {
        const src = await this.#opener.open(path, String(n.cover.originId));
        this.#opener.close(src.fd);
      } catch (e) {
        if (e instanceof SourceOpenError && e.libraryChanged) {
          log.warn("{reason}; answering {errno}", { reason: e.message, errno: e.errno });
          this.#opts.onSourceFault?.({ originId: n.cover.originId, path, reason: e.message });
        }
        throw e;
      }
    }
    let data: Uint8Array | null;
    try {
      data = await this.#readPicture(path);
    } catch (e) {
      log.warn("Cannot read the embedded picture of {path}: {error}", { path, error: String(e) });
      throw new FsError(Errno.EIO, `cannot read the picture in ${path}`);
    }
    if (!data) throw new FsError(Errno.EIO, `${path} has no embedded picture any more`);
    if (data.length !== n.cover.size) this.#tree.setCoverSize(n, data.length);
    return data;
  }

  /** An embedded cover's size is known only once its picture was read: read it once. */
  async #measure(n: Node): Promise<void> {
    if (n.kind !== "cover" || !n.embedded || n.cover.size !== undefined) return;
    let p = this.#measuring.get(n.ino);
    if (!p) {
      p = this.#picture(n).then(() => {}, () => this.#tree.setCoverSize(n, 0)).finally(() =>
        this.#measuring.delete(n.ino)
      );
      this.#measuring.set(n.ino, p);
    }
    await p;
  }

  /** Attributes of `n`, with the size and times of a newer version found at an open. */
  #attr(n: Node): Attr {
    const a = this.#tree.attr(n);
    if (this.#live.size === 0) return a;
    const live = this.#live.get(a.ino);
    if (!live?.version) return a;
    const rec = recordOf(n);
    if (live.rec !== rec) {
      // The tree has a newer record (the rescan landed): it speaks for the source again.
      live.version = undefined;
      if (live.handles.size === 0) this.#live.delete(a.ino);
      return a;
    }
    a.size = live.version.size;
    a.mtimeMs = live.version.mtimeMs;
    a.ctimeMs = live.version.ctimeMs;
    return a;
  }

  #node(ino: number): Node {
    const n = this.#tree.get(ino);
    if (!n) throw new FsError(Errno.ENOENT);
    return n;
  }

  /** See {@link FuseOperations.lookup}. */
  async lookup(parent: number, name: string): Promise<Entry | null> {
    if (parent === INO.playlists) await this.#tree.ensureLoaded();
    const n = this.#tree.lookup(parent, name);
    if (n) {
      if (n.kind === "cover" && n.embedded) await this.#measure(n);
      // Counted like the kernel counts it: a query directory looked up is held until forgotten.
      if (parent === INO.search && n.kind === "dir") this.#holdSearchDir(name, n.ino);
      return { attr: this.#attr(n) };
    }
    if (parent !== INO.search || !this.#opts.search) return null;
    if (encoder.encode(name).length > SEARCH_QUERY_MAX_BYTES) throw new FsError(Errno.ENAMETOOLONG);
    const dir = await this.#searchDir(name);
    // Short TTLs: the same query may answer differently as the library changes.
    return { attr: this.#tree.attr(dir), entryTtlMs: 5000, attrTtlMs: 5000 };
  }

  async #searchDir(query: string): Promise<Node> {
    // Query folders link into the tree in memory: while library.db's rows are served, the
    // first query builds it.
    await this.#tree.ensureLoaded();
    const ids = await this.#opts.search!(query, SEARCH_RESULTS_MAX);
    const { node, invalidations } = this.#tree.setSearchResults(query, ids);
    const dropped = this.#holdSearchDir(query, node.ino);
    const all = dropped.length ? [...invalidations, ...dropped] : invalidations;
    if (all.length) this.#opts.invalidate?.(all);
    return node;
  }

  /**
   * Marks the query directory `ino` as held by the kernel and most recently used, then drops
   * the oldest ones past the kept window: at once when the kernel does not hold them, else
   * asks the kernel to let go of their entry and drops them when it forgets them.
   */
  #holdSearchDir(query: string, ino: number): Invalidation[] {
    this.#searchHeld.add(ino);
    this.#searchOverflow.delete(ino);
    this.#searchDirs.delete(query);
    this.#searchDirs.set(query, ino);
    const out: Invalidation[] = [];
    for (const [oldest, oldIno] of this.#searchDirs) {
      if (this.#searchDirs.size <= SEARCH_DIRS_KEPT) break;
      this.#searchDirs.delete(oldest);
      if (this.#searchHeld.has(oldIno)) {
        this.#searchOverflow.set(oldIno, oldest);
        out.push({ kind: "entry", parent: INO.search, name: oldest });
      } else {
        out.push(...this.#tree.removeSearch(oldest));
      }
    }
    return out;
  }

  /** See {@link FuseOperations.forget}: a query directory the kernel let go may be dropped. */
  forget(ino: number): void {
    if (!this.#searchHeld.delete(ino)) return;
    const query = this.#searchOverflow.get(ino);
    if (query === undefined) return;
    this.#searchOverflow.delete(ino);
    if (this.#searchDirs.has(query)) return;
    const inv = this.#tree.removeSearch(query);
    if (inv.length) this.#opts.invalidate?.(inv);
  }

  /**
   * Forget every query directory, when the kernel holds none of them (the tree is about to be
   * dropped from memory, and they go with it): true when there was nothing held.
   */
  releaseSearchDirs(): boolean {
    if (this.#searchHeld.size > 0) return false;
    this.#searchDirs.clear();
    this.#searchOverflow.clear();
    return true;
  }

  /** Query directories kept, and how many of them the kernel holds (for tests and status). */
  get searchDirs(): { kept: number; held: number } {
    return { kept: this.#searchDirs.size + this.#searchOverflow.size, held: this.#searchHeld.size };
  }

  /** See {@link FuseOperations.getattr}. */
  async getattr(ino: number): Promise<Attr> {
    const n = this.#node(ino);
    if (n.kind === "cover" && n.embedded) await this.#measure(n);
    return this.#attr(n);
  }

  /** See {@link FuseOperations.getattrNow}: the tree is in memory. */
  getattrNow(ino: number): Attr | undefined {
    const n = this.#tree.get(ino);
    return n && this.#attr(n);
  }

  /**
   * See {@link FuseOperations.shareAttrs}: the tree invalidates every inode whose attributes
   * change, except generated files (status.json), whose size and time are made on each call.
   */
  shareAttrs(ino: number): boolean {
    const n = this.#tree.get(ino);
    return n !== undefined && n.kind !== "generated";
  }

  /** See {@link FuseOperations.readdir}. */
  async readdir(ino: number): Promise<DirEntry[]> {
    // Playlists render from the tree in memory (what the rows serve has none).
    if (ino === INO.playlists) await this.#tree.ensureLoaded();
    const list = this.#tree.children(ino);
    if (!list) throw new FsError(this.#tree.get(ino) ? Errno.ENOTDIR : Errno.ENOENT);
    for (const e of list) {
      if (e.node.kind === "cover" && e.node.embedded) await this.#measure(e.node);
    }
    const out: DirEntry[] = new Array(list.length);
    for (let i = 0; i < list.length; i++) {
      out[i] = { name: list[i].name, attr: this.#attr(list[i].node) };
    }
    return out;
  }

  /** See {@link FuseOperations.open}. */
  async open(ino: number, _flags: number, _ctx: RequestContext): Promise<OpenResult> {
    const n = this.#node(ino);
    if (n.kind === "dir") throw new FsError(Errno.EISDIR);
    if (n.kind === "symlink") throw new FsError(Errno.ELOOP);
    if (n.kind === "generated") {
      // problems.txt lists the collisions the tree in memory knows.
      if (ino === INO.problems) await this.#tree.ensureLoaded();
      const fh = this.#nextFh++;
      this.#handles.set(fh, { kind: "mem", data: this.#tree.content(n) });
      return { fh, directIo: true };
    }
    if (n.kind === "cover" && n.embedded) {
      // Extracted per open: one picture in memory while it is read, none kept after.
      const data = await this.#picture(n);
      const fh = this.#nextFh++;
      this.#handles.set(fh, { kind: "mem", data });
      return { fh, keepCache: true };
    }
    const fh = this.#nextFh++;
    const path = this.#tree.sourcePath(n);
    const originId = n.kind === "track" ? n.track.originId : n.cover.originId;
    if (n.kind === "track") {
      const file = this.#cachedFile(n, path);
      if (this.#opts.cache?.routes(file.originId)) return await this.#openCached(n, fh, file);
    }
    if (this.#opts.healthy && !this.#opts.healthy(originId)) {
      throw new FsError(Errno.EIO, `origin of ${path} is unreachable`);
    }
    let src;
    try {
      src = await this.#opener.open(path, String(originId));
    } catch (e) {
      if (e instanceof SourceOpenError && e.libraryChanged) {
        log.warn("{reason}; answering {errno}", { reason: e.message, errno: e.errno });
        this.#opts.onSourceFault?.({ originId, path, reason: e.message });
      }
      throw e;
    }
    const rec = recordOf(n);
    let live = this.#live.get(ino);
    if (!live || live.rec !== rec) {
      if (!live) this.#live.set(ino, live = { ino, rec, handles: new Set(), dirty: false });
      live.rec = rec;
      live.version = undefined;
    }
    const version: SourceVersion = {
      size: src.size,
      mtimeMs: src.mtimeMs,
      ctimeMs: src.ctimeMs,
      ino: src.ino,
    };
    if (!sameVersion(live.version ?? rec as Partial<SourceVersion>, version)) {
      // Another version than the kernel knows: it must see the new size before the first read.
      live.version = version;
      live.dirty = true;
      log.info("Source {path} changed since it was scanned; serving the new version", { path });
      await this.#opts.invalidateAttr?.(ino).catch(() => {});
      this.#opts.onSourceChanged?.(originId, path);
    }
    let older = false;
    for (const h of live.handles) if (!sameVersion(h.version, version)) older = true;
    const h: FdHandle = {
      kind: "fd",
      fd: src.fd,
      size: src.size,
      path,
      version,
      nowait: src.nowaitSafe,
      live,
    };
    live.handles.add(h);
    this.#handles.set(fh, h);
    if (older) {
      // A handle of an older version is still reading, through the same page cache: this one
      // reads around it, so neither sees the other's bytes.
      return { fh, directIo: true, backingFd: src.fd, backingVersion: versionKey(version) };
    }
    if (live.dirty) {
      // Open without KEEP_CACHE: the kernel drops the pages of the older version.
      live.dirty = false;
      await this.#opts.invalidateAttr?.(ino).catch(() => {});
      return { fh, backingFd: src.fd, backingVersion: versionKey(version) };
    }
    return { fh, keepCache: true, backingFd: src.fd, backingVersion: versionKey(version) };
  }

  /**
   * An open through the chunk cache. While the origin answers, a stat (bounded) tells whether
   * the source is still the version the tree knows: if not, this open reads the new version
   * (its own cache key) with its size, and the kernel is told first. A dead or slow origin
   * serves what is cached for the known version.
   */
  async #openCached(n: TrackNode, fh: number, file: CachedFile): Promise<OpenResult> {
    const healthy = !this.#opts.healthy || this.#opts.healthy(file.originId);
    const st = healthy && !this.#statStuck.has(file.originId)
      ? await this.#statWithin(file.path, file.originId, 1000)
      : undefined;
    const rec = n.track;
    let live = this.#live.get(n.ino);
    if (live && live.rec !== rec) {
      live.rec = rec;
      live.version = undefined;
    }
    const current: Partial<SourceVersion> = live?.version ?? rec;
    let changed = false;
    if (st?.isFile) {
      const version: SourceVersion = {
        size: st.size,
        mtimeMs: st.mtime?.getTime() ?? 0,
        ctimeMs: st.ctime?.getTime() ?? 0,
        ino: st.ino ?? 0,
      };
      if (!sameVersion(current, version)) {
        changed = true;
        if (!live) {
          this.#live.set(n.ino, live = { ino: n.ino, rec, handles: new Set(), dirty: false });
        }
        live.version = version;
        log.info("Source {path} changed since it was scanned; serving the new version", {
          path: file.path,
        });
        await this.#opts.invalidateAttr?.(n.ino).catch(() => {});
        this.#opts.onSourceChanged?.(file.originId, file.path);
      }
    }
    const v = live?.version;
    const opened = v
      ? { ...file, size: v.size, mtimeMs: v.mtimeMs, ctimeMs: v.ctimeMs, ino: v.ino }
      : file;
    this.#handles.set(fh, { kind: "cache", file: opened });
    this.#opts.cache!.opened?.(opened);
    // A new version: open without KEEP_CACHE, so the kernel drops the old version's pages.
    return changed ? { fh } : { fh, keepCache: true };
  }

  /**
   * `Deno.stat` of `path`, or undefined when it fails or takes longer than `ms`. A stat that
   * timed out marks its origin until it returns: opens then serve the cache without waiting.
   */
  async #statWithin(path: string, originId: number, ms: number) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stat = Deno.stat(path).catch(() => undefined);
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), ms));
    try {
      const got = await Promise.race([stat, late]);
      if (got !== "late") return got;
      this.#statStuck.set(originId, (this.#statStuck.get(originId) ?? 0) + 1);
      stat.finally(() => {
        const n = (this.#statStuck.get(originId) ?? 1) - 1;
        if (n > 0) this.#statStuck.set(originId, n);
        else this.#statStuck.delete(originId);
      });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  #cachedFile(n: TrackNode, path: string): CachedFile {
    const t = n.track;
    return {
      originId: t.originId,
      id: t.id,
      size: t.size,
      mtimeMs: t.mtimeMs,
      ctimeMs: t.ctimeMs,
      ino: t.ino,
      path,
    };
  }

  /** See {@link FuseOperations.read}. */
  async read(_ino: number, fh: number, offset: number, dst: Uint8Array): Promise<number> {
    const h = this.#handles.get(fh);
    if (!h) throw new FsError(Errno.EBADF);
    if (h.kind === "mem") {
      return copyRange(h.data, offset, dst);
    }
    if (h.kind === "cache") {
      return await this.#opts.cache!.read(h.file, offset, dst).catch(cacheReadErrno);
    }
    const want = Math.max(0, Math.min(dst.length, h.size - offset));
    // One byte past the version's end, when there is room: a source that grew shows too.
    const ask = want < dst.length ? want + 1 : want;
    const n = await preadAsync(h.fd, ask < dst.length ? dst.subarray(0, ask) : dst, offset);
    if (n < 0) throw new FsError(Errno.EIO, `Cannot read ${h.path}`);
    if (n !== want) {
      // The source changed size under this handle: never pass off a mix as the file.
      log.warn("Source {path} changed size while open ({how}); answering EIO", {
        path: h.path,
        how: n < want ? "shorter" : "longer",
      });
      throw new FsError(Errno.EIO, `${h.path} changed size`);
    }
    return n;
  }

  /** See {@link FuseOperations.readNow}: snapshots and page-cached source bytes only. */
  readNow(_ino: number, fh: number, offset: number, dst: Uint8Array): number | undefined {
    const h = this.#handles.get(fh);
    if (!h || h.kind === "cache") return undefined;
    if (h.kind === "mem") {
      return copyRange(h.data, offset, dst);
    }
    if (!h.nowait) return undefined;
    const want = Math.max(0, Math.min(dst.length, h.size - offset));
    const ask = want < dst.length ? want + 1 : want;
    const n = preadCached(h.fd, ask < dst.length ? dst.subarray(0, ask) : dst, offset);
    // Anything else (not cached, or the source changed size) takes the async path, which reports.
    return n === want ? n : undefined;
  }

  /** See {@link FuseOperations.release}. */
  release(_ino: number, fh: number): Promise<void> {
    const h = this.#handles.get(fh);
    this.#handles.delete(fh);
    if (h?.kind === "fd") {
      this.#opener.close(h.fd);
      h.live.handles.delete(h);
      if (h.live.handles.size === 0 && !h.live.version && !h.live.dirty) {
        this.#live.delete(h.live.ino);
      }
    }
    return Promise.resolve();
  }

  /** See {@link FuseOperations.readlink}. */
  readlink(ino: number): Promise<string> {
    const n = this.#node(ino);
    if (n.kind !== "symlink") return Promise.reject(new FsError(Errno.EINVAL));
    return Promise.resolve(n.target);
  }

  /** See {@link FuseOperations.statfs}. */
  statfs(): Promise<StatFs> {
    const s = this.#tree.stats();
    return Promise.resolve({
      blocks: 0,
      bfree: 0,
      bavail: 0,
      files: s.tracks + s.dirs + s.covers,
      ffree: 0,
      bsize: 4096,
      namelen: 255,
      frsize: 4096,
    });
  }

  /**
   * See {@link FuseOperations.getxattr}: `user.musicfs.source` names the source file, to root
   * and to the source's owner only (a path can tell more than the file: EACCES to others).
   */
  getxattr(ino: number, name: string, ctx: RequestContext): Promise<Uint8Array | null> {
    const n = this.#node(ino);
    if (n.kind !== "track" && n.kind !== "cover") return Promise.resolve(null);
    if (name !== (n.kind === "cover" && n.embedded ? EMBEDDED_XATTR : SOURCE_XATTR)) {
      return Promise.resolve(null);
    }
    if (!this.#mayKnowSource(n, ctx)) throw new FsError(Errno.EACCES);
    return Promise.resolve(encoder.encode(this.#tree.sourcePath(n)));
  }

  /** See {@link FuseOperations.listxattr}: the source xattr is listed to whom may read it. */
  listxattr(ino: number, ctx: RequestContext): Promise<string[]> {
    const n = this.#node(ino);
    return Promise.resolve(
      (n.kind === "track" || n.kind === "cover") && this.#mayKnowSource(n, ctx)
        ? [n.kind === "cover" && n.embedded ? EMBEDDED_XATTR : SOURCE_XATTR]
        : [],
    );
  }

  /** Root, or the owner the node shows (the source's with --allow-other, else ours). */
  #mayKnowSource(n: Node, ctx: RequestContext): boolean {
    return ctx.uid === 0 || ctx.uid === this.#tree.access(n).uid;
  }

  /** Close every source file still open (at shutdown). */
  closeAll(): void {
    for (const h of this.#handles.values()) if (h.kind === "fd") this.#opener.closeNow(h.fd);
    this.#handles.clear();
    this.#live.clear();
  }

  /** Source opens stuck past their deadline (for status). */
  get stuckOpens(): number {
    return this.#opener.stuck;
  }

  /** Open file handles (for status). */
  get openFiles(): number {
    return this.#handles.size;
  }
}

/** The tree record behind a track or cover node (its identity changes when the tree updates it). */
function recordOf(n: Node): object {
  return n.kind === "track" ? n.track : (n as CoverNode).cover;
}

function versionKey(v: SourceVersion): string {
  return `${v.ino}:${v.size}:${v.mtimeMs}:${v.ctimeMs}`;
}

// The chunk cache throws its own errors (CasReadError, RangeError); the kernel gets an errno.
function cacheReadErrno(e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  throw new FsError(e instanceof RangeError ? Errno.EINVAL : Errno.EIO, msg, { cause: e });
}
