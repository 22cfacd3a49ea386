/**
 * The project's one errno table: the numbers (Linux, x86_64 and arm64 alike), their names, and
 * {@link toErrno}, which turns any thrown value into the errno a FUSE reply carries.
 */

/** Errno values the project uses. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  ESTALE: 116,
  EDQUOT: 122,
} as const;

const NAMES = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

/** The symbolic name of an errno, e.g. `ENOENT`, or `errno N`. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `errno ${errno}`;
}

/** The errno of a symbolic name such as `ENOENT`, or undefined when unknown. */
export function errnoOf(name: string): number | undefined {
  return (Errno as Record<string, number>)[name];
}

// Deno's error classes that carry no usable `code` (e.g. from FFI-free APIs).
const DENO_ERRORS: [new (...a: never[]) => Error, number][] = [
  [Deno.errors.NotFound, Errno.ENOENT],
  [Deno.errors.PermissionDenied, Errno.EACCES],
  [Deno.errors.AlreadyExists, Errno.EEXIST],
  [Deno.errors.NotADirectory, Errno.ENOTDIR],
  [Deno.errors.IsADirectory, Errno.EISDIR],
  [Deno.errors.TimedOut, Errno.ETIMEDOUT],
  [Deno.errors.Interrupted, Errno.EINTR],
  [Deno.errors.InvalidData, Errno.EINVAL],
  [Deno.errors.FilesystemLoop, Errno.ELOOP],
  [Deno.errors.NotConnected, Errno.ENOTCONN],
  [Deno.errors.WouldBlock, Errno.EAGAIN],
];

/**
 * The errno to answer for a thrown value: its numeric `errno` (an FsError, a SyscallError),
 * else its `code` (`ENOSPC`, as Deno's errors carry), else its Deno error class; EIO for
 * anything else, so an unexpected failure is never mistaken for a deliberate answer.
 */
export function toErrno(e: unknown): number {
  if (e && typeof e === "object") {
    const err = e as { errno?: unknown; code?: unknown };
    if (typeof err.errno === "number" && err.errno > 0 && err.errno < 1000) return err.errno;
    if (typeof err.code === "string") {
      const n = errnoOf(err.code);
      if (n !== undefined) return n;
    }
    for (const [cls, n] of DENO_ERRORS) if (e instanceof cls) return n;
  }
  return Errno.EIO;
}
