/** Errors of the chunk cache, and the byte formatting their messages share. */

/** `1536` -> `1.5 KiB`; exact bytes below 1 KiB so small test sizes stay readable. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/**
 * A chunk cannot fit in the cache: it is larger than `maxSize`, or everything that could be
 * evicted already was and the rest is pinned by readers. The caller serves from the origin.
 */
export class StoreFullError extends Error {
  /** Bytes in use (stored plus reserved by writes in flight) when the chunk was refused. */
  readonly current: number;
  /** The cache's `maxSize`. */
  readonly max: number;
  /** Size of the refused chunk. */
  readonly size: number;

  /** Builds the error; the message states both sizes. */
  constructor(current: number, max: number, size: number, options?: ErrorOptions) {
    const why = size > max
      ? `chunk of ${formatBytes(size)} is larger than the whole cache (${formatBytes(max)})`
      : `cache is full (${formatBytes(current)} of ${formatBytes(max)})`;
    super(`Cannot store chunk: ${why}`, options);
    this.name = "StoreFullError";
    this.current = current;
    this.max = max;
    this.size = size;
  }
}

/**
 * Writing a chunk file failed (ENOSPC, EDQUOT, EIO, ...). The temp file was removed; nothing
 * partial is left and the store is still usable.
 */
export class CasWriteError extends Error {
  /** The OS error code when there is one, e.g. `ENOSPC`. */
  readonly code?: string;

  /** Wraps the underlying error as `cause`. */
  constructor(cause: unknown) {
    const code = errorCode(cause);
    const why = code === "ENOSPC"
      ? "no space left on device"
      : code === "EDQUOT"
      ? "disk quota exceeded"
      : cause instanceof Error
      ? cause.message
      : String(cause);
    super(`Cannot store chunk: ${why}`, { cause });
    this.name = "CasWriteError";
    this.code = code;
  }
}

/**
 * A read through the cache could not be served: a needed chunk is not cached and the origin is
 * unhealthy, too slow, changed or failing. The filesystem answers it as EIO.
 */
export class CasReadError extends Error {
  /** `message` says which file and why; `cause` is the origin's error, when there is one. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CasReadError";
  }
}

/** The store was used after `close()`. */
export class CasClosedError extends Error {
  /** Names the refused operation. */
  constructor(operation: string) {
    super(`Cannot ${operation}: the chunk cache is closed`);
    this.name = "CasClosedError";
  }
}

/** The `code` (e.g. `ENOSPC`) of an OS error thrown by Deno, if any. */
export function errorCode(e: unknown): string | undefined {
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") return e.code;
  return undefined;
}
