/**
 * The FUSE kernel protocol's structs (include/uapi/linux/fuse.h, 7.45): for each, its size and
 * named field offsets, and one encoder or decoder, like go-fuse's types.go. Hand-written: there
 * is no libfuse under Deno (see sys/libc.ts). Little-endian, x86_64/arm64 layout; the field list
 * is also in shared/notes/fuse-protocol.md. Encoders write into a caller's buffer so the hot
 * path allocates nothing.
 */
import type { Attr, StatFs } from "./ops.ts";

/** `fuse_in_header`: every request starts with it. */
export const FuseInHeader = {
  SIZE: 40,
  len: 0,
  opcode: 4,
  unique: 8,
  nodeid: 16,
  uid: 24,
  gid: 28,
  pid: 32,
  totalExtlen: 36,
} as const;

/** `fuse_out_header`: every reply and notification starts with it. */
export const FuseOutHeader = { SIZE: 16, len: 0, error: 4, unique: 8 } as const;

/** `fuse_init_in` (the first 16 bytes are all a pre-7.36 kernel sends). */
export const FuseInitIn = {
  SIZE: 64,
  MIN_SIZE: 16,
  major: 0,
  minor: 4,
  maxReadahead: 8,
  flags: 12,
  flags2: 16,
} as const;

/** `fuse_init_out` (24 bytes before 7.23). */
export const FuseInitOut = {
  SIZE: 64,
  COMPAT_SIZE: 24,
  major: 0,
  minor: 4,
  maxReadahead: 8,
  flags: 12,
  maxBackground: 16,
  congestionThreshold: 18,
  maxWrite: 20,
  timeGran: 24,
  maxPages: 28,
  mapAlignment: 30,
  flags2: 32,
  maxStackDepth: 36,
  requestTimeout: 40,
} as const;

/** `fuse_attr`. */
export const FuseAttr = {
  SIZE: 88,
  ino: 0,
  size: 8,
  blocks: 16,
  atime: 24,
  mtime: 32,
  ctime: 40,
  atimensec: 48,
  mtimensec: 52,
  ctimensec: 56,
  mode: 60,
  nlink: 64,
  uid: 68,
  gid: 72,
  rdev: 76,
  blksize: 80,
  flags: 84,
} as const;

/** `fuse_getattr_in`. */
export const FuseGetattrIn = { SIZE: 16, getattrFlags: 0, fh: 8 } as const;

/** `fuse_attr_out`. */
export const FuseAttrOut = { SIZE: 104, attrValid: 0, attrValidNsec: 8, attr: 16 } as const;

/** `fuse_entry_out`: a LOOKUP reply, and the first part of each READDIRPLUS record. */
export const FuseEntryOut = {
  SIZE: 128,
  nodeid: 0,
  generation: 8,
  entryValid: 16,
  attrValid: 24,
  entryValidNsec: 32,
  attrValidNsec: 36,
  attr: 40,
} as const;

/** `fuse_open_in` (OPEN and OPENDIR). */
export const FuseOpenIn = { SIZE: 8, flags: 0, openFlags: 4 } as const;

/** `fuse_open_out`. */
export const FuseOpenOut = { SIZE: 16, fh: 0, openFlags: 8, backingId: 12 } as const;

/** `fuse_read_in` (READ, READDIR, READDIRPLUS). */
export const FuseReadIn = {
  SIZE: 40,
  fh: 0,
  offset: 8,
  size: 16,
  readFlags: 20,
  lockOwner: 24,
  flags: 32,
} as const;

/** `fuse_release_in` (RELEASE, RELEASEDIR). */
export const FuseReleaseIn = {
  SIZE: 24,
  fh: 0,
  flags: 8,
  releaseFlags: 12,
  lockOwner: 16,
} as const;

/** `fuse_flush_in`. */
export const FuseFlushIn = { SIZE: 24, fh: 0 } as const;

/** `fuse_access_in`. */
export const FuseAccessIn = { SIZE: 8, mask: 0 } as const;

