/**
 * FUSE kernel protocol numbers and struct encoders (include/uapi/linux/fuse.h, 7.45).
 * Hand-written: there is no libfuse under Deno (see libc.ts). All structs are little-endian,
 * x86_64 layout; offsets are documented in shared/notes/fuse-protocol.md.
 */
import type { Attr, StatFs } from "./ops.ts";

/** Request opcodes. */
export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
} as const;

/** Opcodes that would modify the filesystem: always EROFS. */
export const WRITE_OPS: ReadonlySet<number> = new Set([
  Op.SETATTR,
  Op.SYMLINK,
  Op.MKNOD,
  Op.MKDIR,
  Op.UNLINK,
  Op.RMDIR,
  Op.RENAME,
  Op.LINK,
  Op.WRITE,
  Op.SETXATTR,
  Op.REMOVEXATTR,
  Op.CREATE,
  Op.FALLOCATE,
  Op.RENAME2,
  Op.COPY_FILE_RANGE,
  Op.TMPFILE,
]);

/** INIT flags (bits of `flags`; PASSTHROUGH is bit 5 of `flags2`). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  INIT_EXT: 1 << 30,
} as const;

/** flags2 bit for kernel passthrough (FUSE_PASSTHROUGH = 1 << 37). */
export const INIT2_PASSTHROUGH = 1 << 5;

/** `fuse_open_out.open_flags`. */
export const FOPEN_DIRECT_IO = 1 << 0;
/** Keep the page cache across opens. */
export const FOPEN_KEEP_CACHE = 1 << 1;
/** Let the kernel cache directory listings. */
export const FOPEN_CACHE_DIR = 1 << 3;
/** No FLUSH on close (nothing to flush on a read-only filesystem). */
export const FOPEN_NOFLUSH = 1 << 5;
/** Reads go to the backing file in the kernel. */
export const FOPEN_PASSTHROUGH = 1 << 7;

/** Notification codes (sent as `error` with unique 0). */
export const Notify = { INVAL_INODE: 2, INVAL_ENTRY: 3, DELETE: 6 } as const;

/** ioctls on /dev/fuse for passthrough backing files. */
export const FUSE_DEV_IOC_BACKING_OPEN = 0x4010e501;
/** Release a backing id. */
export const FUSE_DEV_IOC_BACKING_CLOSE = 0x4004e502;

/** Header sizes. */
export const IN_HEADER = 40;
/** Reply header size. */
export const OUT_HEADER = 16;
/** `fuse_attr` size. */
export const ATTR_SIZE = 88;
/** `fuse_entry_out` size. */
export const ENTRY_OUT = 128;

/** Write a non-negative safe integer as a u64 without a BigInt (hot path). */
export function setU64(v: DataView, off: number, n: number): void {
  if (n < 0) {
    v.setBigInt64(off, BigInt(Math.trunc(n)), true);
    return;
  }
  v.setUint32(off, n >>> 0, true);
  v.setUint32(off + 4, Math.floor(n / 4294967296), true);
}

/** Read a u64 as a number (exact below 2^53). */
export function getU64(v: DataView, off: number): number {
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * 4294967296;
}

/** Write a `fuse_attr` at `off`. */
export function writeAttr(v: DataView, off: number, a: Attr): void {
  const mtime = a.mtimeMs;
  const atime = a.atimeMs ?? mtime;
  const ctime = a.ctimeMs ?? mtime;
  setU64(v, off, a.ino);
  setU64(v, off + 8, a.size);
  setU64(v, off + 16, a.blocks ?? Math.ceil(a.size / 512));
  writeTime(v, off + 24, off + 48, atime);
  writeTime(v, off + 32, off + 52, mtime);
  writeTime(v, off + 40, off + 56, ctime);
  v.setUint32(off + 60, a.mode, true);
  v.setUint32(off + 64, a.nlink, true);
  v.setUint32(off + 68, a.uid, true);
  v.setUint32(off + 72, a.gid, true);
  v.setUint32(off + 76, 0, true);
  v.setUint32(off + 80, a.blksize ?? 65536, true);
  v.setUint32(off + 84, 0, true);
}

function writeTime(v: DataView, secOff: number, nsecOff: number, ms: number): void {
  const sec = Math.floor(ms / 1000);
  setU64(v, secOff, sec);
  v.setUint32(nsecOff, Math.round((ms - sec * 1000) * 1e6) % 1e9, true);
}

/** Write a TTL in milliseconds as (seconds u64 at secOff, nanoseconds u32 at nsecOff). */
export function writeTtl(v: DataView, secOff: number, nsecOff: number, ms: number): void {
  const sec = Math.floor(ms / 1000);
  setU64(v, secOff, sec);
  v.setUint32(nsecOff, Math.round((ms - sec * 1000) * 1e6) % 1e9, true);
}

/** Write a `fuse_entry_out` (128 B) at `off`; nodeid = attr.ino, generation 0. */
export function writeEntryOut(
  v: DataView,
  off: number,
  attr: Attr,
  entryTtlMs: number,
  attrTtlMs: number,
): void {
  setU64(v, off, attr.ino);
  setU64(v, off + 8, 0);
  writeTtl(v, off + 16, off + 32, entryTtlMs);
  writeTtl(v, off + 24, off + 36, attrTtlMs);
  writeAttr(v, off + 40, attr);
}

/** Write a `fuse_kstatfs` (80 B) at `off`. */
export function writeStatfs(v: DataView, off: number, s: StatFs): void {
  setU64(v, off, s.blocks);
  setU64(v, off + 8, s.bfree);
  setU64(v, off + 16, s.bavail);
  setU64(v, off + 24, s.files);
  setU64(v, off + 32, s.ffree);
  v.setUint32(off + 40, s.bsize, true);
  v.setUint32(off + 44, s.namelen, true);
  v.setUint32(off + 48, s.frsize, true);
  for (let i = 52; i < 80; i += 4) v.setUint32(off + i, 0, true);
}

/** Round up to a multiple of 8 (dirent alignment). */
export function align8(n: number): number {
  return (n + 7) & ~7;
}
