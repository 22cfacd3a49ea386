/**
 * A small in-memory filesystem that proves the FUSE layer end to end (tests, the bench and
 * `musicfs mount --demo`). Files hold bytes in memory or point at a real file (served with
 * pread, or by the kernel through passthrough). Faults can be injected per path.
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
  type RequestContext,
  S_IFDIR,
  S_IFLNK,
  S_IFREG,
  type StatFs,
} from "./ops.ts";
import { closeFd, openReadOnly, preadAsync, preadCached } from "../sys/libc.ts";

/** A fault injected on reads of one path. */
export type DemoFault = "throw" | "hang" | "errno-enoent";

type Node =
  | { kind: "dir"; attr: Attr; children: Map<string, Node> }
  | { kind: "mem"; attr: Attr; data: Uint8Array }
  | { kind: "source"; attr: Attr; path: string }
  | { kind: "symlink"; attr: Attr; target: string };

/** An in-memory tree served through {@link FuseOperations}. */
export class DemoFs implements FuseOperations {
  #nodes = new Map<number, Node>();
  #nextIno = 2;
  #uid: number;
  #gid: number;
  #xattrs = new Map<number, Map<string, Uint8Array>>();
  #faults = new Map<number, DemoFault>();
  #hung: (() => void)[] = [];
  #fds = new Map<number, number>();
  #nextFh = 1;
  #now = Date.now();
  /** Inodes whose lookup count reached zero (seen through FORGET). */
  readonly forgotten = new Set<number>();

  /** An empty root owned by `uid`/`gid`; every time stamp is `nowMs` (default: now). */
  constructor(opts: { uid?: number; gid?: number; nowMs?: number } = {}) {
    this.#uid = opts.uid ?? Deno.uid() ?? 0;
    this.#gid = opts.gid ?? Deno.gid() ?? 0;
    this.#now = opts.nowMs ?? this.#now;
    const root = this.#attr(1, S_IFDIR | 0o555, 0);
    root.nlink = 2;
    this.#nodes.set(1, { kind: "dir", attr: root, children: new Map() });
  }

  #attr(ino: number, mode: number, size: number): Attr {
    return { ino, mode, size, nlink: 1, uid: this.#uid, gid: this.#gid, mtimeMs: this.#now };
  }