/** `fuse_getxattr_in` (GETXATTR: then the name, NUL-terminated; LISTXATTR: alone). */
export const FuseGetxattrIn = { SIZE: 8, size: 0 } as const;

/** `fuse_getxattr_out`: the answer to a size probe (size 0). */
export const FuseGetxattrOut = { SIZE: 8, size: 0 } as const;

/** `fuse_forget_in`. */
export const FuseForgetIn = { SIZE: 8, nlookup: 0 } as const;

/** `fuse_batch_forget_in`, followed by `count` {@link FuseForgetOne}. */
export const FuseBatchForgetIn = { SIZE: 8, count: 0 } as const;

/** `fuse_forget_one`. */
export const FuseForgetOne = { SIZE: 16, nodeid: 0, nlookup: 8 } as const;

/** `fuse_interrupt_in`. */
export const FuseInterruptIn = { SIZE: 8, unique: 0 } as const;

/** `fuse_dirent`, then the name (no NUL), padded to 8 bytes. */
export const FuseDirent = { SIZE: 24, ino: 0, off: 8, namelen: 16, type: 20, name: 24 } as const;

/** `fuse_direntplus`: a {@link FuseEntryOut} then a {@link FuseDirent}. */
export const FuseDirentplus = { SIZE: 152, entryOut: 0, dirent: 128 } as const;

/** `fuse_kstatfs` (the whole STATFS reply). */
export const FuseKstatfs = {
  SIZE: 80,
  blocks: 0,
  bfree: 8,
  bavail: 16,
  files: 24,
  ffree: 32,
  bsize: 40,
  namelen: 44,
  frsize: 48,
} as const;

/** `fuse_notify_inval_inode_out`. */
export const FuseNotifyInvalInode = { SIZE: 24, ino: 0, off: 8, len: 16 } as const;

/** `fuse_notify_inval_entry_out`, then the name and a NUL. */
export const FuseNotifyInvalEntry = { SIZE: 16, parent: 0, namelen: 8, flags: 12 } as const;

/** `fuse_notify_delete_out`, then the name and a NUL. */
export const FuseNotifyDelete = { SIZE: 24, parent: 0, child: 8, namelen: 16 } as const;

/** `fuse_backing_map` (FUSE_DEV_IOC_BACKING_OPEN's argument). */
export const FuseBackingMap = { SIZE: 16, fd: 0, flags: 4 } as const;

/** INIT flags (bits of `flags`; PASSTHROUGH is bit 5 of `flags2`). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
  INIT_EXT: 1 << 30,
} as const;

/** flags2 bit for kernel passthrough (FUSE_PASSTHROUGH = 1 << 37). */
export const INIT2_PASSTHROUGH = 1 << 5;

/** `fuse_open_out.open_flags`: bypass the page cache. */
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

/** A decoded `fuse_in_header`; one object is reused for every request. */
export interface InHeader {
  /** Bytes of the whole request, header included, as the kernel says. */
  len: number;
  /** The operation. */
  opcode: number;
  /** Request id; the reply carries it back. */
  unique: number;
  /** The inode the request is about. */
  nodeid: number;
  /** Caller's user id. */
  uid: number;
  /** Caller's group id. */
  gid: number;
  /** Caller's process id. */
  pid: number;
}

/** Decode the `fuse_in_header` at 0 into `h` (the caller checked there are 40 bytes). */
export function readInHeader(v: DataView, h: InHeader): InHeader {
  h.len = v.getUint32(FuseInHeader.len, true);
  h.opcode = v.getUint32(FuseInHeader.opcode, true);
  h.unique = getU64(v, FuseInHeader.unique);
  h.nodeid = getU64(v, FuseInHeader.nodeid);
  h.uid = v.getUint32(FuseInHeader.uid, true);
  h.gid = v.getUint32(FuseInHeader.gid, true);
  h.pid = v.getUint32(FuseInHeader.pid, true);
  return h;
}

