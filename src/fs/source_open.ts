/**
 * Opening source files for reading without ever blocking the request loop, and without being
 * redirected (issue 11 "opens cannot be redirected", issue 12 "nothing blocks the request loop").
 *
 * Hand-written over libc because Deno's file API has no O_NOFOLLOW/O_NONBLOCK opens, no openat2,
 * no raw fds for kernel passthrough, and no fstat of a raw fd.
 *
 * Each thread-pool round trip costs a wake-up of a pool thread and of the event loop (about
 * 15-25 µs each on a loaded 2-core machine, next to ~80 µs for a whole open + close through
 * libfuse), so an open takes as few as its filesystem allows (issue 13):
 *
 * - **On the loop, no round trip**: below a library root whose filesystem is local (a block
 *   device or memory filesystem, LOCAL_FS_MAGIC, learnt once with fstatfs on the pool through an
 *   O_PATH fd of the root), `openat2(rootfd, rel, RESOLVE_CACHED | RESOLVE_NO_XDEV |
 *   RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)`. The kernel answers from its dentry cache alone or
 *   fails with EAGAIN (no I/O, no revalidation), never crosses into another mount (a FUSE or
 *   network mount below the root fails with EXDEV before it is asked anything), never follows a
 *   symlink, `.` or `..` (paths with those take the pool), so the file is on the root's own
 *   local filesystem, the one `path` names. fstat and close of such a file are answered by the
 *   local kernel too. The flags are the general path's (O_NONBLOCK: a FIFO opens at once, and
 *   fstat refuses it). Any failure leaves the open to the paths below, which name it. (One
 *   wait remains possible on any open, here as on the pool: a fanotify permission listener,
 *   such as an on-access virus scanner, that does not answer.)
 * - **One round trip**: the same openat2 without RESOLVE_CACHED on the pool (it may read the
 *   disk), then fstat and /proc/self/fd on the loop.
 * - **Everything else** (another filesystem, a symlink, an error): the general path below,
 *   where every call that may block on a dead or hostile origin (open, fstat, fstatfs, close)
 *   runs on the thread pool.
 *
 * The local verdict cannot go stale: it belongs to the root's fd, and NO_XDEV keeps an open on
 * that fd's mount. What can change is which directory the root's path names. A mount over it:
 * a poll of /proc/self/mountinfo (one syscall, no wait) before each open drops the root fds and
 * the per-device verdicts on any mount table change, and they are learnt again on the pool. A
 * rename: /proc/self/fd of the root's fd must still name the root, checked every 100 ms. A root
 * on a hung filesystem holds at most one pool thread, for its one check at a time.
 *
 * The general path, under a deadline:
 *
 * - `open(O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC)`: a FIFO or device opens at once instead of
 *   waiting for a writer, and a symlink in the last component fails (ELOOP) instead of being
 *   followed. A symlink is then followed only when its target lies inside a library root (or
 *   with `followSymlinks`), and its target is opened the same way.
 * - `fstat` of the opened fd: anything but a regular file is closed and answered EIO.
 * - `/proc/self/fd/N` names what was really opened: a directory component swapped for a symlink
 *   out of the library is caught there, whatever raced with the open.
 * - O_NONBLOCK is cleared again (reads of a regular file ignore it, but a backing file for
 *   kernel passthrough should look like an ordinary open).
 *
 * An open that does not finish in time answers EIO; when it returns later its fd is closed.
 * While an open of an origin is stuck, further opens of that origin fail at once, so blocked
 * opens cannot pile up on the shared blocking threads.
 *
 * @module
 */
import { Errno, FsError } from "../fuse/mod.ts";
import {
  closeFd,
  errno,
  libc,
  LOCAL_FS_MAGIC,
  MountWatch,
  NETWORK_FS_MAGIC,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOATIME,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  openat2,
  openat2Async,
  RESOLVE_BENEATH,
  RESOLVE_CACHED,
  RESOLVE_NO_SYMLINKS,
  RESOLVE_NO_XDEV,
} from "../sys/mod.ts";

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const F_SETFL = 4;
const FUSE_SUPER_MAGIC = 0x65735546;
const UNSAFE_FS = new Set<number>([FUSE_SUPER_MAGIC, ...Object.values(NETWORK_FS_MAGIC)]);
const LOCAL_FS = new Set<number>(Object.values(LOCAL_FS_MAGIC));
const ENOSYS = 38;
const EINVAL = 22;
/** Below a local root: no symlink, no mount crossed, nothing above the root. */
const BENEATH = RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH;

