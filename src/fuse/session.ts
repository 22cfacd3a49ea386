/**
 * A FUSE session: reads kernel requests from /dev/fuse, calls the filesystem's async handlers
 * and writes replies. Hand-written over libc (see libc.ts) because Deno cannot run libfuse.
 *
 * Loop design: /dev/fuse is nonblocking. A `poll` on Deno's thread pool waits for requests
 * (and for an eventfd that wakes it at unmount); then requests are drained with synchronous
 * reads on this thread, where errno is meaningful. Each request is decoded at once, so one
 * request buffer serves them all, and its handler runs without being awaited: a slow handler
 * never delays the others. Replies other than READ data are encoded into one scratch buffer
 * and written synchronously (no await in between, so the buffer is never shared). READ data
 * goes into pooled buffers that the handler fills directly (e.g. pread into the reply).
 */
import {
  type Attr,
  type DirEntry,
  Errno,
  type FuseOperations,
  type RequestContext,
  S_IFDIR,
} from "./ops.ts";
import {
  align8,
  ATTR_SIZE,
  ENTRY_OUT,
  FOPEN_CACHE_DIR,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FOPEN_NOFLUSH,
  FOPEN_PASSTHROUGH,
  FUSE_DEV_IOC_BACKING_CLOSE,
  FUSE_DEV_IOC_BACKING_OPEN,
  getU64,
  IN_HEADER,
  INIT2_PASSTHROUGH,
  InitFlag,
  Notify,
  Op,
  OUT_HEADER,
  setU64,
  WRITE_OPS,
  writeAttr,
  writeEntryOut,
  writeStatfs,
  writeTtl,
} from "./protocol.ts";
import { errno, identity, libc, SyscallError, u64 } from "./libc.ts";
import {
  findFuseMount,
  mountFuse,
  type MountHandle,
  type MountOptions,
  prepareMountpoint,
  unmountFuse,
} from "./mount.ts";
import { logger } from "../log/mod.ts";

const log = logger("fuse");

const EAGAIN = 11;
const EINTR = 4;
const ENOENT = 2;
const ENODEV = 19;
const ECONNABORTED = 103;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const MAX_DRAIN = 128;
const KERNEL_MAJOR = 7;
const OUR_MINOR = 45;

/** Session tuning. */
export interface SessionOptions extends MountOptions {
  /** Use kernel passthrough for files with a backing fd: `auto` (default) = when root. */
  passthrough?: boolean | "auto";
  /** Default TTL of name lookups in the kernel, ms. Default 1000. */
  entryTtlMs?: number;
  /** Default TTL of attributes in the kernel, ms. Default 1000. */
  attrTtlMs?: number;
  /** Let the kernel cache directory listings until invalidated. Default false. */
  cacheDirs?: boolean;
  /** Largest READ the kernel sends (and max_write), bytes. Default 1 MiB. */
  maxRead?: number;
  /** How long to wait for the kernel's INIT after mounting, ms. Default 10000. */
  initTimeoutMs?: number;
}

/** Counters of a running session. */
export interface SessionStats {
  /** Requests received from the kernel since the mount. */
  requests: number;
  /** Requests answered EIO because a handler failed unexpectedly (not deliberate errnos). */
  errors: number;
  /** Requests being handled right now. */
  inflight: number;
  /** Whether reads of files opened with a `backingFd` are served by the kernel (passthrough). */
  passthrough: boolean;
  /** Opens that asked for passthrough and were served in userspace because it failed. */
  passthroughFallbacks: number;
}

interface Pending extends RequestContext {
  unique: number;
  opcode: number;
  answered: boolean;
  ctrl?: AbortController;
}

class Ctx implements Pending {
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

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A mounted filesystem. Create with {@link FuseSession.mount}; end with {@link unmount}.
 */
export class FuseSession {
  /** Absolute mountpoint. */
  readonly mountpoint: string;
  /** Resolves when the connection has ended (unmounted by us or by anyone else). */
  readonly closed: Promise<void>;

