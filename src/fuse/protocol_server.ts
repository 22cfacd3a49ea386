/**
 * The FUSE protocol without a device (go-fuse's protocol-server.go): {@link ProtocolServer.handle}
 * takes one request's bytes and answers through a reply sink, so everything between the kernel's
 * bytes and the filesystem's handlers runs, and is tested, with no /dev/fuse. It owns what the
 * protocol makes stateful: the negotiated INIT, lookup counts, directory snapshots, passthrough
 * backing ids and the requests in flight (for INTERRUPT).
 *
 * Each request is decoded at once (the caller may reuse its buffer as soon as `handle` returns)
 * and its handler runs without being awaited: a slow handler never delays the others. Replies
 * other than READ data are encoded into one scratch buffer and sent synchronously (no await in
 * between, so the buffer is never shared). READ data goes into pooled buffers that the
 * filesystem fills directly (e.g. pread into the reply).
 */
import {
  type Attr,
  type DirEntry,
  type FuseOperations,
  type RequestContext,
  S_IFDIR,
} from "./ops.ts";
import { Errno, toErrno } from "../sys/errno.ts";
import { Op, OPCODES, opName } from "./opcodes.ts";
import {
  align8,
  FOPEN_CACHE_DIR,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FOPEN_NOFLUSH,
  FOPEN_PASSTHROUGH,
  FuseAttrOut,
  FuseDirent,
  FuseEntryOut,
  FuseGetxattrOut,
  FuseInHeader,
  FuseInitOut,
  FuseKstatfs,
  FuseOpenOut,
  FuseOutHeader,
  type InHeader,
  INIT2_PASSTHROUGH,
  InitFlag,
  type InitIn,
  type ReadIn,
  readInHeader,
  writeAttrOut,
  writeDirent,
  writeEntryOut,
  writeInitOut,
  writeOpenOut,
  writeOutHeader,
  writeStatfs,
} from "./structs.ts";
import type { AttrShare } from "./attr_share.ts";
import { logger } from "../log/mod.ts";

const log = logger("fuse", "protocol");

const OUT = FuseOutHeader.SIZE;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
/** Protocol version we speak: 7.45. */
export const KERNEL_MAJOR = 7;
/** Minor version we speak. */
export const OUR_MINOR = 45;
/** Most a kernel caches attributes that change without an invalidation, ms. */
const VOLATILE_TTL_MS = 1000;
/** Listings kept for paging without OPENDIR (oldest dropped first). */
const MAX_INO_DIRS = 256;
/** FUSE_ROOT_ID: the kernel holds the root for as long as it is mounted. */
const ROOT_ID = 1;
/** Longest name the kernel sends, bytes (NAME_MAX). */
const NAME_MAX = 255;

/** Sends one reply: `len` bytes of `buf`; must be done with `buf` when it returns. */
export type ReplySink = (buf: Uint8Array<ArrayBuffer>, len: number) => void;

/** Kernel passthrough backing files (ioctls on the device, which this layer does not hold). */
export interface BackingFiles {
  /** Register `fd` as a backing file; the id (> 0), or <= 0 when refused. */
  open(fd: number): number;
  /** Release a backing id. */
  close(id: number): void;
}

/** How the server answers. */
export interface ProtocolOptions {
  /** Default TTL of name lookups in the kernel, ms. Default 1000. */
  entryTtlMs?: number;
  /** Default TTL of attributes in the kernel, ms. Default 1000. */
  attrTtlMs?: number;
  /** Let the kernel cache directory listings until invalidated. Default false. */
  cacheDirs?: boolean;
  /** Largest READ the kernel sends (and max_write), bytes. Default 1 MiB. */
  maxRead?: number;
  /** Offer passthrough in INIT; needs `backing`. Default false. */
  passthrough?: boolean;
  /** Opens and closes backing ids for passthrough. */
  backing?: BackingFiles;
  /** Where attributes sent to the kernel are shared with the reader thread (see AttrShare). */
  attrShare?: AttrShare;
  /** Called once INIT is answered. */
  onInit?: (init: InitIn) => void;
  /** Called when the kernel sends DESTROY (the connection is ending). */
  onDestroy?: () => void;
}

