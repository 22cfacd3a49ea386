/**
 * The one libc binding of the project, through Deno.dlopen: the FUSE layer, the daemon (health
 * probes, sd_notify) and the filesystem all call these symbols. Hand-written because Deno has no
 * API for /dev/fuse, mount(2), ioctl(2), SCM_RIGHTS, statfs(2) or raw fds, and npm:fuse-native
 * (libfuse) does not run under Deno.
 *
 * errno is thread-local: it is only meaningful right after a synchronous call on this thread,
 * so every call that needs errno is synchronous here, and the blocking waits (`poll`, `pread`)
 * run on Deno's thread pool and report failure as a plain -1.
 */

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // Source-file calls that may block on a dead or hostile origin run on the thread pool.
  open_nb: { name: "open", parameters: ["buffer", "i32", "u32"], result: "i32", nonblocking: true },
  fstat_nb: { name: "fstat", parameters: ["i32", "buffer"], result: "i32", nonblocking: true },
  fstatfs_nb: { name: "fstatfs", parameters: ["i32", "buffer"], result: "i32", nonblocking: true },
  close_nb: { name: "close", parameters: ["i32"], result: "i32", nonblocking: true },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  // openat2(2) has no glibc wrapper: syscall(SYS_openat2, dirfd, path, how, size).
  openat2: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "buffer", "usize"],
    result: "i64",
  },
  openat2_nb: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "buffer", "usize"],
    result: "i64",
    nonblocking: true,
  },
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  write_nb: {
    name: "write",
    parameters: ["i32", "buffer", "usize"],
    result: "i32",
    nonblocking: true,
  },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  pread_nb: {
    name: "pread",
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "i32",
    nonblocking: true,
  },
  preadv2: { parameters: ["i32", "buffer", "i32", "i64", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg_nb: {
    name: "recvmsg",
    parameters: ["i32", "buffer", "i32"],
    result: "i64",
    nonblocking: true,
  },
  statfs: { parameters: ["buffer", "buffer"], result: "i32" },
  statfs_nb: { name: "statfs", parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
  getuid: { parameters: [], result: "u32" },
  getgid: { parameters: [], result: "u32" },
  geteuid: { parameters: [], result: "u32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | undefined;

/** The loaded libc symbols (loaded on first use). */
export function libc(): Lib {
  if (!lib) lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return lib;
}

/** errno of the last synchronous libc call made on this thread. */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** The C library's text for an errno, e.g. `Transport endpoint is not connected`. */
export function strerror(err: number): string {
  const p = libc().strerror(err);
  return p ? new Deno.UnsafePointerView(p).getCString() : `errno ${err}`;
}

/** A failed system call, with the errno and its text. */
export class SyscallError extends Error {
  /** The positive errno. */
  readonly errno: number;
  /** Describe `call` failing with `err`. */
  constructor(call: string, err: number, options?: ErrorOptions) {
    super(`${call}: ${strerror(err)}`, options);
    this.name = "SyscallError";
    this.errno = err;
  }
}

const encoder = new TextEncoder();

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

/** Flags and constants used by the FUSE layer and filesystems. */
export const O_RDONLY = 0;
/** Open for reading and writing. */
export const O_RDWR = 2;
/** Nonblocking I/O. */
export const O_NONBLOCK = 0o4000;
/** Close on exec. */
export const O_CLOEXEC = 0o2000000;
/** Do not update the access time (ignored when not permitted). */
export const O_NOATIME = 0o1000000;
/** Fail with ELOOP when the last path component is a symlink. */
export const O_NOFOLLOW = 0o400000;
/** Fail unless the path is a directory. */
export const O_DIRECTORY = 0o200000;
/** A handle on a place in the tree only: no open of the file itself (usable as a dirfd). */
export const O_PATH = 0o10000000;

/** openat2(2) `resolve`: fail with EXDEV rather than cross a mount point. */
export const RESOLVE_NO_XDEV = 0x01;
/** openat2(2) `resolve`: fail with ELOOP on any symlink in the path. */
export const RESOLVE_NO_SYMLINKS = 0x04;
/** openat2(2) `resolve`: the path must stay below the dirfd (no `..` out, no absolute path). */
export const RESOLVE_BENEATH = 0x08;
/**
 * openat2(2) `resolve` (Linux 5.12): fail with EAGAIN unless every component is in the dentry
 * cache and valid without asking the filesystem, so the lookup does no I/O and cannot wait.
 */
export const RESOLVE_CACHED = 0x20;
/** The syscall number of openat2, the same on every architecture (new syscalls are unified). */
const SYS_OPENAT2 = 437;

// Deno's FFI accepts plain numbers for 64-bit integer parameters; its types say bigint.
// Passing numbers avoids a BigInt allocation per call on the read path.
const u64 = (n: number) => n as unknown as bigint;

/** Open `path` read-only and return the raw fd; throws {@link SyscallError}. */
export function openReadOnly(path: string): number {
  const c = cstr(path);
  let fd = libc().open(c, O_RDONLY | O_CLOEXEC | O_NOATIME, 0);
  // O_NOATIME is refused (EPERM) on files we do not own unless privileged.
  if (fd < 0 && errno() === 1) fd = libc().open(c, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) throw new SyscallError(`open ${path}`, errno());
  return fd;
}

export { u64 };

const OPEN_HOW_SIZE = 24;
// struct open_how { u64 flags, mode, resolve }, written as 32-bit halves (little-endian
// targets) so that a call allocates no BigInt.
const syncHow = new Uint32Array(6);
const syncHowBytes = new Uint8Array(syncHow.buffer);

/**
 * openat2(2) of `path` (a NUL-terminated C string) below `dirfd`, synchronously: the fd, or -1
 * with {@link errno} set (ENOSYS before Linux 5.6). Only for resolutions that cannot block,
 * e.g. with {@link RESOLVE_CACHED} below a directory of a local filesystem.
 */
export function openat2(dirfd: number, path: Uint8Array, flags: number, resolve: number): number {
  syncHow[0] = flags;
  syncHow[4] = resolve;
  const r = libc().openat2(
    u64(SYS_OPENAT2),
    dirfd,
    path as Uint8Array<ArrayBuffer>,
    syncHowBytes,
    u64(OPEN_HOW_SIZE),
  );
  return Number(r);
}

/**
 * openat2(2) of `path` below `dirfd` on the thread pool: the fd, or -1 (errno is not
 * available off-thread). `path` must stay untouched until the promise settles.
 */
export async function openat2Async(
  dirfd: number,
  path: Uint8Array,
  flags: number,
  resolve: number,
): Promise<number> {
  const how = new BigUint64Array([BigInt(flags), 0n, BigInt(resolve)]);
  const r = await libc().openat2_nb(
    u64(SYS_OPENAT2),
    dirfd,
    path as Uint8Array<ArrayBuffer>,
    new Uint8Array(how.buffer),
    u64(OPEN_HOW_SIZE),
  );
  return Number(r);
}

/** Close a raw fd, ignoring errors (there is nothing useful to do about them here). */
export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

/**
 * Read up to `dst.length` bytes at `offset` of `fd` into `dst` on the thread pool.
 * Returns the byte count, or -1 on failure (errno is not available off-thread).
 */
export function preadAsync(fd: number, dst: Uint8Array, offset: number): Promise<number> {
  return libc().pread_nb(fd, dst as Uint8Array<ArrayBuffer>, u64(dst.length), u64(offset));
}

const iov = new BigUint64Array(2);
const iovBytes = new Uint8Array(iov.buffer);
const RWF_NOWAIT = 8;

/**
 * Read from the page cache only: the byte count when all of `dst` (or up to EOF) was cached,
 * else -1 without waiting for the disk (preadv2 with RWF_NOWAIT). Safe on the request loop.
 */
export function preadCached(fd: number, dst: Uint8Array, offset: number): number {
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(dst as Uint8Array<ArrayBuffer>)));
  iov[1] = BigInt(dst.length);
  return libc().preadv2(fd, iovBytes, 1, u64(offset), RWF_NOWAIT);
}

/** Synchronous pread; throws {@link SyscallError}. */
export function preadSync(fd: number, dst: Uint8Array, offset: number): number {
  const n = libc().pread(fd, dst as Uint8Array<ArrayBuffer>, u64(dst.length), u64(offset));
  if (n < 0) throw new SyscallError("pread", errno());
  return n;
}

const POSIX_FADV_WILLNEED = 3;
const SEEK_END = 2;

/**
 * Ask the kernel to start reading `[0, head)` of the file at `path` and, for a larger file,
 * its last `tail` bytes into the page cache, without waiting for the reads (posix_fadvise
 * WILLNEED; nothing is copied here). The open runs on the thread pool (a hung mount pins a pool
 * thread, never the caller); O_NONBLOCK|O_NOFOLLOW: a FIFO or a symlink swapped in since it was
 * listed is skipped. Resolves false when the file could not be opened.
 */
export async function adviseWillNeed(path: string, head: number, tail: number): Promise<boolean> {
  const l = libc();
  const fd = await l.open_nb(cstr(path), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    l.posix_fadvise(fd, u64(0), u64(head), POSIX_FADV_WILLNEED);
    const size = Number(l.lseek(fd, u64(0), SEEK_END));
    if (size > head && tail > 0) {
      const from = Math.max(head, size - tail);
      l.posix_fadvise(fd, u64(from), u64(size - from), POSIX_FADV_WILLNEED);
    }
    return true;
  } finally {
    l.close(fd);
  }
}

/** Filesystem type magic numbers from statfs(2) that mean "network filesystem". */
export const NETWORK_FS_MAGIC: Record<string, number> = {
  nfs: 0x6969,
  smb: 0x517b,
  cifs: 0xff534d42,
  smb2: 0xfe534d42,
  "9p": 0x01021997,
  afs: 0x5346414f,
  ceph: 0x00c36400,
  coda: 0x73757245,
  ncp: 0x564c,
};

/**
 * Filesystem type magic numbers from statfs(2) of block-device and memory filesystems: their
 * metadata calls (fstat, close, a cached path lookup) are answered by the local kernel and never
 * wait for a server. FUSE, network, overlay (its layers may be anything) and every type not
 * listed here are not local.
 */
export const LOCAL_FS_MAGIC: Record<string, number> = {
  ext4: 0xef53, // also ext2 and ext3
  xfs: 0x58465342,
  btrfs: 0x9123683e,
  tmpfs: 0x01021994,
  ramfs: 0x858458f6,
  f2fs: 0xf2f52010,
  bcachefs: 0xca451a4e,
  zfs: 0x2fc12fc1,
  vfat: 0x4d44,
  exfat: 0x2011bab0,
};

/**
 * `f_type` of the filesystem holding `path` (statfs(2) on the thread pool, so a hanging
 * filesystem can be abandoned); undefined when statfs fails.
 */
export async function statfsTypeAsync(path: string): Promise<number | undefined> {
  const buf = new Uint8Array(120);
  if ((await libc().statfs_nb(cstr(path), buf)) < 0) return undefined;
  return Number(new DataView(buf.buffer).getBigInt64(0, true)) >>> 0;
}

/** `f_type` of the filesystem holding `path` (statfs(2)); throws {@link SyscallError}. */
export function statfsType(path: string): number {
  const buf = new Uint8Array(120);
  if (libc().statfs(cstr(path), buf) < 0) throw new SyscallError(`statfs ${path}`, errno());
  return Number(new DataView(buf.buffer).getBigInt64(0, true)) >>> 0;
}

/** The process's real uid and gid, and whether it runs as root. */
export function identity(): { uid: number; gid: number; root: boolean } {
  const l = libc();
  return { uid: l.getuid(), gid: l.getgid(), root: l.geteuid() === 0 };
}

/**
 * Give the C heap's free pages back to the system (glibc `malloc_trim`): after a scan or a
 * dropped tree, the memory freed by workers and SQLite otherwise stays in the process's
 * resident set. Best effort; false when it released nothing or is not there.
 */
export function releaseFreeMemory(): boolean {
  try {
    return libc().malloc_trim(0n) === 1;
  } catch {
    return false;
  }
}