  #ops: FuseOperations;
  #handle: MountHandle;
  #fd: number;
  #wake: number;
  #opts: SessionOptions;
  #entryTtl: number;
  #attrTtl: number;
  #maxRead: number;
  #req: Uint8Array<ArrayBuffer>;
  #reqView: DataView;
  #out: Uint8Array<ArrayBuffer>;
  #outView: DataView;
  // Reply buffers for READs answered asynchronously, each with its header view.
  #readPool: { buf: Uint8Array<ArrayBuffer>; view: DataView }[] = [];
  #poller: Worker;
  #pollWaiter?: (v: unknown) => void;
  #pending = new Map<number, Pending>();
  #lookups = new Map<number, number>();
  #parents = new Map<number, number>();
  #dirs = new Map<number, DirHandle>();
  #nextDirFh = 1;
  #backing = new Map<number, { id: number; refs: number; version?: string }>();
  #passthrough = false;
  #proto = { minor: 0 };
  #stopping = false;
  #fdClosed = false;
  #ready!: PromiseWithResolvers<void>;
  #resolveClosed!: () => void;
  #notifyChain: Promise<void> = Promise.resolve();
  #stats = { requests: 0, errors: 0, passthroughFallbacks: 0 };
  /** Inodes whose passthrough open failed, with the count (each is logged once). */
  #backingFailures = new Map<number, number>();

