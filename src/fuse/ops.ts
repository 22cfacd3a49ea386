/**
 * The filesystem-facing contract of the FUSE layer. A filesystem implements
 * {@link FuseOperations}; the session decodes kernel requests, calls these async handlers and
 * encodes their typed results. Nothing here knows about music.
 *
 * Inode numbers are plain numbers (safe integers); inode 1 is the root.
 */
import { errnoName } from "../sys/errno.ts";

export { Errno, errnoName, toErrno } from "../sys/errno.ts";

/** File attributes, as `stat(2)` shows them. Times are milliseconds since the epoch. */
export interface Attr {
  /** Inode number; must be stable for the life of the mount (and should be across mounts). */
  ino: number;
  /** Size in bytes; for a symlink, the length of its target. */
  size: number;
  /** `st_mode`, type bits included (e.g. `0o100444`, `0o40555`, `0o120777`). */
  mode: number;
  /** Hard link count (for a directory, conventionally 2 + its subdirectories). */
  nlink: number;
  /** Owner user id. */
  uid: number;
  /** Owner group id. */
  gid: number;
  /** Last content change. */
  mtimeMs: number;
  /** Last access; `mtimeMs` when absent. */
  atimeMs?: number;
  /** Last status change; `mtimeMs` when absent. */
  ctimeMs?: number;
  /** 512-byte blocks; derived from size when absent. */
  blocks?: number;
  /** Preferred I/O size in bytes; 64 KiB when absent. */
  blksize?: number;
}

/** A lookup answer: the attributes plus how long the kernel may cache them. */
export interface Entry {
  /** Attributes of the inode found. */
  attr: Attr;
  /** How long the kernel may cache the name -> inode mapping. Default: the session's. */
  entryTtlMs?: number;
  /** How long the kernel may cache the attributes. Default: the session's. */
  attrTtlMs?: number;
}

/** One directory entry; `attr` is also what READDIRPLUS hands to the kernel. */
export interface DirEntry {
  /** File name in the directory: no `/`, at most 255 bytes of UTF-8. */
  name: string;
  /** Attributes of the entry's inode; `attr.ino` is the inode the name refers to. */
  attr: Attr;
}

/** What `open` decides about a file handle. */
export interface OpenResult {
  /** Handle passed back to `read` and `release`; 0 when the filesystem needs none. */
  fh?: number;
  /** The content never changes while open: let the kernel page cache keep it across opens. */
  keepCache?: boolean;
  /** Bypass the page cache (for files whose size is not known in advance). */
  directIo?: boolean;
  /**
   * A read-only fd of a real file with exactly this content. When the session negotiated
   * kernel passthrough, reads are served by the kernel from it; the session never closes it
   * (the filesystem does, in `release`).
   */
  backingFd?: number;
  /**
   * Which version of the content `backingFd` holds. The kernel allows one backing file per
   * inode while it is open: an open whose version differs from the one in use is answered EIO
   * rather than served the other version's bytes.
   */
  backingVersion?: string;
}

/** Filesystem statistics for `statfs(2)`. */
export interface StatFs {
  /** Total size, in `frsize` units. */
  blocks: number;
  /** Free blocks. */
  bfree: number;
  /** Free blocks available to unprivileged users. */
  bavail: number;
  /** Total inodes. */
  files: number;
  /** Free inodes. */
  ffree: number;
  /** Preferred block size in bytes. */
  bsize: number;
  /** Longest file name, in bytes. */
  namelen: number;
  /** Fragment size in bytes: the unit of `blocks`, `bfree` and `bavail`. */
  frsize: number;
}

/** Who asked, and a signal that fires when the kernel interrupts the request. */
export interface RequestContext {
  /** User id of the calling process. */
  uid: number;
  /** Group id of the calling process. */
  gid: number;
  /** Process id of the caller. */
  pid: number;
  /** Aborted when the kernel interrupts the request (e.g. the caller got a signal). */
  signal: AbortSignal;
}