/** What identifies one version of a source file. */
export interface SourceVersion {
  /** Size in bytes. */
  size: number;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /**
   * Status-change time, ms since the epoch, in whole seconds as Deno's stat gives it (any
   * rewrite moves it, even one restoring the mtime).
   */
  ctimeMs: number;
  /** Inode number (a temp file renamed over the source gets a new one). */
  ino: number;
}

/** A source file opened for reading. */
export interface OpenedSource extends SourceVersion {
  /** The raw fd; close it with {@link SourceOpener.close}. */
  fd: number;
  /** Device of the file. */
  dev: number;
  /** Where the fd really points (from /proc/self/fd). */
  realPath: string;
  /**
   * Whether a page-cache-only read (`RWF_NOWAIT`) of it is safe on the request loop: false on
   * FUSE and network filesystems, where even such a read can wait for the server.
   */
  nowaitSafe: boolean;
  /**
   * Thread-pool round trips this open took: 0 when it was found below a local root entirely in
   * the kernel's caches, 1 when it was opened below a local root on the pool, 2 or more on
   * any other filesystem (open and fstat on the pool; its close goes there too).
   */
  hops: number;
}

/** Why a source could not be opened. */
export type SourceFaultKind =
  | "not-regular"
  | "symlink-outside"
  | "outside-root"
  | "missing"
  | "denied"
  | "timeout"
  | "stuck"
  | "failed";

/** A source open refused or failed; `errno` is what the FUSE request answers. */
export class SourceOpenError extends FsError {
  /** What went wrong. */
  readonly fault: SourceFaultKind;
  /** The source path. */
  readonly path: string;
  /** Describe a failed open of `path`. */
  constructor(fault: SourceFaultKind, path: string, message: string, errno: number = Errno.EIO) {
    super(errno, message);
    this.name = "SourceOpenError";
    this.fault = fault;
    this.path = path;
  }

  /** Whether the library changed under this path (a swap, a vanished file): worth a rescan. */
  get libraryChanged(): boolean {
    return this.fault === "not-regular" || this.fault === "symlink-outside" ||
      this.fault === "outside-root" || this.fault === "missing";
  }
}

/** Options of {@link SourceOpener}. */
export interface SourceOpenerOptions {
  /** Library roots (absolute, resolved); sources must lie inside one of them. */
  roots: string[];
  /** Follow symlinks whose target lies outside every root (`--follow-symlinks`). */
  followSymlinks?: boolean;
  /** Deadline of one open, ms. Default 1500 (the health probe's). */
  timeoutMs?: number;
  /**
   * Open below local roots with the calls that cannot wait on the request loop (see the module
   * doc). Default true; false sends every open through the thread pool.
   */
  loopOpens?: boolean;
}

const STAT_SIZE = 144;
const ARCH = Deno.build.arch;

// Offsets in `struct stat`. x86_64: dev, ino, nlink, mode(u32), uid, gid, pad, rdev, size,
// blksize, blocks, atim, mtim, ctim. aarch64: dev, ino, mode(u32), nlink(u32), uid, gid, rdev,
// pad, size, blksize(i32), pad, blocks, atim, mtim, ctim.
const ST_MODE = ARCH === "aarch64" ? 16 : 24;
const ST_SIZE = 48;
const ST_MTIM = 88;
const ST_CTIM = 104;

/** A u64 field as two 32-bit halves: no BigInt per field. */
function u64At(v: DataView, off: number): number {
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * 0x1_0000_0000;
}

const encoder = new TextEncoder();

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

/** Whether `path` is `root` or below it. */
export function isInside(path: string, root: string): boolean {
  if (root === "/") return path.startsWith("/");
  return path === root || path.startsWith(root + "/");
}