/** Counters of a protocol server. */
export interface ProtocolStats {
  /** Requests received. */
  requests: number;
  /** Requests answered EIO because a handler failed unexpectedly (not deliberate errnos). */
  errors: number;
  /** Requests that were malformed (short, truncated, bad names). */
  malformed: number;
  /** Requests being handled right now. */
  inflight: number;
  /** Whether reads of files opened with a `backingFd` are served by the kernel. */
  passthrough: boolean;
  /** Opens that asked for passthrough and were served in userspace because it failed. */
  passthroughFallbacks: number;
}

/** One decoded request, as handlers see it; the same object is reused for every request. */
export interface Request {
  /** The header. */
  h: InHeader;
  /** The request's bytes. */
  buf: Uint8Array;
  /** A view of `buf`. */
  v: DataView;
  /** Bytes after the header. */
  bodyLen: number;
  /** The NUL-terminated names after the fixed body, decoded. */
  names: string[];
}

class Ctx implements RequestContext {
  answered = false;
  ctrl?: AbortController;
  constructor(
    readonly unique: number,
    readonly opcode: number,
    readonly uid: number,
    readonly gid: number,
    readonly pid: number,
  ) {}
  get signal(): AbortSignal {
    return (this.ctrl ??= new AbortController()).signal;
  }
}

interface DirHandle {
  ino: number;
  entries: DirEntry[];
}

interface ReadSlot {
  buf: Uint8Array<ArrayBuffer>;
  view: DataView;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The FUSE protocol over a {@link FuseOperations}, without a device. */
export class ProtocolServer {
  #ops: FuseOperations;
  #send: ReplySink;
  #opts: ProtocolOptions;
  #entryTtl: number;
  #attrTtl: number;
  #maxRead: number;
  #out: Uint8Array<ArrayBuffer>;
  #outView: DataView;
  #readPool: ReadSlot[] = [];
  #req: Request = {
    h: { len: 0, opcode: 0, unique: 0, nodeid: 0, uid: 0, gid: 0, pid: 0 },
    buf: new Uint8Array(0),
    v: new DataView(new ArrayBuffer(0)),
    bodyLen: 0,
    names: [],
  };
  #pending = new Map<number, Ctx>();
  #lookups = new Map<number, number>();
  #parents = new Map<number, number>();
  #dirs = new Map<number, DirHandle>();
  #inoDirs = new Map<number, DirHandle>();
  #noOpendir = false;
  #nextDirFh = 1;
  #backing = new Map<number, { id: number; refs: number; version?: string }>();
  #passthrough = false;
  #minor = 0;
  #stats = { requests: 0, errors: 0, malformed: 0, passthroughFallbacks: 0 };
  /** Inodes whose passthrough open failed, with the count (each is logged once). */
  #backingFailures = new Map<number, number>();

  /** Serve `ops`, answering through `send`. */
  constructor(ops: FuseOperations, send: ReplySink, opts: ProtocolOptions = {}) {
    this.#ops = ops;
    this.#send = send;
    this.#opts = opts;
    this.#entryTtl = opts.entryTtlMs ?? 1000;
    this.#attrTtl = opts.attrTtlMs ?? 1000;
    this.#maxRead = opts.maxRead ?? 1 << 20;
    this.#out = new Uint8Array(OUT + Math.max(this.#maxRead, 8192));
    this.#outView = new DataView(this.#out.buffer);
  }

