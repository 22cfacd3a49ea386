/**
 * A FUSE session (go-fuse's server.go): mounts, waits on /dev/fuse, reads requests and hands
 * them to a {@link ProtocolServer}, writes its replies, and sends cache notifications.
 * Hand-written over libc (see sys/libc.ts) because Deno cannot run libfuse.
 *
 * Loop design: a worker thread of its own (poll_worker.ts) reads /dev/fuse into a ring of request
 * slots in shared memory and wakes this thread through Atomics; this thread hands each request
 * to the protocol server, which decodes it at once (so the slot is free again when `handle`
 * returns) and replies with synchronous writes. The worker reads the next request while this
 * thread handles the last one, and no message crosses threads per request.
 */
import type { FuseOperations } from "./ops.ts";
import { type BackingFiles, ProtocolServer } from "./protocol_server.ts";
import {
  FUSE_DEV_IOC_BACKING_CLOSE,
  FUSE_DEV_IOC_BACKING_OPEN,
  FuseBackingMap,
  notifyDelete,
  notifyInvalEntry,
  notifyInvalInode,
} from "./structs.ts";
import { errno, identity, libc, SyscallError, u64 } from "../sys/libc.ts";
import { RequestRing, RingState } from "./ring.ts";
import { AttrShare } from "./attr_share.ts";
import { Errno } from "../sys/errno.ts";
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

const MAX_DRAIN = 128;
const SLOTS = 8;
// Inodes whose attributes the reader thread can answer GETATTR for (6.5 MiB of shared memory).
const SHARED_ATTRS = 1 << 16;

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
  /** GETATTRs the reader thread answered from shared attributes (included in `requests`). */
  answeredByReader: number;
  /** Invalidation notices written to the kernel. */
  notifications: number;
  /** Invalidation notices not written: about inodes the kernel does not hold. */
  notificationsSkipped: number;
}

/**
 * A mounted filesystem. Create with {@link FuseSession.mount}; end with {@link unmount}.
 */
export class FuseSession {
  /** Absolute mountpoint. */
  readonly mountpoint: string;
  /** Resolves when the connection has ended (unmounted by us or by anyone else). */
  readonly closed: Promise<void>;

  #handle: MountHandle;
  #fd: number;
  #wake: number;
  #maxRead: number;
  #server: ProtocolServer;
  #ring: RequestRing;
  #attrs?: AttrShare;
  #stopping = false;
  #fdClosed = false;
  #ready = Promise.withResolvers<void>();
  #resolveClosed!: () => void;
  #notifyChain: Promise<void> = Promise.resolve();
  #notified = 0;
  #notifySkipped = 0;

  private constructor(ops: FuseOperations, handle: MountHandle, opts: SessionOptions) {
    this.#handle = handle;
    this.#fd = handle.fd;
    this.mountpoint = handle.mountpoint;
    this.#maxRead = opts.maxRead ?? 1 << 20;
    const wantPassthrough = opts.passthrough === undefined || opts.passthrough === "auto"
      ? identity().root
      : opts.passthrough;
    if (ops.shareAttrs) this.#attrs = new AttrShare(SHARED_ATTRS);
    this.#server = new ProtocolServer(ops, (buf, len) => this.#write(buf, len), {
      attrShare: this.#attrs,
      entryTtlMs: opts.entryTtlMs,
      attrTtlMs: opts.attrTtlMs,
      cacheDirs: opts.cacheDirs,
      maxRead: this.#maxRead,
      // The backing ioctls need CAP_SYS_ADMIN in the mount's namespace: kernel mounts only.
      passthrough: wantPassthrough && handle.method === "kernel",
      backing: this.#backingFiles(),
      onInit: () => {
        this.#ready.resolve();
        queueMicrotask(() => this.#raiseReadahead());
      },
      onDestroy: () => (this.#stopping = true),
    });
    this.#wake = libc().eventfd(0, 0o4000 | 0o2000000);
    if (this.#wake < 0) throw new SyscallError("eventfd", errno());
    // The kernel refuses reads into a buffer smaller than max_write + headers.
    this.#ring = new RequestRing(
      this.#fd,
      this.#wake,
      SLOTS,
      this.#maxRead + 8192,
      this.#attrs?.sab,
    );
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
    return this.#server.passthrough;
  }

