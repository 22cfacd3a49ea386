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
import { type BackingFiles, finishNotify, ProtocolServer } from "./protocol_server.ts";
import {
  FUSE_DEV_IOC_BACKING_CLOSE,
  FUSE_DEV_IOC_BACKING_OPEN,
  FuseBackingMap,
  FuseNotifyDelete,
  FuseNotifyInvalEntry,
  FuseNotifyInvalInode,
  FuseOutHeader,
  Notify,
  setU64,
} from "./structs.ts";
import { errno, identity, libc, SyscallError, u64 } from "../sys/libc.ts";
import { RING, type RingSetup, RingState, slotBase } from "./ring.ts";
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
const OUT = FuseOutHeader.SIZE;

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

const encoder = new TextEncoder();

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
  #ctrl: Int32Array;
  #slots: Uint8Array[];
  #views: DataView[];
  #server: ProtocolServer;
  #reader: Worker;
  #stopping = false;
  #fdClosed = false;
  #ready = Promise.withResolvers<void>();
  #resolveClosed!: () => void;
  #notifyChain: Promise<void> = Promise.resolve();

  private constructor(ops: FuseOperations, handle: MountHandle, opts: SessionOptions) {
    this.#handle = handle;
    this.#fd = handle.fd;
    this.mountpoint = handle.mountpoint;
    this.#maxRead = opts.maxRead ?? 1 << 20;
    // The kernel refuses reads into a buffer smaller than max_write + headers.
    const slotSize = this.#maxRead + 8192;
    const sab = new SharedArrayBuffer(slotBase(SLOTS) + SLOTS * slotSize);
    this.#ctrl = new Int32Array(sab, 0, RING.WORDS + SLOTS);
    this.#slots = Array.from(
      { length: SLOTS },
      (_, i) => new Uint8Array(sab, slotBase(SLOTS) + i * slotSize, slotSize),
    );
    this.#views = this.#slots.map((b) => new DataView(b.buffer, b.byteOffset, b.byteLength));
    const wantPassthrough = opts.passthrough === undefined || opts.passthrough === "auto"
      ? identity().root
      : opts.passthrough;
    this.#server = new ProtocolServer(ops, (buf, len) => this.#write(buf, len), {
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
    this.#reader = new Worker(new URL("./poll_worker.ts", import.meta.url), { type: "module" });
    this.#reader.onerror = (e) => {
      e.preventDefault();
      log.error("FUSE request reader failed: {error}", { error: e.message });
      Atomics.store(this.#ctrl, RING.STATE, RingState.FAILED);
      Atomics.add(this.#ctrl, RING.EVENTS, 1);
      Atomics.notify(this.#ctrl, RING.EVENTS);
    };
    const setup: RingSetup = { fd: this.#fd, wake: this.#wake, sab, slots: SLOTS, slotSize };
    this.#reader.postMessage(setup);
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
    return { requests, errors, inflight, passthrough, passthroughFallbacks };
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
    const buf = new Uint8Array(OUT + FuseNotifyInvalEntry.SIZE + nameBytes.length + 1);
    const v = new DataView(buf.buffer);
    setU64(v, OUT + FuseNotifyInvalEntry.parent, parent);
    v.setUint32(OUT + FuseNotifyInvalEntry.namelen, nameBytes.length, true);
    buf.set(nameBytes, OUT + FuseNotifyInvalEntry.SIZE);
    this.#notify(Notify.INVAL_ENTRY, buf);
  }

  /** Tell the kernel to drop cached attributes (and data in [off, off+len) unless off < 0). */
  notifyInvalInode(ino: number, off = -1, len = 0): void {
    const buf = new Uint8Array(OUT + FuseNotifyInvalInode.SIZE);
    const v = new DataView(buf.buffer);
    setU64(v, OUT + FuseNotifyInvalInode.ino, ino);
    v.setBigInt64(OUT + FuseNotifyInvalInode.off, BigInt(off), true);
    v.setBigInt64(OUT + FuseNotifyInvalInode.len, BigInt(len), true);
    this.#notify(Notify.INVAL_INODE, buf);
  }

  /** Tell the kernel that `name` (inode `child`) was deleted from `parent`. */
  notifyDelete(parent: number, child: number, name: string): void {
    const nameBytes = encoder.encode(name);
    const buf = new Uint8Array(OUT + FuseNotifyDelete.SIZE + nameBytes.length + 1);
    const v = new DataView(buf.buffer);
    setU64(v, OUT + FuseNotifyDelete.parent, parent);
    setU64(v, OUT + FuseNotifyDelete.child, child);
    v.setUint32(OUT + FuseNotifyDelete.namelen, nameBytes.length, true);
    buf.set(nameBytes, OUT + FuseNotifyDelete.SIZE);
    this.#notify(Notify.DELETE, buf);
  }

  /** Resolves when every notification queued so far has been written. */
  flushNotifications(): Promise<void> {
    return this.#notifyChain;
  }

  // Notifications may block in the kernel on locks a pending request holds, so they are
  // written from the thread pool, one at a time, never from inside request handling.
  #notify(code: number, buf: Uint8Array<ArrayBuffer>): void {
    finishNotify(buf, code);
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
    const ctrl = this.#ctrl;
    let tail = 0;
    try {
      for (;;) {
        // Read `events` first: a change after this point wakes the wait below.
        const events = Atomics.load(ctrl, RING.EVENTS);
        const head = Atomics.load(ctrl, RING.HEAD);
        let handled = 0;
        while (tail !== head && handled < MAX_DRAIN && !this.#stopping) {
          const slot = tail & (SLOTS - 1);
          this.#server.handle(this.#slots[slot], ctrl[RING.WORDS + slot], this.#views[slot]);
          tail = (tail + 1) | 0;
          handled++;
          Atomics.store(ctrl, RING.TAIL, tail);
          Atomics.notify(ctrl, RING.TAIL);
        }
        if (this.#stopping) return;
        // A full drain yields through a timer so handlers' I/O completions get their turn.
        if (handled === MAX_DRAIN) {
          await new Promise((r) => setTimeout(r, 0));
          continue;
        }
        if (tail !== Atomics.load(ctrl, RING.HEAD)) continue;
        const state = Atomics.load(ctrl, RING.STATE);
        if (state === RingState.FAILED) {
          throw new SyscallError("read /dev/fuse", Atomics.load(ctrl, RING.ERRNO));
        }
        if (state === RingState.CLOSED) return;
        const w = Atomics.waitAsync(ctrl, RING.EVENTS, events);
        if (w.async) await w.value;
      }
    } catch (e) {
      log.error("FUSE request loop failed: {error}", { error: e, stack: (e as Error).stack });
    } finally {
      this.#stopping = true;
      await this.#notifyChain.catch(() => {});
      await this.#stopReader();
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

  // The reader may be in poll(2) or read(2) on the device: wake it through the eventfd and let
  // it leave its loop before the fds are closed under it (a worker in FFI cannot be terminated).
  async #stopReader(): Promise<void> {
    const ctrl = this.#ctrl;
    Atomics.store(ctrl, RING.STOP, 1);
    Atomics.notify(ctrl, RING.TAIL);
    const one = new BigUint64Array([1n]);
    libc().write(this.#wake, new Uint8Array(one.buffer), u64(8));
    const deadline = performance.now() + 5000;
    while (Atomics.load(ctrl, RING.STATE) === RingState.RUNNING && performance.now() < deadline) {
      const w = Atomics.waitAsync(ctrl, RING.EVENTS, Atomics.load(ctrl, RING.EVENTS), 100);
      if (w.async) await w.value;
    }
    this.#reader.terminate();
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