function kindOf(mode: number): string {
  switch (mode & S_IFMT) {
    case 0o010000:
      return "a FIFO";
    case 0o140000:
      return "a socket";
    case 0o020000:
      return "a character device";
    case 0o060000:
      return "a block device";
    case 0o040000:
      return "a directory";
    default:
      return "not a regular file";
  }
}

/** A library root, held open while it is known to lie on a local filesystem. */
interface Root {
  path: string;
  /** Where a source's path below this root starts, in bytes (after the root and its "/"). */
  relAt: number;
  /** The path as bytes (what /proc/self/fd shows for `fd` while the root stays put). */
  bytes: Uint8Array;
  /** An O_PATH fd of the root while `state` is "local", else -1. */
  fd: number;
  state: "unknown" | "checking" | "local" | "other";
  /** When `fd` was last seen to be the root's path, performance.now() ms. */
  seenAt: number;
  /** No check before this time (the root could not be opened), performance.now() ms. */
  retryAt: number;
  /** The path buffer from `relAt` on, and the buffer it views. */
  rel?: Uint8Array;
  relOf?: Uint8Array;
}

const PROC_FD = "/proc/self/fd/";
/**
 * How long the fd of a local root is trusted to still be the directory its path names. A root
 * renamed or moved away (a mount over it is seen at once, by the mount watch) keeps serving its
 * files for at most this long, then its opens take the general path (and answer as it does).
 */
const ROOT_SEEN_MS = 100;
/** A root that could not be opened is asked again after this long. */
const ROOT_RETRY_MS = 1000;
/** `.` or `..` components, or an empty one: such paths take the general path. */
const ODD_PATH = /\/\.{0,2}(?:\/|$)/;

/** What a source's filesystem allows on the request loop. */
interface FsVerdict {
  /** Page-cache-only reads (`RWF_NOWAIT`): not on FUSE or network filesystems. */
  nowait: boolean;
  /** fstat and close: only on the block-device and memory filesystems of LOCAL_FS_MAGIC. */
  local: boolean;
}

/** An {@link OpenedSource} from a `struct stat`. */
function opened(
  v: DataView,
  fd: number,
  realPath: string,
  nowaitSafe: boolean,
  hops: number,
): OpenedSource & { mode: number } {
  return {
    size: u64At(v, ST_SIZE),
    mtimeMs: u64At(v, ST_MTIM) * 1000 + Math.floor(u64At(v, ST_MTIM + 8) / 1e6),
    ctimeMs: u64At(v, ST_CTIM) * 1000,
    ino: u64At(v, 8),
    dev: u64At(v, 0),
    mode: v.getUint32(ST_MODE, true),
    fd,
    realPath,
    nowaitSafe,
    hops,
  };
}

/** Opens source files off the request loop, checked (see the module doc). */
export class SourceOpener {
  readonly #roots: string[];
  readonly #follow: boolean;
  readonly #timeoutMs: number;
  readonly #stuck = new Map<string, number>();
  /** Per device: what its filesystem allows (dropped on any mount table change). */
  readonly #nowait = new Map<number, FsVerdict>();
  #root = -1;
  // The local-root paths (see the module doc). Buffers are reused: the loop calls are synchronous.
  readonly #local: Root[];
  #watch: MountWatch | undefined;
  /** Bumped on every mount table change. */
  #mountGen = 0;
  #noLoopOpens = false;
  readonly #loopOpens: boolean;
  /** Pool opens below a root fd in flight; root fds retired meanwhile are closed after them. */
  #beneath = 0;
  readonly #retired: number[] = [];
  #disposed = false;
  #pathBuf = new Uint8Array(4096);
  #pathLen = 0;
  readonly #linkBuf = new Uint8Array(4096);
  readonly #procBuf = new Uint8Array(32);
  readonly #statBuf = new Uint8Array(STAT_SIZE);
  readonly #statView = new DataView(this.#statBuf.buffer);
  /** Fds on a local filesystem: closed on the loop. */
  readonly #closeNow = new Set<number>();

