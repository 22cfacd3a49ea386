/**
 * Opening source files for reading without ever blocking the request loop, and without being
 * redirected (issue 11 "opens cannot be redirected", issue 12 "nothing blocks the request loop").
 *
 * Hand-written over libc because Deno's file API has no O_NOFOLLOW/O_NONBLOCK opens, no raw
 * fds for kernel passthrough, and no fstat of a raw fd. Every call that may block on a dead or
 * hostile origin (open, fstat, fstatfs, close) runs on the thread pool under a deadline:
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
  libc,
  NETWORK_FS_MAGIC,
  O_CLOEXEC,
  O_NOATIME,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
} from "../sys/mod.ts";

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const F_GETFL = 3;
const F_SETFL = 4;
const FUSE_SUPER_MAGIC = 0x65735546;
const UNSAFE_FS = new Set<number>([FUSE_SUPER_MAGIC, ...Object.values(NETWORK_FS_MAGIC)]);

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
}

/** Parsed `struct stat` (x86_64 and aarch64 glibc layouts). */
interface Stat extends SourceVersion {
  dev: number;
  mode: number;
}

const STAT_SIZE = 144;
const ARCH = Deno.build.arch;

function parseStat(b: Uint8Array<ArrayBuffer>): Stat {
  const v = new DataView(b.buffer);
  const n = (off: number) => Number(v.getBigUint64(off, true));
  const ms = (off: number) => n(off) * 1000 + Math.floor(n(off + 8) / 1e6);
  // Deno's stat (the walk's) gives the ctime in whole seconds: compare like with like.
  const secs = (off: number) => n(off) * 1000;
  if (ARCH === "aarch64") {
    // dev, ino, mode(u32), nlink(u32), uid, gid, rdev, pad, size, blksize(i32), pad, blocks,
    // atim, mtim, ctim
    return {
      dev: n(0),
      ino: n(8),
      mode: v.getUint32(16, true),
      size: n(48),
      mtimeMs: ms(88),
      ctimeMs: secs(104),
    };
  }
  // x86_64: dev, ino, nlink, mode(u32), uid, gid, pad, rdev, size, blksize, blocks, atim,
  // mtim, ctim
  return {
    dev: n(0),
    ino: n(8),
    mode: v.getUint32(24, true),
    size: n(48),
    mtimeMs: ms(88),
    ctimeMs: secs(104),
  };
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

/** Opens source files off the request loop, checked (see the module doc). */
export class SourceOpener {
  readonly #roots: string[];
  readonly #follow: boolean;
  readonly #timeoutMs: number;
  readonly #stuck = new Map<string, number>();
  readonly #nowait = new Map<number, boolean>();
  #root = -1;

  /** An opener for sources inside `opts.roots`. */
  constructor(opts: SourceOpenerOptions) {
    this.#roots = opts.roots.map((r) => r.length > 1 && r.endsWith("/") ? r.slice(0, -1) : r);
    this.#follow = opts.followSymlinks ?? false;
    this.#timeoutMs = opts.timeoutMs ?? 1500;
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
    const attempt = this.#open(path, path, 0);
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

  /** Close a source fd off the loop (a close can wait on a network filesystem). */
  close(fd: number): void {
    if (fd >= 0) libc().close_nb(fd).catch(() => {});
  }

  /** Close a source fd at once (shutdown). */
  closeNow(fd: number): void {
    closeFd(fd);
  }

  #flags(): number {
    // O_NOATIME is refused (EPERM) on files we do not own unless privileged.
    if (this.#root < 0) this.#root = libc().geteuid() === 0 ? 1 : 0;
    return O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | (this.#root ? O_NOATIME : 0);
  }

  async #open(path: string, asked: string, depth: number): Promise<OpenedSource> {
    const l = libc();
    const fd = await l.open_nb(cstr(path), this.#flags(), 0);
    if (fd < 0) return await this.#failed(path, asked, depth);
    let ok = false;
    try {
      const buf = new Uint8Array(STAT_SIZE);
      if (await l.fstat_nb(fd, buf) < 0) {
        throw new SourceOpenError("failed", asked, `Cannot open ${asked}: fstat failed`);
      }
      const st = parseStat(buf);
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
      const fl = l.fcntl(fd, F_GETFL, 0);
      if (fl >= 0) l.fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
      const nowaitSafe = await this.#nowaitSafe(fd, st.dev);
      ok = true;
      return { ...st, fd, realPath, nowaitSafe };
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
        throw new SourceOpenError(
          "denied",
          asked,
          `Cannot open ${asked}: permission denied`,
          Errno.EACCES,
        );
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
        throw new SourceOpenError(
          "denied",
          asked,
          `Cannot open ${asked}: permission denied`,
          Errno.EACCES,
        );
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

  async #nowaitSafe(fd: number, dev: number): Promise<boolean> {
    const known = this.#nowait.get(dev);
    if (known !== undefined) return known;
    const buf = new Uint8Array(120);
    let safe = false;
    if (await libc().fstatfs_nb(fd, buf) === 0) {
      const type = Number(new DataView(buf.buffer).getBigInt64(0, true)) >>> 0;
      safe = !UNSAFE_FS.has(type);
    }
    this.#nowait.set(dev, safe);
    return safe;
  }
}