/** Encode a `fuse_in_header` at 0 (what the kernel sends; for tests and tools). */
export function writeInHeader(v: DataView, h: InHeader): void {
  v.setUint32(FuseInHeader.len, h.len, true);
  v.setUint32(FuseInHeader.opcode, h.opcode, true);
  setU64(v, FuseInHeader.unique, h.unique);
  setU64(v, FuseInHeader.nodeid, h.nodeid);
  v.setUint32(FuseInHeader.uid, h.uid, true);
  v.setUint32(FuseInHeader.gid, h.gid, true);
  v.setUint32(FuseInHeader.pid, h.pid, true);
  v.setUint32(FuseInHeader.totalExtlen, 0, true);
}

/** Encode a `fuse_out_header` at 0: `len` bytes in all, `error` a positive errno or 0. */
export function writeOutHeader(v: DataView, unique: number, len: number, error = 0): void {
  v.setUint32(FuseOutHeader.len, len, true);
  v.setInt32(FuseOutHeader.error, -error, true);
  setU64(v, FuseOutHeader.unique, unique);
}

/** A decoded `fuse_init_in`; `flags2` is 0 unless the kernel set INIT_EXT. */
export interface InitIn {
  /** Protocol major version (7). */
  major: number;
  /** Protocol minor version. */
  minor: number;
  /** The kernel's readahead, bytes. */
  maxReadahead: number;
  /** Capability bits 0-31. */
  flags: number;
  /** Capability bits 32-63. */
  flags2: number;
}

/** Decode the `fuse_init_in` at `off`, `size` bytes long (16 on old kernels). */
export function readInitIn(v: DataView, off: number, size: number): InitIn {
  const flags = v.getUint32(off + FuseInitIn.flags, true);
  const ext = size >= FuseInitIn.flags2 + 4 && (flags & InitFlag.INIT_EXT) !== 0;
  return {
    major: v.getUint32(off + FuseInitIn.major, true),
    minor: v.getUint32(off + FuseInitIn.minor, true),
    maxReadahead: v.getUint32(off + FuseInitIn.maxReadahead, true),
    flags,
    flags2: ext ? v.getUint32(off + FuseInitIn.flags2, true) : 0,
  };
}

/** What we answer to INIT. */
export interface InitOut {
  /** Minor version we speak (min of the kernel's and ours). */
  minor: number;
  /** Readahead, bytes. */
  maxReadahead: number;
  /** Capability bits 0-31 (a subset of the kernel's). */
  flags: number;
  /** Capability bits 32-63. */
  flags2: number;
  /** Background requests the kernel may queue. */
  maxBackground: number;
  /** Background requests before the kernel calls us congested. */
  congestionThreshold: number;
  /** Largest write (and read) request, bytes. */
  maxWrite: number;
  /** Pages per request. */
  maxPages: number;
  /** Stacking depth of passthrough backing files (0 without passthrough). */
  maxStackDepth: number;
}

/** Encode a `fuse_init_out` (all 64 bytes; send {@link FuseInitOut.COMPAT_SIZE} before 7.23). */
export function writeInitOut(v: DataView, off: number, o: InitOut): void {
  for (let i = 0; i < FuseInitOut.SIZE; i += 4) v.setUint32(off + i, 0, true);
  v.setUint32(off + FuseInitOut.major, 7, true);
  v.setUint32(off + FuseInitOut.minor, o.minor, true);
  v.setUint32(off + FuseInitOut.maxReadahead, o.maxReadahead, true);
  v.setUint32(off + FuseInitOut.flags, o.flags >>> 0, true);
  v.setUint16(off + FuseInitOut.maxBackground, o.maxBackground, true);
  v.setUint16(off + FuseInitOut.congestionThreshold, o.congestionThreshold, true);
  v.setUint32(off + FuseInitOut.maxWrite, o.maxWrite, true);
  v.setUint32(off + FuseInitOut.timeGran, 1, true);
  v.setUint16(off + FuseInitOut.maxPages, o.maxPages, true);
  v.setUint32(off + FuseInitOut.flags2, o.flags2 >>> 0, true);
  v.setUint32(off + FuseInitOut.maxStackDepth, o.maxStackDepth, true);
}