  /** An opener for sources inside `opts.roots`. */
  constructor(opts: SourceOpenerOptions) {
    this.#roots = opts.roots.map((r) => r.length > 1 && r.endsWith("/") ? r.slice(0, -1) : r);
    this.#follow = opts.followSymlinks ?? false;
    this.#timeoutMs = opts.timeoutMs ?? 1500;
    this.#loopOpens = opts.loopOpens ?? true;
    this.#local = this.#roots.map((path) => {
      const bytes = encoder.encode(path);
      return {
        path,
        bytes,
        relAt: path === "/" ? 1 : bytes.length + 1,
        fd: -1,
        state: "unknown",
        seenAt: 0,
        retryAt: 0,
      };
    });
    encoder.encodeInto(PROC_FD, this.#procBuf);
  }

  /** Opens of each group (origin) still stuck past their deadline. */
  get stuck(): number {
    let n = 0;
    for (const v of this.#stuck.values()) n += v;
    return n;
  }

  /**
   * Open `path` for reading; `group` names its origin (stuck opens are counted per group).
   * Rejects with {@link SourceOpenError}.
   */
  async open(path: string, group = ""): Promise<OpenedSource> {
    const stuck = this.#stuck.get(group) ?? 0;
    if (stuck > 0) {
      throw new SourceOpenError(
        "stuck",
        path,
        `Cannot open ${path}: ${stuck} earlier open(s) of its library are still stuck`,
      );
    }
    this.#mountsChanged();
    const root = this.#localRoot(path);
    if (root) {
      const fast = this.#loopOpens ? this.#openCached(root, path) : undefined;
      if (fast) return fast;
    }
    const attempt = root ? this.#openBeneath(root, path) : this.#open(path, path, 0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), this.#timeoutMs);
    });
    try {
      const got = await Promise.race([attempt, timeout]);
      if (got !== "timeout") return got;
    } finally {
      clearTimeout(timer);
    }
    this.#stuck.set(group, (this.#stuck.get(group) ?? 0) + 1);
    const release = () => {
      const n = (this.#stuck.get(group) ?? 1) - 1;
      if (n > 0) this.#stuck.set(group, n);
      else this.#stuck.delete(group);
    };
    attempt.then((s) => {
      release();
      this.close(s.fd);
    }, release);
    throw new SourceOpenError(
      "timeout",
      path,
      `Cannot open ${path}: no answer within ${this.#timeoutMs} ms`,
    );
  }

  /**
   * Close a source fd: on the loop when it lies on a local filesystem, else on the thread pool
   * (a close can wait on a network filesystem).
   */
  close(fd: number): void {
    if (fd < 0) return;
    if (this.#closeNow.delete(fd)) libc().close(fd);
    else libc().close_nb(fd).catch(() => {});
  }

  /** Close a source fd at once (shutdown). */
  closeNow(fd: number): void {
    this.#closeNow.delete(fd);
    closeFd(fd);
  }

  /**
   * Learn now which roots lie on a local filesystem (otherwise the first open below each root
   * asks). A root on a hung filesystem never answers: do not wait for this without a deadline.
   */
  async prepare(): Promise<void> {
    this.#mountsChanged();
    await Promise.all(this.#local.map((r) => r.state === "unknown" ? this.#check(r) : undefined));
  }

  /** Close the roots' fds and the mount watch; later opens all take the thread pool. */
  dispose(): void {
    this.#disposed = true;
    for (const r of this.#local) this.#forget(r);
    this.#watch?.close();
    this.#watch = undefined;
  }

  /**
   * Whether the mount table changed since the last look; if so every root is checked again and
   * the filesystem verdicts kept per device are dropped (a device number can come back as
   * another filesystem).
   */
  #mountsChanged(): boolean {
    if (this.#disposed) return false;
    if (!this.#watch) {
      this.#watch = new MountWatch();
      // Without a view of the mount table a root's fd could not be trusted: the pool always.
      if (!this.#watch.watching) this.#noLoopOpens = true;
    } else if (!this.#watch.changed()) return false;
    this.#mountGen++;
    this.#nowait.clear();
    for (const r of this.#local) this.#forget(r);
    return true;
  }

  #flags(): number {
    // O_NOATIME is refused (EPERM) on files we do not own unless privileged.
    if (this.#root < 0) this.#root = libc().geteuid() === 0 ? 1 : 0;
    return O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | (this.#root ? O_NOATIME : 0);
  }

  /**
   * The root `path` lies in when that root is held open on a local filesystem. After any change
   * of the mount table (something mounted over a root, say) every root is checked again first.
   */
  #localRoot(path: string): Root | undefined {
    if (this.#noLoopOpens || this.#disposed) return undefined;
    for (const r of this.#local) {
      if (path === r.path || !isInside(path, r.path)) continue;
      if (r.state === "local") {
        const now = performance.now();
        if (now - r.seenAt < ROOT_SEEN_MS) return r;
        if (this.#fdIs(r.fd, r.bytes, r.bytes.length)) {
          r.seenAt = now;
          return r;
        }
        this.#forget(r); // renamed or moved: learnt again through its path
      }
      if (r.state === "unknown" && performance.now() >= r.retryAt) this.#check(r);
      return undefined;
    }
    return undefined;
  }

  #forget(r: Root): void {
    // An O_PATH fd: its close touches no filesystem. Not while a pool open may still use it.
    if (r.fd >= 0) {
      if (this.#beneath > 0) this.#retired.push(r.fd);
      else closeFd(r.fd);
    }
    r.fd = -1;
    if (r.state !== "checking") r.state = "unknown";
  }

  /** Open `r` (O_PATH) and learn its filesystem, both on the pool: a dead root only costs a thread. */
  async #check(r: Root): Promise<void> {
    r.state = "checking";
    const gen = this.#mountGen;
    let fd = -1;
    let local = false;
    try {
      fd = await libc().open_nb(cstr(r.path), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
      const buf = new Uint8Array(120);
      if (fd >= 0 && await libc().fstatfs_nb(fd, buf) === 0) {
        local = LOCAL_FS.has(Number(new DataView(buf.buffer).getBigInt64(0, true)) >>> 0);
      }
    } finally {
      // A mount change while checking: the answer may be stale, ask again on the next open.
      const stale = this.#mountsChanged() || gen !== this.#mountGen || this.#disposed;
      if (local && !stale) {
        r.fd = fd;
        r.state = "local";
        r.seenAt = performance.now();
      } else {
        if (fd >= 0) closeFd(fd);
        r.state = local || stale || fd < 0 ? "unknown" : "other";
        if (fd < 0) r.retryAt = performance.now() + ROOT_RETRY_MS;
      }
    }
  }

  /** `path` (below `r`) as a C string in the shared path buffer; false when too long. */
  #encode(path: string): boolean {
    if (path.length * 3 + 1 > this.#pathBuf.length) {
      if (path.length * 3 + 1 > 65536) return false;
      this.#pathBuf = new Uint8Array(path.length * 3 + 1);
    }
    const n = encoder.encodeInto(path, this.#pathBuf).written;
    this.#pathBuf[n] = 0;
    this.#pathLen = n;
    return true;
  }

  /** The shared path buffer from `r.relAt` on (where the path below `r` starts). */
  #rel(r: Root): Uint8Array {
    if (r.relOf !== this.#pathBuf) {
      r.relOf = this.#pathBuf;
      r.rel = this.#pathBuf.subarray(r.relAt);
    }
    return r.rel!;
  }

  /**
   * The open on the loop: below a local root, with every path component in the kernel's caches
   * (RESOLVE_CACHED), no symlink and no mount crossed, nothing can wait. Anything else (not
   * cached, a symlink, a mount, an error of any kind) is left to the pool path, undefined.
   */
  #openCached(r: Root, path: string): OpenedSource | undefined {
    if (ODD_PATH.test(path) || !this.#encode(path)) return undefined;
    const l = libc();
    const fd = openat2(r.fd, this.#rel(r), this.#flags(), BENEATH | RESOLVE_CACHED);
    if (fd < 0) {
      const e = errno();
      // Before Linux 5.6 (no openat2) or 5.12 (no RESOLVE_CACHED): the pool path from now on.
      if (e === ENOSYS || e === EINVAL) this.#noLoopOpens = true;
      return undefined;
    }
    this.#closeNow.delete(fd); // a new file under that number
    // Below the root's fd, with no symlink, mount, `.` or `..` on the way: the file is the one
    // `path` names as long as the root's fd is its path (checked in #localRoot).
    // Anything but a regular file (a device's release may wait) is closed on the pool, and the
    // pool path names the fault.
    if (l.fstat(fd, this.#statBuf) < 0) {
      this.close(fd);
      return undefined;
    }
    const src = opened(this.#statView, fd, path, true, 0);
    if ((src.mode & S_IFMT) !== S_IFREG) {
      this.close(fd);
      return undefined;
    }
    this.#blocking(fd);
    this.#closeNow.add(fd);
    return src;
  }

  /**
   * The pool path below a local root: one round trip for the open (it may read the disk), then
   * fstat and /proc/self/fd on the loop, since the file is on the root's local filesystem.
   */
  async #openBeneath(r: Root, path: string): Promise<OpenedSource> {
    const c = cstr(path);
    this.#beneath++;
    let fd: number;
    try {
      fd = await openat2Async(r.fd, c.subarray(r.relAt), this.#flags(), BENEATH);
    } finally {
      if (--this.#beneath === 0) { for (const old of this.#retired.splice(0)) closeFd(old); }
    }
    // A symlink, a mount crossed, an error: the general path, which follows or names it.
    if (fd < 0) return await this.#open(path, path, 0);
    this.#closeNow.delete(fd); // a new file under that number
    const l = libc();
    if (l.fstat(fd, this.#statBuf) < 0 || !this.#encode(path) || !this.#fdIs(fd)) {
      this.close(fd);
      return await this.#open(path, path, 0);
    }
    const src = opened(this.#statView, fd, path, true, 1);
    if ((src.mode & S_IFMT) !== S_IFREG) {
      this.close(fd); // on the pool: a device's release may wait
      throw new SourceOpenError(
        "not-regular",
        path,
        `Cannot open ${path}: it is ${kindOf(src.mode)}, not a regular file`,
      );
    }
    this.#blocking(fd);
    this.#closeNow.add(fd);
    return src;
  }

  /** Whether /proc/self/fd names `fd` as `want` (default: the path in the path buffer). */
  #fdIs(fd: number, want: Uint8Array = this.#pathBuf, len = this.#pathLen): boolean {
    let at = PROC_FD.length;
    const digits = String(fd);
    for (let i = 0; i < digits.length; i++) this.#procBuf[at++] = digits.charCodeAt(i);
    this.#procBuf[at] = 0;
    const n = Number(libc().readlink(this.#procBuf, this.#linkBuf, this.#linkBuf.length as never));
    if (n !== len) return false;
    for (let i = 0; i < n; i++) if (this.#linkBuf[i] !== want[i]) return false;
    return true;
  }

  /** Clear O_NONBLOCK again: a backing file for kernel passthrough should look ordinary. */
  #blocking(fd: number): void {
    // F_SETFL sets only the status flags (O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME, O_NONBLOCK),
    // of which an open here sets O_NONBLOCK and maybe O_NOATIME: no F_GETFL needed.
    libc().fcntl(fd, F_SETFL, this.#flags() & O_NOATIME);
  }

  async #open(path: string, asked: string, depth: number): Promise<OpenedSource> {
    const l = libc();
    const fd = await l.open_nb(cstr(path), this.#flags(), 0);
    if (fd < 0) return await this.#failed(path, asked, depth);
    // The number is this file's now: whatever was known of an earlier fd with it is stale.
    this.#closeNow.delete(fd);
    let ok = false;
    try {
      const buf = new Uint8Array(STAT_SIZE);
      if (await l.fstat_nb(fd, buf) < 0) {
        throw new SourceOpenError("failed", asked, `Cannot open ${asked}: fstat failed`);
      }
      const st = opened(new DataView(buf.buffer), fd, path, false, 2);
      if ((st.mode & S_IFMT) !== S_IFREG) {
        throw new SourceOpenError(
          "not-regular",
          asked,
          `Cannot open ${asked}: it is ${kindOf(st.mode)}, not a regular file`,
        );
      }
      let realPath: string;
      try {
        realPath = Deno.readLinkSync(`/proc/self/fd/${fd}`);
      } catch {
        realPath = path;
      }
      if (!this.#follow && !this.#inRoots(realPath)) {
        throw new SourceOpenError(
          "outside-root",
          asked,
          `Cannot open ${asked}: it leads out of the library (to ${realPath})`,
        );
      }
      this.#blocking(fd);
      const fs = await this.#fsOf(fd, st.dev);
      ok = true;
      if (fs.local) this.#closeNow.add(fd);
      st.realPath = realPath;
      st.nowaitSafe = fs.nowait;
      if (fs.asked) st.hops++;
      return st;
    } finally {
      if (!ok) this.close(fd);
    }
  }

  /** The open of `path` failed: tell why, or follow an allowed symlink. */
  async #failed(path: string, asked: string, depth: number): Promise<OpenedSource> {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new SourceOpenError(
          "missing",
          asked,
          `Cannot open ${asked}: it vanished`,
          Errno.ENOENT,
        );
      }
      if (e instanceof Deno.errors.PermissionDenied) {
        throw deniedError(asked);
      }
      throw new SourceOpenError("failed", asked, `Cannot open ${asked}: ${(e as Error).message}`);
    }
    if (info.isSymlink) {
      if (depth > 0) {
        throw new SourceOpenError("symlink-outside", asked, `Cannot open ${asked}: symlink loop`);
      }
      let target: string;
      try {
        target = await Deno.realPath(path);
      } catch (e) {
        const missing = e instanceof Deno.errors.NotFound;
        throw new SourceOpenError(
          missing ? "missing" : "symlink-outside",
          asked,
          `Cannot open ${asked}: ${missing ? "broken symlink" : (e as Error).message}`,
          missing ? Errno.ENOENT : Errno.EIO,
        );
      }
      if (!this.#follow && !this.#inRoots(target)) {
        throw new SourceOpenError(
          "symlink-outside",
          asked,
          `Cannot open ${asked}: symlink to ${target}, outside the library ` +
            `(--follow-symlinks allows it)`,
        );
      }
      return await this.#open(target, asked, depth + 1);
    }
    if (!info.isFile) {
      throw new SourceOpenError(
        "not-regular",
        asked,
        `Cannot open ${asked}: it is ${kindOf(info.mode ?? 0)}, not a regular file`,
      );
    }
    // A regular file we may not read (or a race): its errno from an ordinary open.
    try {
      const f = await Deno.open(path, { read: true });
      f.close();
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied) {
        throw deniedError(asked);
      }
      // Out of file descriptors keeps its errno: the daemon counts and logs those.
      const m = /os error (2[34])\b/.exec((e as Error).message);
      throw new SourceOpenError(
        "failed",
        asked,
        `Cannot open ${asked}: ${(e as Error).message}`,
        m ? Number(m[1]) : Errno.EIO,
      );
    }
    throw new SourceOpenError("failed", asked, `Cannot open ${asked}: it changed while opening`);
  }

  #inRoots(p: string): boolean {
    for (const r of this.#roots) if (isInside(p, r)) return true;
    return false;
  }

  /** What the filesystem of `fd` (on device `dev`) allows, asked once per device. */
  async #fsOf(fd: number, dev: number): Promise<FsVerdict & { asked: boolean }> {
    this.#mountsChanged();
    const known = this.#nowait.get(dev);
    if (known) return { ...known, asked: false };
    const buf = new Uint8Array(120);
    let v: FsVerdict = { nowait: false, local: false };
    if (await libc().fstatfs_nb(fd, buf) === 0) {
      const type = Number(new DataView(buf.buffer).getBigInt64(0, true)) >>> 0;
      v = { nowait: !UNSAFE_FS.has(type), local: LOCAL_FS.has(type) };
    }
    this.#nowait.set(dev, v);
    return { ...v, asked: true };
  }
}

/** The open of `asked` was refused by the source's permissions. */
function deniedError(asked: string): SourceOpenError {
  return new SourceOpenError(
    "denied",
    asked,
    `Cannot open ${asked}: permission denied`,
    Errno.EACCES,
  );
}