  /** Request counters. */
  get stats(): SessionStats {
    const { requests, errors, inflight, passthrough, passthroughFallbacks } = this.#server.stats;
    const byReader = this.#ring.answered;
    return {
      requests: requests + byReader,
      errors,
      inflight,
      passthrough,
      passthroughFallbacks,
      answeredByReader: byReader,
      notifications: this.#notified,
      notificationsSkipped: this.#notifySkipped,
    };
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

  // Each notification below is skipped when the kernel holds nothing it could apply to (see
  // ProtocolServer.kernelMayHold): it would ignore it, after a write on the thread pool.

  /** Tell the kernel to forget the cached lookup of `name` in `parent`. */
  notifyInvalEntry(parent: number, name: string): void {
    if (!this.#server.kernelMayHold(parent)) return void this.#notifySkipped++;
    this.#notify(notifyInvalEntry(parent, name));
  }

  /** Tell the kernel to drop cached attributes (and data in [off, off+len) unless off < 0). */
  notifyInvalInode(ino: number, off = -1, len = 0): void {
    this.#attrs?.delete(ino);
    if (!this.#server.kernelMayHold(ino)) return void this.#notifySkipped++;
    this.#notify(notifyInvalInode(ino, off, len));
  }

  /** Tell the kernel that `name` (inode `child`) was deleted from `parent`. */
  notifyDelete(parent: number, child: number, name: string): void {
    this.#attrs?.delete(child);
    if (!this.#server.kernelMayHold(parent)) return void this.#notifySkipped++;
    this.#notify(notifyDelete(parent, child, name));
  }

  /** Resolves when every notification queued so far has been written. */
  flushNotifications(): Promise<void> {
    return this.#notifyChain;
  }

  // Notifications may block in the kernel on locks a pending request holds, so they are
  // written from the thread pool, one at a time, never from inside request handling.
  #notify(buf: Uint8Array<ArrayBuffer>): void {
    this.#notified++;
    this.#notifyChain = this.#notifyChain.then(async () => {
      if (this.#fdClosed || this.#stopping) return;
      await libc().write_nb(this.#fd, buf, u64(buf.length));
    });
  }

  #backingFiles(): BackingFiles {
    return {
      open: (fd) => {
        const map = new Uint8Array(FuseBackingMap.SIZE);
        new DataView(map.buffer).setInt32(FuseBackingMap.fd, fd, true);
        const id = libc().ioctl(this.#fd, u64(FUSE_DEV_IOC_BACKING_OPEN), map);
        if (id <= 0) {
          log.warn("Kernel passthrough refused: {error}", {
            error: new SyscallError("FUSE_DEV_IOC_BACKING_OPEN", errno()).message,
          });
        }
        return id;
      },
      close: (id) => {
        const arg = new Uint32Array([id]);
        libc().ioctl(this.#fd, u64(FUSE_DEV_IOC_BACKING_CLOSE), new Uint8Array(arg.buffer));
      },
    };
  }

  async #run(): Promise<void> {
    const ring = this.#ring;
    const handle = (buf: Uint8Array, len: number, view: DataView) =>
      this.#server.handle(buf, len, view);
    const stop = () => this.#stopping;
    try {
      for (;;) {
        // Read the change counter first: a change after this point ends the wait below.
        const events = ring.events();
        const handled = ring.drain(handle, MAX_DRAIN, stop);
        if (this.#stopping) return;
        // A full drain yields through a timer so handlers' I/O completions get their turn.
        if (handled === MAX_DRAIN) {
          await new Promise((r) => setTimeout(r, 0));
          continue;
        }
        if (ring.pending) continue;
        const { state, errno } = ring.state();
        if (state === RingState.FAILED) {
          throw ring.failure
            ? new Error(`the request reader failed: ${ring.failure}`)
            : new SyscallError("read /dev/fuse", errno);
        }
        if (state === RingState.CLOSED) return;
        await ring.changed(events);
      }
    } catch (e) {
      log.error("FUSE request loop failed: {error}", { error: e, stack: (e as Error).stack });
    } finally {
      this.#stopping = true;
      await this.#notifyChain.catch(() => {});
      await ring.stop((fd, bytes) => libc().write(fd, bytes as Uint8Array<ArrayBuffer>, u64(8)));
      this.#server.shutdown();
      this.#fdClosed = true;
      const l = libc();
      l.close(this.#fd);
      l.close(this.#wake);
      if (this.#handle.commFd !== undefined) {
        l.close(this.#handle.commFd);
        this.#handle.commFd = undefined;
      }
      this.#resolveClosed();
    }
  }

  #write(buf: Uint8Array<ArrayBuffer>, len: number): void {
    if (this.#fdClosed) return;
    const n = libc().write(this.#fd, buf, u64(len));
    if (n < 0) {
      const err = errno();
      // ENOENT: the request was interrupted and is gone. Others mean the connection ended.
      if (err !== Errno.ENOENT && err !== Errno.ENODEV) {
        log.debug("Reply write failed: {error}", { error: new SyscallError("write", err).message });
      }
    }
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
}