/** A decoded `fuse_read_in`. */
export interface ReadIn {
  /** File handle from OPEN/OPENDIR. */
  fh: number;
  /** Byte offset (READ) or directory cookie (READDIR*). */
  offset: number;
  /** Most bytes the reply may carry. */
  size: number;
}

/** Decode the `fuse_read_in` at `off` into `r`. */
export function readReadIn(v: DataView, off: number, r: ReadIn): ReadIn {
  r.fh = getU64(v, off + FuseReadIn.fh);
  r.offset = getU64(v, off + FuseReadIn.offset);
  r.size = v.getUint32(off + FuseReadIn.size, true);
  return r;
}

/** Write a `fuse_attr` at `off`. */
export function writeAttr(v: DataView, off: number, a: Attr): void {
  const mtime = a.mtimeMs;
  const atime = a.atimeMs ?? mtime;
  const ctime = a.ctimeMs ?? mtime;
  setU64(v, off + FuseAttr.ino, a.ino);
  setU64(v, off + FuseAttr.size, a.size);
  setU64(v, off + FuseAttr.blocks, a.blocks ?? Math.ceil(a.size / 512));
  writeTime(v, off + FuseAttr.atime, off + FuseAttr.atimensec, atime);
  writeTime(v, off + FuseAttr.mtime, off + FuseAttr.mtimensec, mtime);
  writeTime(v, off + FuseAttr.ctime, off + FuseAttr.ctimensec, ctime);
  v.setUint32(off + FuseAttr.mode, a.mode, true);
  v.setUint32(off + FuseAttr.nlink, a.nlink, true);
  v.setUint32(off + FuseAttr.uid, a.uid, true);
  v.setUint32(off + FuseAttr.gid, a.gid, true);
  v.setUint32(off + FuseAttr.rdev, 0, true);
  v.setUint32(off + FuseAttr.blksize, a.blksize ?? 65536, true);
  v.setUint32(off + FuseAttr.flags, 0, true);
}

/** Write a time in milliseconds as (seconds u64 at secOff, nanoseconds u32 at nsecOff). */
function writeTime(v: DataView, secOff: number, nsecOff: number, ms: number): void {
  const sec = Math.floor(ms / 1000);
  setU64(v, secOff, sec);
  v.setUint32(nsecOff, Math.round((ms - sec * 1000) * 1e6) % 1e9, true);
}

/** Write a TTL in milliseconds as (seconds u64 at secOff, nanoseconds u32 at nsecOff). */
export const writeTtl = writeTime;

/** Write a `fuse_attr_out` (104 B) at `off`. */
export function writeAttrOut(v: DataView, off: number, attr: Attr, attrTtlMs: number): void {
  writeTtl(v, off + FuseAttrOut.attrValid, off + FuseAttrOut.attrValidNsec, attrTtlMs);
  v.setUint32(off + FuseAttrOut.attrValidNsec + 4, 0, true);
  writeAttr(v, off + FuseAttrOut.attr, attr);
}

/** Write a `fuse_entry_out` (128 B) at `off`; nodeid = attr.ino, generation 0. */
export function writeEntryOut(
  v: DataView,
  off: number,
  attr: Attr,
  entryTtlMs: number,
  attrTtlMs: number,
): void {
  setU64(v, off + FuseEntryOut.nodeid, attr.ino);
  setU64(v, off + FuseEntryOut.generation, 0);
  writeTtl(v, off + FuseEntryOut.entryValid, off + FuseEntryOut.entryValidNsec, entryTtlMs);
  writeTtl(v, off + FuseEntryOut.attrValid, off + FuseEntryOut.attrValidNsec, attrTtlMs);
  writeAttr(v, off + FuseEntryOut.attr, attr);
}

/** Write a `fuse_open_out` (16 B) at `off`. */
export function writeOpenOut(
  v: DataView,
  off: number,
  fh: number,
  openFlags: number,
  backingId = 0,
): void {
  setU64(v, off + FuseOpenOut.fh, fh);
  v.setUint32(off + FuseOpenOut.openFlags, openFlags, true);
  v.setInt32(off + FuseOpenOut.backingId, backingId, true);
}