  private constructor(ops: FuseOperations, handle: MountHandle, opts: SessionOptions) {
    this.#ops = ops;
    this.#handle = handle;
    this.#fd = handle.fd;
    this.mountpoint = handle.mountpoint;
    this.#opts = opts;
    this.#entryTtl = opts.entryTtlMs ?? 1000;
    this.#attrTtl = opts.attrTtlMs ?? 1000;
    this.#maxRead = opts.maxRead ?? 1 << 20;
    // The kernel refuses reads into a buffer smaller than max_write + headers.
    this.#req = new Uint8Array(this.#maxRead + 8192);
    this.#reqView = new DataView(this.#req.buffer);
    this.#out = new Uint8Array(this.#maxRead + 8192);
    this.#outView = new DataView(this.#out.buffer);
    this.#wake = libc().eventfd(0, 0o4000 | 0o2000000);
    if (this.#wake < 0) throw new SyscallError("eventfd", errno());
    this.#poller = new Worker(new URL("./poll_worker.ts", import.meta.url), { type: "module" });
    this.#poller.onmessage = () => this.#pollWaiter?.(undefined);
    this.#poller.postMessage([this.#fd, this.#wake]);
    this.#ready = Promise.withResolvers<void>();
    this.closed = new Promise((r) => (this.#resolveClosed = r));
  }

  /**
   * Check the mountpoint (clearing a dead mount), mount, and serve `ops` until unmounted.
   * Resolves once the kernel's INIT has been answered, i.e. the mount answers.
   */
  static async mount(
    mountpoint: string,
    ops: FuseOperations,
    opts: SessionOptions = {},
  ): Promise<FuseSession> {
    const abs = await prepareMountpoint(mountpoint, opts.create);
    const handle = await mountFuse(abs, opts);
    const s = new FuseSession(ops, handle, opts);
    s.#run();
    const timeout = opts.initTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        s.#ready.promise,
        s.closed.then(() => {
          throw new Error("the kernel closed the connection during INIT");
        }),
        new Promise((_, rej) => {
          timer = setTimeout(
            () => rej(new Error(`no INIT from the kernel in ${timeout} ms`)),
            timeout,
          );
        }),
      ]);
    } catch (e) {
      await s.unmount();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return s;
  }

  /** Whether reads of files with a backing fd are served by the kernel. */
  get passthrough(): boolean {
    return this.#passthrough;
  }

  /** Request counters. */
  get stats(): SessionStats {
    return { ...this.#stats, inflight: this.#pending.size, passthrough: this.#passthrough };
  }

  /** How the mount was made (kernel mount(2) as root, or the fusermount3 helper). */
  get method(): "kernel" | "helper" {
    return this.#handle.method;
  }

  /** Unmount (lazily) and end the session; pending requests fail with ENOTCONN. */
  async unmount(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      try {
        await unmountFuse(this.#handle);
      } catch (e) {
        log.warn("Unmount of {mountpoint} failed: {error}", {
          mountpoint: this.mountpoint,
          error: (e as Error).message,
        });
      }
      const one = new BigUint64Array([1n]);
      libc().write(this.#wake, new Uint8Array(one.buffer), u64(8));
    }
    await this.closed;
  }

  /** Tell the kernel to forget the cached lookup of `name` in `parent`. */
  notifyInvalEntry(parent: number, name: string): void {
    const nameBytes = encoder.encode(name);
    const buf = new Uint8Array(OUT_HEADER + 16 + nameBytes.length + 1);
    const v = new DataView(buf.buffer);
    setU64(v, OUT_HEADER, parent);
    v.setUint32(OUT_HEADER + 8, nameBytes.length, true);
    buf.set(nameBytes, OUT_HEADER + 16);
    this.#notify(Notify.INVAL_ENTRY, buf);
  }

  /** Tell the kernel to drop cached attributes (and data in [off, off+len) unless off < 0). */
  notifyInvalInode(ino: number, off = -1, len = 0): void {
    const buf = new Uint8Array(OUT_HEADER + 24);
    const v = new DataView(buf.buffer);
    setU64(v, OUT_HEADER, ino);
    v.setBigInt64(OUT_HEADER + 8, BigInt(off), true);
    v.setBigInt64(OUT_HEADER + 16, BigInt(len), true);
    this.#notify(Notify.INVAL_INODE, buf);
  }

  /** Tell the kernel that `name` (inode `child`) was deleted from `parent`. */
  notifyDelete(parent: number, child: number, name: string): void {
    const nameBytes = encoder.encode(name);
    const buf = new Uint8Array(OUT_HEADER + 24 + nameBytes.length + 1);
    const v = new DataView(buf.buffer);
    setU64(v, OUT_HEADER, parent);
    setU64(v, OUT_HEADER + 8, child);
    v.setUint32(OUT_HEADER + 16, nameBytes.length, true);
    buf.set(nameBytes, OUT_HEADER + 24);
    this.#notify(Notify.DELETE, buf);
  }

  /** Resolves when every notification queued so far has been written. */
  flushNotifications(): Promise<void> {
    return this.#notifyChain;
  }

  // Notifications may block in the kernel on locks a pending request holds, so they are
  // written from the thread pool, one at a time, never from inside request handling.
  #notify(code: number, buf: Uint8Array<ArrayBuffer>): void {
    const v = new DataView(buf.buffer);
    v.setUint32(0, buf.length, true);
    v.setInt32(4, code, true);
    setU64(v, 8, 0);
    this.#notifyChain = this.#notifyChain.then(async () => {
      if (this.#fdClosed || this.#stopping) return;
      await libc().write_nb(this.#fd, buf, u64(buf.length));
    });
  }

  async #run(): Promise<void> {
    const l = libc();
    try {
      for (;;) {
        let drained = 0;
        while (drained < MAX_DRAIN && !this.#stopping) {
          const n = l.read(this.#fd, this.#req, u64(this.#req.length));
          if (n < 0) {
            const err = errno();
            if (err === EAGAIN) break;
            if (err === EINTR || err === ENOENT) continue;
            if (err === ENODEV || err === ECONNABORTED) return;
            throw new SyscallError("read /dev/fuse", err);
          }
          drained++;
          this.#dispatch(n);
        }
        if (this.#stopping) return;
        // A full drain yields through a timer so handlers' I/O completions get their turn.
        if (drained === MAX_DRAIN) await new Promise((r) => setTimeout(r, 0));
        else {
          await new Promise((r) => {
            this.#pollWaiter = r;
            this.#poller.postMessage("poll");
          });
        }
      }
    } catch (e) {
      log.error("FUSE request loop failed: {error}", { error: e, stack: (e as Error).stack });
    } finally {
      this.#stopping = true;
      await this.#notifyChain.catch(() => {});
      for (const { id } of this.#backing.values()) this.#closeBacking(id);
      this.#backing.clear();
      this.#fdClosed = true;
      this.#poller.terminate();
      l.close(this.#fd);
      l.close(this.#wake);
      if (this.#handle.commFd !== undefined) {
        l.close(this.#handle.commFd);
        this.#handle.commFd = undefined;
      }
      this.#resolveClosed();
    }
  }

  #dispatch(n: number): void {
    const v = this.#reqView;
    const opcode = v.getUint32(4, true);
    const unique = getU64(v, 8);
    const ino = getU64(v, 16);
    this.#stats.requests++;
    switch (opcode) {
      case Op.INIT:
        return this.#init(unique, n);
      case Op.FORGET:
        return this.#forget(ino, getU64(v, IN_HEADER));
      case Op.BATCH_FORGET: {
        const count = v.getUint32(IN_HEADER, true);
        for (let i = 0, off = IN_HEADER + 8; i < count; i++, off += 16) {
          this.#forget(getU64(v, off), getU64(v, off + 8));
        }
        return;
      }
      case Op.INTERRUPT:
        return this.#interrupt(unique, getU64(v, IN_HEADER));
      case Op.NOTIFY_REPLY:
        return;
      case Op.DESTROY:
        this.#replyEmpty(unique);
        this.#stopping = true;
        return;
    }
    if (WRITE_OPS.has(opcode)) return this.#replyError(unique, Errno.EROFS);
    const ctx = new Ctx(
      unique,
      opcode,
      v.getUint32(24, true),
      v.getUint32(28, true),
      v.getUint32(32, true),
    );
    switch (opcode) {
      case Op.LOOKUP: {
        const name = this.#cstring(IN_HEADER, n);
        return this.#track(ctx, this.#lookup(ctx, ino, name));
      }
      case Op.GETATTR:
        return this.#track(ctx, this.#getattr(ctx, ino));
      case Op.OPEN: {
        const flags = v.getUint32(IN_HEADER, true);
        if ((flags & O_ACCMODE) !== 0 || flags & O_TRUNC) {
          return this.#replyError(unique, Errno.EROFS);
        }
        return this.#track(ctx, this.#open(ctx, ino, flags));
      }
      case Op.READ: {
        const fh = getU64(v, IN_HEADER);
        const offset = getU64(v, IN_HEADER + 8);
        const size = Math.min(v.getUint32(IN_HEADER + 16, true), this.#maxRead);
        if (this.#ops.readNow) {
          // Served from memory or the page cache: reply at once, no thread-pool round trip.
          let n: number | undefined;
          try {
            n = this.#ops.readNow(
              ino,
              fh,
              offset,
              this.#out.subarray(OUT_HEADER, OUT_HEADER + size),
            );
          } catch {
            n = undefined;
          }
          if (n !== undefined) {
            const len = OUT_HEADER + Math.max(0, Math.min(n, size));
            this.#header(unique, len);
            return this.#write(this.#out, len);
          }
        }
        return this.#track(ctx, this.#read(ctx, ino, fh, offset, size));
      }
      case Op.RELEASE:
        return this.#track(ctx, this.#release(ctx, ino, getU64(v, IN_HEADER)));
      case Op.OPENDIR:
        return this.#track(ctx, this.#opendir(ctx, ino));
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const fh = getU64(v, IN_HEADER);
        const offset = getU64(v, IN_HEADER + 8);
        const size = v.getUint32(IN_HEADER + 16, true);
        return this.#readdir(unique, fh, offset, size, opcode === Op.READDIRPLUS);
      }
      case Op.RELEASEDIR:
        this.#dirs.delete(getU64(v, IN_HEADER));
        return this.#replyEmpty(unique);
      case Op.READLINK:
        return this.#track(ctx, this.#readlink(ctx, ino));
      case Op.STATFS:
        return this.#track(ctx, this.#statfs(ctx, ino));
      case Op.GETXATTR: {
        const size = v.getUint32(IN_HEADER, true);
        const name = this.#cstring(IN_HEADER + 8, n);
        return this.#track(ctx, this.#getxattr(ctx, ino, name, size));
      }
      case Op.LISTXATTR:
        return this.#track(ctx, this.#listxattr(ctx, ino, v.getUint32(IN_HEADER, true)));
      case Op.FLUSH:
        return this.#replyEmpty(unique);
      default:
        // ENOSYS is remembered by the kernel: ACCESS = allowed, FSYNC = fine, and so on.
        return this.#replyError(unique, Errno.ENOSYS);
    }
  }

  #cstring(start: number, end: number): string {
    const nul = this.#req.indexOf(0, start);
    return decoder.decode(this.#req.subarray(start, nul < 0 || nul > end ? end : nul));
  }

  #track(ctx: Pending, p: Promise<void>): void {
    this.#pending.set(ctx.unique, ctx);
    p.catch((e) => this.#fail(ctx, e)).finally(() => this.#pending.delete(ctx.unique));
  }

  #fail(ctx: Pending, e: unknown): void {
    const err = e as { errno?: unknown; code?: string; message?: string; stack?: string };
    let code: number = Errno.EIO;
    if (typeof err?.errno === "number" && err.errno > 0 && err.errno < 1000) code = err.errno;
    else if (e instanceof Deno.errors.NotFound) code = Errno.ENOENT;
    else if (e instanceof Deno.errors.PermissionDenied) code = Errno.EACCES;
    if (code === Errno.EIO) {
      this.#stats.errors++;
      log.warn("FUSE request {opcode} failed: {error}", {
        opcode: ctx.opcode,
        error: err?.message ?? String(e),
        stack: err?.stack,
      });
    }
    this.#replyError(ctx.unique, code, ctx);
  }

  #write(buf: Uint8Array<ArrayBuffer>, len: number): void {
    if (this.#fdClosed) return;
    const n = libc().write(this.#fd, buf, u64(len));
    if (n < 0) {
      const err = errno();
      // ENOENT: the request was interrupted and is gone. Others mean the connection ended.
      if (err !== ENOENT && err !== ENODEV) {
        log.debug("Reply write failed: {error}", { error: new SyscallError("write", err).message });
      }
    }
  }

  #header(unique: number, len: number, error = 0): void {
    const v = this.#outView;
    v.setUint32(0, len, true);
    v.setInt32(4, -error, true);
    setU64(v, 8, unique);
  }

  #replyError(unique: number, err: number, ctx?: Pending): void {
    if (ctx) {
      if (ctx.answered) return;
      ctx.answered = true;
    }
    this.#header(unique, OUT_HEADER, err);
    this.#write(this.#out, OUT_HEADER);
  }

  #replyEmpty(unique: number): void {
    this.#header(unique, OUT_HEADER);
    this.#write(this.#out, OUT_HEADER);
  }

  /** Send `len` body bytes already written at #out[16..]; false if the request is gone. */
  #replyOut(ctx: Pending, len: number): boolean {
    if (ctx.answered) return false;
    ctx.answered = true;
    this.#header(ctx.unique, OUT_HEADER + len);
    this.#write(this.#out, OUT_HEADER + len);
    return true;
  }

  #init(unique: number, n: number): void {
    const v = this.#reqView;
    const major = v.getUint32(IN_HEADER, true);
    const minor = v.getUint32(IN_HEADER + 4, true);
    const maxReadahead = v.getUint32(IN_HEADER + 8, true);
    const flags = v.getUint32(IN_HEADER + 12, true);
    const flags2 = n >= IN_HEADER + 20 && flags & InitFlag.INIT_EXT
      ? v.getUint32(IN_HEADER + 16, true)
      : 0;
    if (major !== KERNEL_MAJOR) {
      log.error("Unsupported FUSE protocol {major}.{minor}", { major, minor });
      this.#replyError(unique, Errno.EPROTO);
      return;
    }
    this.#proto.minor = Math.min(minor, OUR_MINOR);
    const want = InitFlag.ASYNC_READ | InitFlag.AUTO_INVAL_DATA | InitFlag.DO_READDIRPLUS |
      InitFlag.READDIRPLUS_AUTO | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES |
      InitFlag.CACHE_SYMLINKS | InitFlag.INIT_EXT;
    const outFlags = (flags & want) >>> 0;
    const wantPassthrough =
      this.#opts.passthrough === undefined || this.#opts.passthrough === "auto"
        ? identity().root
        : this.#opts.passthrough;
    let outFlags2 = 0;
    if (wantPassthrough && flags2 & INIT2_PASSTHROUGH && this.#handle.method === "kernel") {
      outFlags2 |= INIT2_PASSTHROUGH;
      this.#passthrough = true;
    }
    const o = this.#outView;
    const base = OUT_HEADER;
    this.#out.fill(0, base, base + 64);
    o.setUint32(base, KERNEL_MAJOR, true);
    o.setUint32(base + 4, this.#proto.minor, true);
    o.setUint32(base + 8, maxReadahead, true);
    o.setUint32(base + 12, outFlags, true);
    o.setUint16(base + 16, 64, true); // max_background
    o.setUint16(base + 18, 48, true); // congestion_threshold
    o.setUint32(base + 20, this.#maxRead, true); // max_write
    o.setUint32(base + 24, 1, true); // time_gran
    o.setUint16(base + 28, Math.ceil(this.#maxRead / 4096), true); // max_pages
    o.setUint32(base + 32, outFlags2, true);
    o.setUint32(base + 36, this.#passthrough ? 1 : 0, true); // max_stack_depth
    const size = this.#proto.minor >= 23 ? 64 : 24;
    this.#header(unique, OUT_HEADER + size);
    this.#write(this.#out, OUT_HEADER + size);
    log.debug("FUSE {major}.{minor} initialised; passthrough {pt}", {
      major,
      minor,
      pt: this.#passthrough,
    });
    this.#ready.resolve();
    queueMicrotask(() => this.#raiseReadahead());
  }

  // The kernel sizes READ requests by the mount's readahead (128 KiB by default), not by
  // max_pages; 1 MiB requests halve the per-byte cost of the classic read path. Only root
  // may write the setting; otherwise the default stays.
  #raiseReadahead(): void {
    const dev = findFuseMount(this.mountpoint)?.device;
    if (!dev) return;
    try {
      Deno.writeTextFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(this.#maxRead >> 10));
    } catch (e) {
      log.debug("Cannot raise readahead of {dev}: {error}", { dev, error: (e as Error).message });
    }
  }

  #forget(ino: number, nlookup: number): void {
    const left = (this.#lookups.get(ino) ?? 0) - nlookup;
    if (left > 0) {
      this.#lookups.set(ino, left);
      return;
    }
    this.#lookups.delete(ino);
    this.#parents.delete(ino);
    this.#ops.forget?.(ino);
  }

  #counted(parent: number, attr: Attr): void {
    const ino = attr.ino;
    this.#lookups.set(ino, (this.#lookups.get(ino) ?? 0) + 1);
    if ((attr.mode & 0o170000) === S_IFDIR) this.#parents.set(ino, parent);
  }

  #interrupt(unique: number, target: number): void {
    const p = this.#pending.get(target);
    if (!p) {
      // Not seen yet (interrupts may overtake their request): the kernel resends on EAGAIN.
      this.#replyError(unique, EAGAIN);
      return;
    }
    p.ctrl?.abort(new DOMException("interrupted", "AbortError"));
    this.#replyError(target, EINTR, p);
  }

  async #lookup(ctx: Pending, parent: number, name: string): Promise<void> {
    const e = await this.#ops.lookup(parent, name, ctx);
    if (!e) return this.#replyError(ctx.unique, Errno.ENOENT, ctx);
    writeEntryOut(
      this.#outView,
      OUT_HEADER,
      e.attr,
      e.entryTtlMs ?? this.#entryTtl,
      e.attrTtlMs ?? this.#attrTtl,
    );
    if (this.#replyOut(ctx, ENTRY_OUT)) this.#counted(parent, e.attr);
  }

  async #getattr(ctx: Pending, ino: number): Promise<void> {
    const attr = await this.#ops.getattr(ino, ctx);
    const v = this.#outView;
    writeTtl(v, OUT_HEADER, OUT_HEADER + 8, this.#attrTtl);
    v.setUint32(OUT_HEADER + 12, 0, true);
    writeAttr(v, OUT_HEADER + 16, attr);
    this.#replyOut(ctx, 16 + ATTR_SIZE);
  }

  async #open(ctx: Pending, ino: number, flags: number): Promise<void> {
    const r = await this.#ops.open(ino, flags, ctx);
    // Without NOFLUSH every close(2) waits for a FLUSH round trip; a process that closes a
    // file of its own mount synchronously (Deno's FsFile.close) would then deadlock itself.
    let openFlags = FOPEN_NOFLUSH;
    let backingId = 0;
    if (r.backingFd !== undefined && this.#passthrough) {
      const held = this.#backing.get(ino);
      if (held && held.version !== r.backingVersion) {
        log.warn(
          "Inode {ino} changed while an older version is open through passthrough; answering EIO " +
            "until it is closed",
          { ino },
        );
        await this.#ops.release?.(ino, r.fh ?? 0);
        return this.#replyError(ctx.unique, Errno.EIO, ctx);
      }
      backingId = this.#acquireBacking(ino, r.backingFd, r.backingVersion);
      if (backingId > 0) openFlags |= FOPEN_PASSTHROUGH;
    }
    if (!backingId) {
      if (r.keepCache) openFlags |= FOPEN_KEEP_CACHE;
      if (r.directIo) openFlags |= FOPEN_DIRECT_IO;
    }
    const v = this.#outView;
    setU64(v, OUT_HEADER, r.fh ?? 0);
    v.setUint32(OUT_HEADER + 8, openFlags, true);
    v.setInt32(OUT_HEADER + 12, backingId, true);
    if (!this.#replyOut(ctx, 16) && backingId) this.#releaseBacking(ino);
  }

  #acquireBacking(ino: number, fd: number, version?: string): number {
    const b = this.#backing.get(ino);
    if (b) {
      b.refs++;
      return b.id;
    }
    const map = new Uint8Array(16);
    new DataView(map.buffer).setInt32(0, fd, true);
    const id = libc().ioctl(this.#fd, u64(FUSE_DEV_IOC_BACKING_OPEN), map);
    if (id <= 0) {
      // One odd source must not end passthrough for every other file: this open alone is
      // served in userspace, and each inode's failure is logged once.
      const err = errno();
      const seen = this.#backingFailures.get(ino) ?? 0;
      if (this.#backingFailures.size < 65536 || seen) this.#backingFailures.set(ino, seen + 1);
      this.#stats.passthroughFallbacks++;
      if (!seen) {
        log.warn("Kernel passthrough failed for inode {ino} ({error}); serving it in userspace", {
          ino,
          error: new SyscallError("FUSE_DEV_IOC_BACKING_OPEN", err).message,
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
    this.#closeBacking(b.id);
  }

  #closeBacking(id: number): void {
    const arg = new Uint8Array(4);
    new DataView(arg.buffer).setUint32(0, id, true);
    libc().ioctl(this.#fd, u64(FUSE_DEV_IOC_BACKING_CLOSE), arg);
  }

  async #read(ctx: Pending, ino: number, fh: number, offset: number, size: number): Promise<void> {
    const slot = this.#readPool.pop() ?? this.#newReadSlot();
    const { buf, view: v } = slot;
    try {
      const n = await this.#ops.read(
        ino,
        fh,
        offset,
        buf.subarray(OUT_HEADER, OUT_HEADER + size),
        ctx,
      );
      if (ctx.answered) return;
      ctx.answered = true;
      const len = OUT_HEADER + Math.max(0, Math.min(n, size));
      v.setUint32(0, len, true);
      v.setInt32(4, 0, true);
      setU64(v, 8, ctx.unique);
      this.#write(buf, len);
    } finally {
      if (this.#readPool.length < 16) this.#readPool.push(slot);
    }
  }

  #newReadSlot(): { buf: Uint8Array<ArrayBuffer>; view: DataView } {
    const buf = new Uint8Array(OUT_HEADER + this.#maxRead);
    return { buf, view: new DataView(buf.buffer) };
  }

  async #release(ctx: Pending, ino: number, fh: number): Promise<void> {
    this.#releaseBacking(ino);
    try {
      await this.#ops.release?.(ino, fh);
    } finally {
      this.#replyOut(ctx, 0);
    }
  }

  async #opendir(ctx: Pending, ino: number): Promise<void> {
    const entries = await this.#ops.readdir(ino, ctx);
    const fh = this.#nextDirFh++;
    this.#dirs.set(fh, { ino, entries });
    const v = this.#outView;
    setU64(v, OUT_HEADER, fh);
    v.setUint32(
      OUT_HEADER + 8,
      this.#opts.cacheDirs ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : 0,
      true,
    );
    v.setInt32(OUT_HEADER + 12, 0, true);
    if (!this.#replyOut(ctx, 16)) this.#dirs.delete(fh);
  }

  // Entries come from the snapshot taken at opendir, so paging never re-lists and stays
  // consistent while the tree changes. Cookie i+1 resumes after entry i (0 = ".", 1 = "..").
  #readdir(unique: number, fh: number, offset: number, size: number, plus: boolean): void {
    const d = this.#dirs.get(fh);
    if (!d) return this.#replyError(unique, Errno.EBADF);
    const v = this.#outView;
    const out = this.#out;
    const limit = OUT_HEADER + Math.min(size, this.#maxRead);
    let pos = OUT_HEADER;
    const total = d.entries.length + 2;
    for (let i = offset; i < total; i++) {
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
      const start = pos + (plus ? ENTRY_OUT : 0);
      // Encode the name in place; if it does not fit, stop before this entry.
      const room = limit - start - 24;
      if (room <= 0) break;
      const { written, read } = encoder.encodeInto(name, out.subarray(start + 24, limit));
      if (read < name.length) break;
      const recLen = align8(24 + written);
      if (start + recLen > limit) break;
      if (plus) {
        if (attr) writeEntryOut(v, pos, attr, this.#entryTtl, this.#attrTtl);
        else out.fill(0, pos, pos + ENTRY_OUT); // nodeid 0: no entry, no lookup counted
      }
      setU64(v, start, ino);
      setU64(v, start + 8, i + 1);
      v.setUint32(start + 16, written, true);
      v.setUint32(start + 20, (mode & 0o170000) >>> 12, true);
      out.fill(0, start + 24 + written, start + recLen);
      if (plus && attr) this.#counted(d.ino, attr);
      pos = start + recLen;
    }
    this.#header(unique, pos);
    this.#write(out, pos);
  }

  async #readlink(ctx: Pending, ino: number): Promise<void> {
    if (!this.#ops.readlink) return this.#replyError(ctx.unique, Errno.EINVAL, ctx);
    const target = await this.#ops.readlink(ino, ctx);
    const { written } = encoder.encodeInto(target, this.#out.subarray(OUT_HEADER));
    this.#replyOut(ctx, written);
  }

  async #statfs(ctx: Pending, ino: number): Promise<void> {
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
    writeStatfs(this.#outView, OUT_HEADER, s);
    this.#replyOut(ctx, 80);
  }

  #replySized(ctx: Pending, data: Uint8Array, size: number): void {
    if (size === 0) {
      const v = this.#outView;
      v.setUint32(OUT_HEADER, data.length, true);
      v.setUint32(OUT_HEADER + 4, 0, true);
      this.#replyOut(ctx, 8);
    } else if (data.length > size) {
      this.#replyError(ctx.unique, Errno.ERANGE, ctx);
    } else {
      this.#out.set(data, OUT_HEADER);
      this.#replyOut(ctx, data.length);
    }
  }

  async #getxattr(ctx: Pending, ino: number, name: string, size: number): Promise<void> {
    if (!this.#ops.getxattr) return this.#replyError(ctx.unique, Errno.ENOSYS, ctx);
    const value = await this.#ops.getxattr(ino, name, ctx);
    if (!value) return this.#replyError(ctx.unique, Errno.ENODATA, ctx);
    this.#replySized(ctx, value, size);
  }

  async #listxattr(ctx: Pending, ino: number, size: number): Promise<void> {
    if (!this.#ops.listxattr) return this.#replyError(ctx.unique, Errno.ENOSYS, ctx);
    const names = await this.#ops.listxattr(ino, ctx);
    this.#replySized(ctx, encoder.encode(names.map((n) => n + "\0").join("")), size);
  }
}