/**
 * The operations a filesystem serves. Every handler may throw: an {@link FsError} (or any
 * error with a numeric `errno`) answers that errno, anything else answers EIO; the session
 * keeps serving either way. Optional handlers that are missing answer ENOSYS.
 */
export interface FuseOperations {
  /** Resolve `name` in directory `parent`; `null` means ENOENT. */
  lookup(parent: number, name: string, ctx: RequestContext): Promise<Entry | null>;
  /**
   * Whether the attributes of `ino` change only together with a `notifyInvalInode` or
   * `notifyDelete` of it. For those inodes the session's reader thread answers GETATTR from the
   * attributes last sent to the kernel, without a hop to the main thread, and the kernel caches
   * the others for at most 1 s whatever the session's attribute TTL. Missing: never, and the
   * session's TTL for all.
   */
  shareAttrs?(ino: number): boolean;
  /** Attributes of `ino`. */
  getattr(ino: number, ctx: RequestContext): Promise<Attr>;
  /**
   * Optional fast path tried before `getattr`, synchronously on the request loop: the
   * attributes when they are at hand without I/O, else `undefined` to fall back to `getattr`.
   */
  getattrNow?(ino: number): Attr | undefined;
  /**
   * The whole listing of a directory, without `.` and `..`. Called once per opendir; the
   * session pages through the snapshot it returns.
   */
  readdir(ino: number, ctx: RequestContext): Promise<DirEntry[]>;
  /**
   * Open `ino` with `open(2)` `flags`. Only read-only opens get here: the session answers
   * EROFS to write access and `O_TRUNC` itself.
   */
  open(ino: number, flags: number, ctx: RequestContext): Promise<OpenResult>;
  /** Fill `dst` (at most `dst.length` bytes) from `offset`; return the byte count. */
  read(
    ino: number,
    fh: number,
    offset: number,
    dst: Uint8Array,
    ctx: RequestContext,
  ): Promise<number>;
  /**
   * Optional fast path tried before `read`, synchronously on the request loop: fill `dst`
   * only if it can be done without blocking (data in memory or in the page cache) and return
   * the byte count; return `undefined` to fall back to `read`.
   */
  readNow?(ino: number, fh: number, offset: number, dst: Uint8Array): number | undefined;
  /** The last reference to handle `fh` of `ino` was closed; free what `open` allocated. */
  release?(ino: number, fh: number): Promise<void>;
  /** Target of symlink `ino`. Missing: EINVAL. */
  readlink?(ino: number, ctx: RequestContext): Promise<string>;
  /** Statistics of the filesystem. Missing: all zero counts, 4 KiB blocks, 255-byte names. */
  statfs?(ino: number, ctx: RequestContext): Promise<StatFs>;
  /** The value of an extended attribute; `null` means ENODATA. */
  getxattr?(ino: number, name: string, ctx: RequestContext): Promise<Uint8Array | null>;
  /** Names of the extended attributes of `ino`. */
  listxattr?(ino: number, ctx: RequestContext): Promise<string[]>;
  /** The kernel dropped every reference to `ino` (its lookup count reached 0). */
  forget?(ino: number): void;
}

/** Copy the part of `data` at [offset, offset + dst.length) into `dst`; returns the count. */
export function copyRange(data: Uint8Array, offset: number, dst: Uint8Array): number {
  const part = data.subarray(
    Math.min(offset, data.length),
    Math.min(offset + dst.length, data.length),
  );
  dst.set(part);
  return part.length;
}

/** An error that answers a specific errno to the kernel. */
export class FsError extends Error {
  /** The positive errno sent back (negated on the wire). */
  readonly errno: number;
  /** Build one; `message` defaults to the errno's name. */
  constructor(errno: number, message?: string, options?: ErrorOptions) {
    super(message ?? errnoName(errno), options);
    this.name = "FsError";
    this.errno = errno;
  }
}

/** File type bits for `Attr.mode`. */
export const S_IFDIR = 0o040000;
/** Regular file type bits. */
export const S_IFREG = 0o100000;
/** Symbolic link type bits. */
export const S_IFLNK = 0o120000;