/** Write a `fuse_kstatfs` (80 B) at `off`. */
export function writeStatfs(v: DataView, off: number, s: StatFs): void {
  setU64(v, off + FuseKstatfs.blocks, s.blocks);
  setU64(v, off + FuseKstatfs.bfree, s.bfree);
  setU64(v, off + FuseKstatfs.bavail, s.bavail);
  setU64(v, off + FuseKstatfs.files, s.files);
  setU64(v, off + FuseKstatfs.ffree, s.ffree);
  v.setUint32(off + FuseKstatfs.bsize, s.bsize, true);
  v.setUint32(off + FuseKstatfs.namelen, s.namelen, true);
  v.setUint32(off + FuseKstatfs.frsize, s.frsize, true);
  for (let i = FuseKstatfs.frsize + 4; i < FuseKstatfs.SIZE; i += 4) v.setUint32(off + i, 0, true);
}

/**
 * Write the `fuse_dirent` of a record at `off` whose name (`namelen` bytes) is already at
 * `off + 24`, and zero its padding; returns the record's aligned size.
 */
export function writeDirent(
  v: DataView,
  out: Uint8Array,
  off: number,
  ino: number,
  cookie: number,
  namelen: number,
  mode: number,
): number {
  const recLen = align8(FuseDirent.SIZE + namelen);
  setU64(v, off + FuseDirent.ino, ino);
  setU64(v, off + FuseDirent.off, cookie);
  v.setUint32(off + FuseDirent.namelen, namelen, true);
  v.setUint32(off + FuseDirent.type, (mode & 0o170000) >>> 12, true);
  out.fill(0, off + FuseDirent.name + namelen, off + recLen);
  return recLen;
}

/** Round up to a multiple of 8 (dirent alignment). */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

const encoder = new TextEncoder();

function notification(code: number, size: number, name?: Uint8Array): {
  buf: Uint8Array<ArrayBuffer>;
  v: DataView;
} {
  const OUT = FuseOutHeader.SIZE;
  const buf = new Uint8Array(OUT + size + (name ? name.length + 1 : 0));
  const v = new DataView(buf.buffer);
  writeOutHeader(v, 0, buf.length);
  v.setInt32(FuseOutHeader.error, code, true); // the notify code, positive, in place of -errno
  if (name) buf.set(name, OUT + size);
  return { buf, v };
}

/** A whole INVAL_ENTRY notification: forget the lookup of `name` in `parent`. */
export function notifyInvalEntry(parent: number, name: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(name);
  const { buf, v } = notification(Notify.INVAL_ENTRY, FuseNotifyInvalEntry.SIZE, bytes);
  const o = FuseOutHeader.SIZE;
  setU64(v, o + FuseNotifyInvalEntry.parent, parent);
  v.setUint32(o + FuseNotifyInvalEntry.namelen, bytes.length, true);
  return buf;
}

/** A whole INVAL_INODE notification: attributes, and data in [off, off+len) unless off < 0. */
export function notifyInvalInode(ino: number, off: number, len: number): Uint8Array<ArrayBuffer> {
  const { buf, v } = notification(Notify.INVAL_INODE, FuseNotifyInvalInode.SIZE);
  const o = FuseOutHeader.SIZE;
  setU64(v, o + FuseNotifyInvalInode.ino, ino);
  v.setBigInt64(o + FuseNotifyInvalInode.off, BigInt(off), true);
  v.setBigInt64(o + FuseNotifyInvalInode.len, BigInt(len), true);
  return buf;
}

/** A whole DELETE notification: `name` (inode `child`) left `parent`. */
export function notifyDelete(parent: number, child: number, name: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(name);
  const { buf, v } = notification(Notify.DELETE, FuseNotifyDelete.SIZE, bytes);
  const o = FuseOutHeader.SIZE;
  setU64(v, o + FuseNotifyDelete.parent, parent);
  setU64(v, o + FuseNotifyDelete.child, child);
  v.setUint32(o + FuseNotifyDelete.namelen, bytes.length, true);
  return buf;
}
