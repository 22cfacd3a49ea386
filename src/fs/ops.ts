/**
 * The FUSE operations of musicfs: the virtual tree served through src/fuse. Track and cover
 * files read the source bytes (kernel passthrough when the session has it, else pread, or
 * through the chunk cache for network origins); generated files serve a snapshot per open;
 * `/.search/<query>` directories are made on lookup from the search index.
 */
import {
  type Attr,
  closeFd,
  copyRange,
  type DirEntry,
  type Entry,
  Errno,
  FsError,
  type FuseOperations,
  openReadOnly,
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
  /** Absolute path of the source file. */
  path: string;
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
  /** Reads the embedded front picture of an audio file (default: music-metadata's). */
  readPicture?: (path: string) => Promise<Uint8Array | null>;
}

type Handle =
  | { kind: "fd"; fd: number; size: number; path: string }
  | { kind: "mem"; data: Uint8Array }
  | { kind: "cache"; file: CachedFile };

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
  /** Embedded covers being measured, so concurrent lookups extract once. */
  #measuring = new Map<number, Promise<void>>();
  readonly #readPicture: (path: string) => Promise<Uint8Array | null>;

  /** Serve `opts.tree`. */
  constructor(opts: MusicOpsOptions) {
    this.#tree = opts.tree;
    this.#opts = opts;
    this.#readPicture = opts.readPicture ??
      (async (path) => (await readFrontPicture(path))?.data ?? null);
  }

  /** The bytes of an embedded cover, read now (never kept beyond the open file). */
  async #picture(n: CoverNode): Promise<Uint8Array> {
    const path = this.#tree.sourcePath(n);
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

  #node(ino: number): Node {
    const n = this.#tree.get(ino);
    if (!n) throw new FsError(Errno.ENOENT);
    return n;
  }

  /** See {@link FuseOperations.lookup}. */
  async lookup(parent: number, name: string): Promise<Entry | null> {
    const n = this.#tree.lookup(parent, name);
    if (n) {
      if (n.kind === "cover" && n.embedded) await this.#measure(n);
      // Counted like the kernel counts it: a query directory looked up is held until forgotten.
      if (parent === INO.search && n.kind === "dir") this.#holdSearchDir(name, n.ino);
      return { attr: this.#tree.attr(n) };
    }
    if (parent !== INO.search || !this.#opts.search) return null;
    if (encoder.encode(name).length > SEARCH_QUERY_MAX_BYTES) throw new FsError(Errno.ENAMETOOLONG);
    const dir = await this.#searchDir(name);
    // Short TTLs: the same query may answer differently as the library changes.
    return { attr: this.#tree.attr(dir), entryTtlMs: 5000, attrTtlMs: 5000 };
  }

  async #searchDir(query: string): Promise<Node> {
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

  /** Query directories kept, and how many of them the kernel holds (for tests and status). */
  get searchDirs(): { kept: number; held: number } {
    return { kept: this.#searchDirs.size + this.#searchOverflow.size, held: this.#searchHeld.size };
  }

  /** See {@link FuseOperations.getattr}. */
  async getattr(ino: number): Promise<Attr> {
    const n = this.#node(ino);
    if (n.kind === "cover" && n.embedded) await this.#measure(n);
    return this.#tree.attr(n);
  }

  /** See {@link FuseOperations.getattrNow}: the tree is in memory. */
  getattrNow(ino: number): Attr | undefined {
    const n = this.#tree.get(ino);
    return n && this.#tree.attr(n);
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
    const list = this.#tree.children(ino);
    if (!list) throw new FsError(this.#tree.get(ino) ? Errno.ENOTDIR : Errno.ENOENT);
    for (const e of list) {
      if (e.node.kind === "cover" && e.node.embedded) await this.#measure(e.node);
    }
    const out: DirEntry[] = new Array(list.length);
    for (let i = 0; i < list.length; i++) {
      out[i] = { name: list[i].name, attr: this.#tree.attr(list[i].node) };
    }
    return out;
  }

  /** See {@link FuseOperations.open}. */
  async open(ino: number, _flags: number, _ctx: RequestContext): Promise<OpenResult> {
    const n = this.#node(ino);
    if (n.kind === "dir") throw new FsError(Errno.EISDIR);
    if (n.kind === "symlink") throw new FsError(Errno.ELOOP);
    if (n.kind === "generated") {
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
    const size = this.#tree.attr(n).size;
    if (n.kind === "track") {
      const file = this.#cachedFile(n, path);
      if (this.#opts.cache?.routes(file.originId)) {
        this.#handles.set(fh, { kind: "cache", file });
        this.#opts.cache.opened?.(file);
        return { fh, keepCache: true };
      }
      if (this.#opts.healthy && !this.#opts.healthy(file.originId)) {
        throw new FsError(Errno.EIO, `origin of ${path} is unreachable`);
      }
    }
    // A local open(2) costs microseconds; network origins never get here (cache route).
    const fd = openReadOnly(path);
    this.#handles.set(fh, { kind: "fd", fd, size, path });
    return { fh, keepCache: true, backingFd: fd };
  }

  #cachedFile(n: TrackNode, path: string): CachedFile {
    const t = n.track;
    return { originId: t.originId, id: t.id, size: t.size, mtimeMs: t.mtimeMs, path };
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
    const n = await preadAsync(h.fd, want < dst.length ? dst.subarray(0, want) : dst, offset);
    if (n < 0) throw new FsError(Errno.EIO, `Cannot read ${h.path}`);
    if (n < want) {
      // The source shrank since it was scanned: never pass off short data as the file.
      log.warn("Source {path} is shorter than recorded; answering EIO", { path: h.path });
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
    const want = Math.max(0, Math.min(dst.length, h.size - offset));
    const n = preadCached(h.fd, want < dst.length ? dst.subarray(0, want) : dst, offset);
    // Anything short (not cached, or the source shrank) takes the async path, which reports.
    return n === want ? n : undefined;
  }

  /** See {@link FuseOperations.release}. */
  release(_ino: number, fh: number): Promise<void> {
    const h = this.#handles.get(fh);
    this.#handles.delete(fh);
    if (h?.kind === "fd") closeFd(h.fd);
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
    for (const h of this.#handles.values()) if (h.kind === "fd") closeFd(h.fd);
    this.#handles.clear();
  }

  /** Open file handles (for status). */
  get openFiles(): number {
    return this.#handles.size;
  }
}

// The chunk cache throws its own errors (CasReadError, RangeError); the kernel gets an errno.
function cacheReadErrno(e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  throw new FsError(e instanceof RangeError ? Errno.EINVAL : Errno.EIO, msg, { cause: e });
}