  #parentOf(path: string, create: boolean): { dir: Node & { kind: "dir" }; name: string } {
    const parts = path.split("/").filter(Boolean);
    const name = parts.pop();
    if (!name) throw new Error(`Invalid demo path: ${path}`);
    let dir = this.#nodes.get(1) as Node & { kind: "dir" };
    for (const p of parts) {
      let next = dir.children.get(p);
      if (!next && create) {
        next = this.#add(dir, p, { kind: "dir", children: new Map() }, S_IFDIR | 0o555, 0);
      }
      if (!next || next.kind !== "dir") throw new Error(`Not a directory in demo path: ${path}`);
      dir = next;
    }
    return { dir, name };
  }

  #add(
    dir: Node & { kind: "dir" },
    name: string,
    partial: Omit<Node, "attr"> & Record<string, unknown>,
    mode: number,
    size: number,
  ): Node {
    const ino = this.#nextIno++;
    const node = { ...partial, attr: this.#attr(ino, mode, size) } as Node;
    dir.children.set(name, node);
    if (node.kind === "dir") dir.attr.nlink++;
    this.#nodes.set(ino, node);
    return node;
  }

  /** Add a directory (and its parents); returns its inode. */
  addDir(path: string): number {
    const { dir, name } = this.#parentOf(path, true);
    const existing = dir.children.get(name);
    if (existing) return existing.attr.ino;
    const d = this.#add(dir, name, { kind: "dir", children: new Map() }, S_IFDIR | 0o555, 0);
    d.attr.nlink = 2;
    return d.attr.ino;
  }

  /** Add a file holding `data`; returns its inode. */
  addFile(path: string, data: Uint8Array | string): number {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const { dir, name } = this.#parentOf(path, true);
    return this.#add(dir, name, { kind: "mem", data: bytes }, S_IFREG | 0o444, bytes.length).attr
      .ino;
  }

  /** Add a file whose content is the real file `source` (read with pread or passthrough). */
  addSource(path: string, source: string): number {
    const st = Deno.statSync(source);
    const { dir, name } = this.#parentOf(path, true);
    return this.#add(dir, name, { kind: "source", path: source }, S_IFREG | 0o444, st.size).attr
      .ino;
  }

  /** Add a symbolic link to `target`; returns its inode. */
  addSymlink(path: string, target: string): number {
    const { dir, name } = this.#parentOf(path, true);
    const size = new TextEncoder().encode(target).length;
    return this.#add(dir, name, { kind: "symlink", target }, S_IFLNK | 0o777, size).attr.ino;
  }

  /** Set an extended attribute on the node at `ino`. */
  setXattr(ino: number, name: string, value: string): void {
    let m = this.#xattrs.get(ino);
    if (!m) this.#xattrs.set(ino, m = new Map());
    m.set(name, new TextEncoder().encode(value));
  }

  /** Make reads (and lookups) of `ino` fail or hang. */
  injectFault(ino: number, fault: DemoFault): void {
    this.#faults.set(ino, fault);
  }

  /** Let every hung request finish (with EIO). */
  releaseHung(): void {
    for (const r of this.#hung.splice(0)) r();
  }

  #get(ino: number): Node {
    const n = this.#nodes.get(ino);
    if (!n) throw new FsError(Errno.ENOENT);
    return n;
  }

  async #fault(ino: number, ctx: RequestContext): Promise<void> {
    const f = this.#faults.get(ino);
    if (!f) return;
    if (f === "throw") throw new Error("injected fault");
    if (f === "errno-enoent") throw new FsError(Errno.ENOENT);
    await new Promise<void>((resolve) => {
      this.#hung.push(resolve);
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    throw new FsError(Errno.EIO, "hung request released");
  }

  /** See {@link FuseOperations.lookup}. */
  lookup(parent: number, name: string): Promise<Entry | null> {
    const dir = this.#get(parent);
    if (dir.kind !== "dir") return Promise.reject(new FsError(Errno.ENOTDIR));
    const n = dir.children.get(name);
    return Promise.resolve(n ? { attr: n.attr } : null);
  }

  /** See {@link FuseOperations.getattr}. */
  getattr(ino: number): Promise<Attr> {
    return Promise.resolve(this.#get(ino).attr);
  }

  /** See {@link FuseOperations.shareAttrs}: attributes never change once a node is added. */
  shareAttrs(): boolean {
    return true;
  }

  /** See {@link FuseOperations.getattrNow}. */
  getattrNow(ino: number): Attr | undefined {
    return this.#nodes.get(ino)?.attr;
  }

  /** See {@link FuseOperations.readdir}. */
  readdir(ino: number): Promise<DirEntry[]> {
    const dir = this.#get(ino);
    if (dir.kind !== "dir") return Promise.reject(new FsError(Errno.ENOTDIR));
    return Promise.resolve([...dir.children].map(([name, n]) => ({ name, attr: n.attr })));
  }

  /** See {@link FuseOperations.open}. */
  async open(ino: number, _flags: number, ctx: RequestContext): Promise<OpenResult> {
    const n = this.#get(ino);
    if (n.kind === "dir") throw new FsError(Errno.EISDIR);
    if (this.#faults.get(ino) === "hang") await this.#fault(ino, ctx);
    if (n.kind !== "source") return { keepCache: true };
    const fd = openReadOnly(n.path);
    const fh = this.#nextFh++;
    this.#fds.set(fh, fd);
    return { fh, keepCache: true, backingFd: fd };
  }

  /** See {@link FuseOperations.read}. */
  async read(
    ino: number,
    fh: number,
    offset: number,
    dst: Uint8Array,
    ctx: RequestContext,
  ): Promise<number> {
    await this.#fault(ino, ctx);
    const n = this.#get(ino);
    if (n.kind === "mem") {
      return copyRange(n.data, offset, dst);
    }
    if (n.kind !== "source") throw new FsError(Errno.EINVAL);
    const fd = this.#fds.get(fh);
    if (fd === undefined) throw new FsError(Errno.EBADF);
    const got = await preadAsync(fd, dst, offset);
    if (got < 0) throw new FsError(Errno.EIO, `pread of ${n.path} failed`);
    return got;
  }

  /** See {@link FuseOperations.readNow}: memory and page-cached source bytes only. */
  readNow(ino: number, fh: number, offset: number, dst: Uint8Array): number | undefined {
    if (this.#faults.has(ino)) return undefined;
    const n = this.#nodes.get(ino);
    if (n?.kind === "mem") {
      return copyRange(n.data, offset, dst);
    }
    const fd = this.#fds.get(fh);
    if (n?.kind !== "source" || fd === undefined) return undefined;
    const want = Math.max(0, Math.min(dst.length, n.attr.size - offset));
    const got = preadCached(fd, want < dst.length ? dst.subarray(0, want) : dst, offset);
    return got === want ? got : undefined;
  }

  /** See {@link FuseOperations.release}. */
  release(_ino: number, fh: number): Promise<void> {
    const fd = this.#fds.get(fh);
    if (fd !== undefined) {
      this.#fds.delete(fh);
      closeFd(fd);
    }
    return Promise.resolve();
  }

  /** See {@link FuseOperations.readlink}. */
  readlink(ino: number): Promise<string> {
    const n = this.#get(ino);
    if (n.kind !== "symlink") return Promise.reject(new FsError(Errno.EINVAL));
    return Promise.resolve(n.target);
  }

  /** See {@link FuseOperations.statfs}. */
  statfs(): Promise<StatFs> {
    let bytes = 0;
    for (const n of this.#nodes.values()) bytes += n.attr.size;
    const blocks = Math.ceil(bytes / 4096);
    return Promise.resolve({
      blocks,
      bfree: 0,
      bavail: 0,
      files: this.#nodes.size,
      ffree: 0,
      bsize: 4096,
      namelen: 255,
      frsize: 4096,
    });
  }

  /** See {@link FuseOperations.getxattr}. */
  getxattr(ino: number, name: string): Promise<Uint8Array | null> {
    this.#get(ino);
    return Promise.resolve(this.#xattrs.get(ino)?.get(name) ?? null);
  }

  /** See {@link FuseOperations.listxattr}. */
  listxattr(ino: number): Promise<string[]> {
    this.#get(ino);
    return Promise.resolve([...(this.#xattrs.get(ino)?.keys() ?? [])]);
  }

  /** See {@link FuseOperations.forget}. */
  forget(ino: number): void {
    this.forgotten.add(ino);
  }

  /** Close every fd still open (after an unmount that skipped releases). */
  closeAll(): void {
    for (const fd of this.#fds.values()) closeFd(fd);
    this.#fds.clear();
  }
}