  /** Request counters. */
  get stats(): ProtocolStats {
    return { ...this.#stats, inflight: this.#pending.size, passthrough: this.#passthrough };
  }

  /** Whether reads of files with a backing fd are served by the kernel. */
  get passthrough(): boolean {
    return this.#passthrough;
  }

  /** The negotiated protocol minor version; 0 before INIT. */
  get minor(): number {
    return this.#minor;
  }

  /** Inodes the kernel holds references to, with their lookup counts (for tests). */
  get lookupCounts(): ReadonlyMap<number, number> {
    return this.#lookups;
  }

  /**
   * Whether an invalidation about `ino` (its attributes and data, or the names in it) could
   * matter to the kernel: false only when the kernel holds no reference to it (never looked up,
   * or forgotten) and no reply that could hand it over is on its way (no request in progress,
   * no directory listing being paged). The kernel ignores invalidations of inodes it does not
   * hold, so skipping those changes nothing; on a first scan nobody has looked yet, and that is
   * nearly every invalidation of the scan.
   */
  kernelMayHold(ino: number): boolean {
    return ino === ROOT_ID || this.#lookups.has(ino) || this.#pending.size > 0 ||
      this.#dirs.size > 0 || this.#inoDirs.size > 0;
  }

  /** Open directory handles (for tests). */
  get openDirs(): number {
    return this.#dirs.size + this.#inoDirs.size;
  }

  /**
   * Handle the request in `buf[0, len)` (`view`: a DataView of `buf`, when the caller keeps
   * one per buffer). Synchronous replies are sent before this returns;
   * the others when their handler finishes. Malformed requests get an error reply when their
   * unique id can be read (EINVAL for a bad length or name, ENOSYS for an unknown opcode),
   * and are dropped otherwise; nothing here throws.
   */
  handle(buf: Uint8Array, len = buf.length, view?: DataView): void {
    this.#stats.requests++;
    const r = this.#req;
    if (r.buf !== buf) {
      r.buf = buf;
      r.v = view ?? new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    if (len < FuseInHeader.SIZE) {
      this.#stats.malformed++;
      // A request too short for its header: answer it if its unique id is there at least.
      if (len >= FuseInHeader.unique + 8) {
        this.replyError(
          r.v.getUint32(FuseInHeader.unique, true) +
            r.v.getUint32(FuseInHeader.unique + 4, true) * 4294967296,
          Errno.EINVAL,
        );
      }
      return;
    }
    const h = readInHeader(r.v, r.h);
    const op = OPCODES[h.opcode];
    if (!op) {
      this.replyError(h.unique, Errno.ENOSYS);
      return;
    }
    r.bodyLen = len - FuseInHeader.SIZE;
    let err = 0;
    if (h.len !== len || r.bodyLen < op.inSize) err = Errno.EINVAL;
    else if (op.names) err = this.#decodeNames(r, op.inSize, op.names);
    if (err) {
      this.#stats.malformed++;
      log.debug("Malformed FUSE {op} request ({len} bytes, header says {hlen})", {
        op: op.name,
        len,
        hlen: h.len,
      });
      if (op.replies) this.replyError(h.unique, err);
      return;
    }
    try {
      op.handler(this, r);
    } catch (e) {
      // Handlers decode and dispatch; a throw here is a bug, answered EIO rather than a crash.
      this.#stats.errors++;
      log.error("FUSE {op} handler threw: {error}", { op: op.name, error: e });
      if (op.replies) this.replyError(h.unique, Errno.EIO);
    }
  }

  // Decode `count` NUL-terminated names after the fixed body into r.names; 0, or the errno
  // for a name missing its NUL, empty, longer than NAME_MAX or holding a '/' (EINVAL), or not
  // UTF-8 (the errno of a name that does not exist).
  #decodeNames(r: Request, inSize: number, count: number): number {
    r.names.length = 0;
    let start = FuseInHeader.SIZE + inSize;
    const end = FuseInHeader.SIZE + r.bodyLen;
    for (let i = 0; i < count; i++) {
      const nul = r.buf.indexOf(0, start);
      if (nul < 0 || nul >= end || nul === start) return Errno.EINVAL;
      if (nul - start > NAME_MAX) return Errno.ENAMETOOLONG;
      let s: string;
      try {
        s = decoder.decode(r.buf.subarray(start, nul));
      } catch {
        // Every name this layer serves is UTF-8, so these bytes name nothing.
        return r.h.opcode === Op.GETXATTR ? Errno.ENODATA : Errno.ENOENT;
      }
      if (s.includes("/")) return Errno.EINVAL;
      r.names.push(s);
      start = nul + 1;
    }
    return 0;
  }

  /** Abort what is in flight and release every backing id (the connection ended). */
  shutdown(): void {
    for (const ctx of this.#pending.values()) {
      ctx.answered = true;
      ctx.ctrl?.abort(new DOMException("connection ended", "AbortError"));
    }
    for (const { id } of this.#backing.values()) this.#opts.backing?.close(id);
    this.#backing.clear();
    this.#dirs.clear();
    this.#inoDirs.clear();
  }

  // -- replies -----------------------------------------------------------------------------

  /** Answer `unique` with an error (a positive errno). */
  replyError(unique: number, err: number, ctx?: Ctx): void {
    if (ctx) {
      if (ctx.answered) return;
      ctx.answered = true;
    }
    writeOutHeader(this.#outView, unique, OUT, err);
    this.#send(this.#out, OUT);
  }

  /** Answer `unique` with success and no body. */
  replyEmpty(unique: number): void {
    writeOutHeader(this.#outView, unique, OUT);
    this.#send(this.#out, OUT);
  }

  // Send `len` body bytes already written at #out[16..]; false if the request is gone.
  #replyOut(ctx: Ctx, len: number): boolean {
    if (ctx.answered) return false;
    ctx.answered = true;
    writeOutHeader(this.#outView, ctx.unique, OUT + len);
    this.#send(this.#out, OUT + len);
    return true;
  }

  #ctx(h: InHeader): Ctx {
    return new Ctx(h.unique, h.opcode, h.uid, h.gid, h.pid);
  }

  #track(ctx: Ctx, p: Promise<void>): void {
    this.#pending.set(ctx.unique, ctx);
    p.catch((e) => this.#fail(ctx, e)).finally(() => this.#pending.delete(ctx.unique));
  }

  #fail(ctx: Ctx, e: unknown): void {
    const code = toErrno(e);
    if (code === Errno.EIO) {
      this.#stats.errors++;
      const err = e as { message?: string; stack?: string };
      log.warn("FUSE request {opcode} failed: {error}", {
        opcode: opName(ctx.opcode),
        error: err?.message ?? String(e),
        stack: err?.stack,
      });
    }
    this.replyError(ctx.unique, code, ctx);
  }

  // Attributes that may change without an invalidation (shareAttrs says no) are cached by the
  // kernel for at most VOLATILE_TTL_MS, whatever the session's TTL.
  #attrTtlOf(ino: number): number {
    const share = this.#ops.shareAttrs;
    if (!share || this.#attrTtl <= VOLATILE_TTL_MS || share.call(this.#ops, ino)) {
      return this.#attrTtl;
    }
    return VOLATILE_TTL_MS;
  }

  // Offer attributes just sent to the kernel to the reader thread (see AttrShare).
  #share(ino: number, src: Uint8Array, off: number, ttlMs: number): void {
    const share = this.#opts.attrShare;
    if (share && this.#ops.shareAttrs?.(ino)) share.put(ino, src, off, ttlMs);
  }

  // -- handlers (called from the opcode table) ---------------------------------------------

  /** INIT: agree on a version and the capabilities both sides have. */
  init(h: InHeader, init: InitIn): void {
    if (init.major !== KERNEL_MAJOR) {
      log.error("Unsupported FUSE protocol {major}.{minor}", { ...init });
      return this.replyError(h.unique, Errno.EPROTO);
    }
    this.#minor = Math.min(init.minor, OUR_MINOR);
    const want = InitFlag.ASYNC_READ | InitFlag.AUTO_INVAL_DATA | InitFlag.DO_READDIRPLUS |
      InitFlag.READDIRPLUS_AUTO | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES |
      InitFlag.CACHE_SYMLINKS | InitFlag.INIT_EXT |
      // No OPENDIR/RELEASEDIR round trips; the kernel then caches every listing, so only
      // when listings are cached anyway (and the filesystem invalidates them).
      (this.#opts.cacheDirs ? InitFlag.NO_OPENDIR_SUPPORT : 0);
    this.#noOpendir = (init.flags & want & InitFlag.NO_OPENDIR_SUPPORT) !== 0;
    let flags2 = 0;
    if (this.#opts.passthrough && this.#opts.backing && init.flags2 & INIT2_PASSTHROUGH) {
      flags2 |= INIT2_PASSTHROUGH;
      this.#passthrough = true;
    }
    writeInitOut(this.#outView, OUT, {
      minor: this.#minor,
      maxReadahead: init.maxReadahead,
      flags: init.flags & want,
      flags2,
      maxBackground: 64,
      congestionThreshold: 48,
      maxWrite: this.#maxRead,
      maxPages: Math.ceil(this.#maxRead / 4096),
      maxStackDepth: this.#passthrough ? 1 : 0,
    });
    const size = this.#minor >= 23 ? FuseInitOut.SIZE : FuseInitOut.COMPAT_SIZE;
    writeOutHeader(this.#outView, h.unique, OUT + size);
    this.#send(this.#out, OUT + size);
    log.debug("FUSE {major}.{minor} initialised; passthrough {pt}", {
      major: init.major,
      minor: init.minor,
      pt: this.#passthrough,
    });
    this.#opts.onInit?.(init);
  }

  /** DESTROY: the connection is ending. */
  destroy(unique: number): void {
    this.replyEmpty(unique);
    this.#opts.onDestroy?.();
  }

  /** FORGET (and each entry of BATCH_FORGET): the kernel dropped `nlookup` references. */
  forget(ino: number, nlookup: number): void {
    const left = (this.#lookups.get(ino) ?? 0) - nlookup;
    if (left > 0) {
      this.#lookups.set(ino, left);
      return;
    }
    if (!this.#lookups.delete(ino)) return;
    this.#parents.delete(ino);
    this.#opts.attrShare?.delete(ino);
    this.#ops.forget?.(ino);
  }

  #counted(parent: number, attr: Attr): void {
    const ino = attr.ino;
    this.#lookups.set(ino, (this.#lookups.get(ino) ?? 0) + 1);
    if ((attr.mode & 0o170000) === S_IFDIR) this.#parents.set(ino, parent);
  }

  /** INTERRUPT: abort request `target` and answer it EINTR; EAGAIN when not seen yet. */
  interrupt(unique: number, target: number): void {
    const p = this.#pending.get(target);
    if (!p) {
      // Interrupts may overtake their request: the kernel resends on EAGAIN.
      return this.replyError(unique, Errno.EAGAIN);
    }
    p.ctrl?.abort(new DOMException("interrupted", "AbortError"));
    this.replyError(target, Errno.EINTR, p);
  }

  /** LOOKUP `name` in directory `h.nodeid`. */
  lookup(h: InHeader, name: string): void {
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#lookup(ctx, h.nodeid, name));
  }

  async #lookup(ctx: Ctx, parent: number, name: string): Promise<void> {
    const e = await this.#ops.lookup(parent, name, ctx);
    if (!e) return this.replyError(ctx.unique, Errno.ENOENT, ctx);
    writeEntryOut(
      this.#outView,
      OUT,
      e.attr,
      e.entryTtlMs ?? this.#entryTtl,
      e.attrTtlMs ?? this.#attrTtlOf(e.attr.ino),
    );
    if (this.#replyOut(ctx, FuseEntryOut.SIZE)) {
      this.#counted(parent, e.attr);
      this.#share(e.attr.ino, this.#out, OUT + FuseEntryOut.attr, this.#attrTtl);
    }
  }

  /** GETATTR of `h.nodeid`. */
  getattr(h: InHeader): void {
    const now = this.#ops.getattrNow?.(h.nodeid);
    if (now) {
      writeAttrOut(this.#outView, OUT, now, this.#attrTtlOf(h.nodeid));
      this.#share(h.nodeid, this.#out, OUT + FuseAttrOut.attr, this.#attrTtl);
      writeOutHeader(this.#outView, h.unique, OUT + FuseAttrOut.SIZE);
      return this.#send(this.#out, OUT + FuseAttrOut.SIZE);
    }
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#getattr(ctx, h.nodeid));
  }

  async #getattr(ctx: Ctx, ino: number): Promise<void> {
    const attr = await this.#ops.getattr(ino, ctx);
    writeAttrOut(this.#outView, OUT, attr, this.#attrTtlOf(ino));
    if (this.#replyOut(ctx, FuseAttrOut.SIZE)) {
      this.#share(ino, this.#out, OUT + FuseAttrOut.attr, this.#attrTtl);
    }
  }

  /** OPEN `h.nodeid` with open(2) `flags`; write access is EROFS. */
  open(h: InHeader, flags: number): void {
    if ((flags & O_ACCMODE) !== 0 || flags & O_TRUNC) return this.replyError(h.unique, Errno.EROFS);
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#open(ctx, h.nodeid, flags));
  }

  async #open(ctx: Ctx, ino: number, flags: number): Promise<void> {
    const r = await this.#ops.open(ino, flags, ctx);
    // Without NOFLUSH every close(2) waits for a FLUSH round trip; a process that closes a
    // file of its own mount synchronously (Deno's FsFile.close) would then deadlock itself.
    let openFlags = FOPEN_NOFLUSH;
    let backingId = 0;
    if (r.backingFd !== undefined && this.#passthrough) {
      const held = this.#backing.get(ino);
      if (held && held.version !== r.backingVersion) {
        // One backing file per inode while it is open: never serve this open the other one.
        log.warn(
          "Inode {ino} changed while an older version is open through passthrough; answering EIO " +
            "until it is closed",
          { ino },
        );
        await this.#ops.release?.(ino, r.fh ?? 0);
        return this.replyError(ctx.unique, Errno.EIO, ctx);
      }
      backingId = this.#acquireBacking(ino, r.backingFd, r.backingVersion);
      if (backingId > 0) openFlags |= FOPEN_PASSTHROUGH;
    }
    if (!backingId) {
      if (r.keepCache) openFlags |= FOPEN_KEEP_CACHE;
      if (r.directIo) openFlags |= FOPEN_DIRECT_IO;
    }
    writeOpenOut(this.#outView, OUT, r.fh ?? 0, openFlags, backingId);
    if (!this.#replyOut(ctx, FuseOpenOut.SIZE) && backingId) this.#releaseBacking(ino);
  }

  #acquireBacking(ino: number, fd: number, version?: string): number {
    const b = this.#backing.get(ino);
    if (b) {
      b.refs++;
      return b.id;
    }
    const id = this.#opts.backing!.open(fd);
    if (id <= 0) {
      // One odd source must not end passthrough for every other file: this open alone is
      // served in userspace, and each inode's failure is logged once.
      const seen = this.#backingFailures.get(ino) ?? 0;
      if (this.#backingFailures.size < 65536 || seen) this.#backingFailures.set(ino, seen + 1);
      this.#stats.passthroughFallbacks++;
      if (!seen) {
        log.warn("Kernel passthrough failed for inode {ino}; serving that open in userspace", {
          ino,
        });
      }
      return 0;
    }
    this.#backing.set(ino, { id, refs: 1, version });
    return id;
  }

  #releaseBacking(ino: number): void {
    const b = this.#backing.get(ino);
    if (!b) return;
    if (--b.refs > 0) return;
    this.#backing.delete(ino);
    this.#opts.backing?.close(b.id);
  }

  /** READ `r.size` bytes at `r.offset` of handle `r.fh`. */
  read(h: InHeader, r: ReadIn): void {
    const ino = h.nodeid;
    const size = Math.min(r.size, this.#maxRead);
    if (this.#ops.readNow) {
      // Served from memory or the page cache: reply at once, no thread-pool round trip.
      let n: number | undefined;
      try {
        n = this.#ops.readNow(ino, r.fh, r.offset, this.#out.subarray(OUT, OUT + size));
      } catch {
        n = undefined;
      }
      if (n !== undefined) {
        const len = OUT + Math.max(0, Math.min(n, size));
        writeOutHeader(this.#outView, h.unique, len);
        return this.#send(this.#out, len);
      }
    }
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#read(ctx, ino, r.fh, r.offset, size));
  }

  async #read(ctx: Ctx, ino: number, fh: number, offset: number, size: number): Promise<void> {
    const slot = this.#readPool.pop() ?? this.#newReadSlot();
    try {
      const n = await this.#ops.read(ino, fh, offset, slot.buf.subarray(OUT, OUT + size), ctx);
      if (ctx.answered) return;
      ctx.answered = true;
      const len = OUT + Math.max(0, Math.min(n, size));
      writeOutHeader(slot.view, ctx.unique, len);
      this.#send(slot.buf, len);
    } finally {
      if (this.#readPool.length < 16) this.#readPool.push(slot);
    }
  }

  #newReadSlot(): ReadSlot {
    const buf = new Uint8Array(OUT + this.#maxRead);
    return { buf, view: new DataView(buf.buffer) };
  }

  /** RELEASE handle `fh` of `h.nodeid`. */
  release(h: InHeader, fh: number): void {
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#release(ctx, h.nodeid, fh));
  }

  async #release(ctx: Ctx, ino: number, fh: number): Promise<void> {
    this.#releaseBacking(ino);
    try {
      await this.#ops.release?.(ino, fh);
    } finally {
      this.#replyOut(ctx, 0);
    }
  }

  /**
   * OPENDIR `h.nodeid`: take the listing snapshot READDIR pages through. With
   * NO_OPENDIR_SUPPORT, ENOSYS: the kernel opens directories itself from then on.
   */
  opendir(h: InHeader): void {
    if (this.#noOpendir) return this.replyError(h.unique, Errno.ENOSYS);
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#opendir(ctx, h.nodeid));
  }

  async #opendir(ctx: Ctx, ino: number): Promise<void> {
    const entries = await this.#ops.readdir(ino, ctx);
    const fh = this.#nextDirFh++;
    this.#dirs.set(fh, { ino, entries });
    const flags = this.#opts.cacheDirs ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : 0;
    writeOpenOut(this.#outView, OUT, fh, flags);
    if (!this.#replyOut(ctx, FuseOpenOut.SIZE)) this.#dirs.delete(fh);
  }

  /** RELEASEDIR: drop the snapshot. */
  releasedir(h: InHeader, fh: number): void {
    this.#dirs.delete(fh);
    this.replyEmpty(h.unique);
  }

  /**
   * READDIR / READDIRPLUS from the snapshot taken at OPENDIR, so paging never re-lists and
   * stays consistent while the tree changes. Cookie i+1 resumes after entry i (0 = ".",
   * 1 = ".."). A record that does not fit ends the page; the kernel asks again from its cookie.
   */
  readdir(h: InHeader, r: ReadIn, plus: boolean): void {
    if (r.fh === 0 && this.#noOpendir) return this.#readdirNoOpen(h, r, plus);
    const d = this.#dirs.get(r.fh);
    if (!d) return this.replyError(h.unique, Errno.EBADF);
    this.#page(h.unique, d, r, plus);
  }

  // Without OPENDIR there is no handle: a listing from offset 0 takes a snapshot kept per
  // inode, later pages read it, and the page that ends the listing drops it.
  #readdirNoOpen(h: InHeader, r: ReadIn, plus: boolean): void {
    const ino = h.nodeid;
    const snap = r.offset === 0 ? undefined : this.#inoDirs.get(ino);
    if (snap) {
      if (this.#page(h.unique, snap, r, plus)) this.#inoDirs.delete(ino);
      return;
    }
    const ctx = this.#ctx(h);
    const req = { fh: 0, offset: r.offset, size: r.size };
    this.#track(
      ctx,
      (async () => {
        const d = { ino, entries: await this.#ops.readdir(ino, ctx) };
        if (ctx.answered) return;
        ctx.answered = true;
        this.#inoDirs.delete(ino);
        if (!this.#page(ctx.unique, d, req, plus)) {
          this.#inoDirs.set(ino, d);
          if (this.#inoDirs.size > MAX_INO_DIRS) {
            this.#inoDirs.delete(this.#inoDirs.keys().next().value!);
          }
        }
      })(),
    );
  }

  // Encode one page of `d` from cookie `r.offset` and send it; true when it ends the listing.
  #page(unique: number, d: DirHandle, r: ReadIn, plus: boolean): boolean {
    const v = this.#outView;
    const out = this.#out;
    const limit = OUT + Math.min(r.size, this.#maxRead);
    const head = plus ? FuseEntryOut.SIZE : 0;
    let pos = OUT;
    const total = d.entries.length + 2;
    let next = r.offset;
    for (let i = r.offset; i < total; i++) {
      let name: string;
      let ino: number;
      let mode: number;
      let attr: Attr | undefined;
      if (i === 0) {
        name = ".";
        ino = d.ino;
        mode = S_IFDIR;
      } else if (i === 1) {
        name = "..";
        ino = this.#parents.get(d.ino) ?? 1;
        mode = S_IFDIR;
      } else {
        attr = d.entries[i - 2].attr;
        name = d.entries[i - 2].name;
        ino = attr.ino;
        mode = attr.mode;
      }
      const start = pos + head;
      // Encode the name in place; if it does not fit, stop before this entry.
      if (limit - start - FuseDirent.SIZE <= 0) break;
      const { written, read } = encoder.encodeInto(
        name,
        out.subarray(start + FuseDirent.name, limit),
      );
      if (read < name.length) break;
      if (start + align8(FuseDirent.SIZE + written) > limit) break;
      if (plus) {
        if (attr) writeEntryOut(v, pos, attr, this.#entryTtl, this.#attrTtlOf(attr.ino));
        else out.fill(0, pos, pos + FuseEntryOut.SIZE); // nodeid 0: no entry, no lookup counted
      }
      if (plus && attr) {
        this.#counted(d.ino, attr);
        this.#share(attr.ino, out, pos + FuseEntryOut.attr, this.#attrTtl);
      }
      pos = start + writeDirent(v, out, start, ino, i + 1, written, mode);
      next = i + 1;
    }
    writeOutHeader(v, unique, pos);
    this.#send(out, pos);
    return next >= total;
  }

  /** READLINK of `h.nodeid`. */
  readlink(h: InHeader): void {
    const ctx = this.#ctx(h);
    if (!this.#ops.readlink) return this.replyError(h.unique, Errno.EINVAL, ctx);
    this.#track(ctx, this.#readlink(ctx, h.nodeid));
  }

  async #readlink(ctx: Ctx, ino: number): Promise<void> {
    const target = await this.#ops.readlink!(ino, ctx);
    const { written } = encoder.encodeInto(target, this.#out.subarray(OUT));
    this.#replyOut(ctx, written);
  }

  /** STATFS. */
  statfs(h: InHeader): void {
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#statfs(ctx, h.nodeid));
  }

  async #statfs(ctx: Ctx, ino: number): Promise<void> {
    const s = this.#ops.statfs ? await this.#ops.statfs(ino, ctx) : {
      blocks: 0,
      bfree: 0,
      bavail: 0,
      files: 0,
      ffree: 0,
      bsize: 4096,
      namelen: 255,
      frsize: 4096,
    };
    writeStatfs(this.#outView, OUT, s);
    this.#replyOut(ctx, FuseKstatfs.SIZE);
  }

  // size 0 is a probe: answer the size needed; a too-small buffer is ERANGE.
  #replySized(ctx: Ctx, data: Uint8Array, size: number): void {
    if (size === 0) {
      this.#outView.setUint32(OUT + FuseGetxattrOut.size, data.length, true);
      this.#outView.setUint32(OUT + 4, 0, true);
      this.#replyOut(ctx, FuseGetxattrOut.SIZE);
    } else if (data.length > size || data.length > this.#out.length - OUT) {
      this.replyError(ctx.unique, Errno.ERANGE, ctx);
    } else {
      this.#out.set(data, OUT);
      this.#replyOut(ctx, data.length);
    }
  }

  /** GETXATTR `name` of `h.nodeid`, into a buffer of `size` bytes (0: a size probe). */
  getxattr(h: InHeader, name: string, size: number): void {
    if (!this.#ops.getxattr) return this.replyError(h.unique, Errno.ENOSYS);
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#getxattr(ctx, h.nodeid, name, size));
  }

  async #getxattr(ctx: Ctx, ino: number, name: string, size: number): Promise<void> {
    const value = await this.#ops.getxattr!(ino, name, ctx);
    if (!value) return this.replyError(ctx.unique, Errno.ENODATA, ctx);
    this.#replySized(ctx, value, size);
  }

  /** LISTXATTR of `h.nodeid`, into a buffer of `size` bytes (0: a size probe). */
  listxattr(h: InHeader, size: number): void {
    if (!this.#ops.listxattr) return this.replyError(h.unique, Errno.ENOSYS);
    const ctx = this.#ctx(h);
    this.#track(ctx, this.#listxattr(ctx, h.nodeid, size));
  }

  async #listxattr(ctx: Ctx, ino: number, size: number): Promise<void> {
    const names = await this.#ops.listxattr!(ino, ctx);
    this.#replySized(ctx, encoder.encode(names.map((n) => n + "\0").join("")), size);
  }
}
