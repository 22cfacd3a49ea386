/**
 * File descriptors: the daemon raises its soft RLIMIT_NOFILE to the hard limit at start, and
 * keeps a reserve so that running out never takes down what must keep working. Source opens
 * (one fd each, held while a player has the track open) are the only fds that grow with load;
 * {@link FdBudget} refuses them with EMFILE while fewer than `reserve` fds would be left, so
 * the control API, SQLite, the log and the FUSE loop always have theirs. Deno's HTTP server
 * drops its listener for good on an EMFILE from accept(2), which is how `musicfs status` came
 * to say "not running" under `ulimit -n 64`.
 *
 * Refusals (and any EMFILE a source open meets anyway) are logged at once, then at most once
 * a minute with counts, and reported in status.
 *
 * Hand-written: Deno has no getrlimit/setrlimit; two libc calls through Deno.dlopen.
 *
 * @module
 */
import { FsError, type FuseOperations, type OpenResult } from "../fuse/mod.ts";
import { logger } from "../log/mod.ts";

const log = logger("daemon", "fds");

const RLIMIT_NOFILE = 7;
/** errno of "Too many open files" (per process) and of the system-wide table. */
const EMFILE = 24;
const ENFILE = 23;

let rlimitLib:
  | Deno.DynamicLibrary<{
    getrlimit: { parameters: ["i32", "buffer"]; result: "i32" };
    setrlimit: { parameters: ["i32", "buffer"]; result: "i32" };
  }>
  | undefined;

function lib() {
  rlimitLib ??= Deno.dlopen(
    "libc.so.6",
    {
      getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
      setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
    } as const,
  );
  return rlimitLib.symbols;
}

/** RLIM_INFINITY as a number (u64 all ones, clamped to what a JS number holds). */
const INFINITE = Number.MAX_SAFE_INTEGER;

function toNumber(v: bigint): number {
  return v > BigInt(INFINITE) ? INFINITE : Number(v);
}

/**
 * The fewest file descriptors the daemon starts with: about 60 are in use at idle (Deno's
 * worker runtimes, SQLite, the log, sockets), and below this Deno itself aborts when it starts
 * a worker. A lower limit is refused with one line at start.
 */
export const MIN_FDS = 128;

/** The soft and hard RLIMIT_NOFILE of this process. */
export function fdLimit(): { soft: number; hard: number } {
  const buf = new BigUint64Array(2);
  if (lib().getrlimit(RLIMIT_NOFILE, new Uint8Array(buf.buffer)) !== 0) {
    return { soft: 1024, hard: 1024 };
  }
  return { soft: toNumber(buf[0]), hard: toNumber(buf[1]) };
}

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit (capped at 1 << 20: what the kernel's
 * nr_open allows by default, and plenty). Returns the limits after, and the soft limit before
 * when it changed.
 */
export function raiseFdLimit(): { soft: number; hard: number; from?: number } {
  const before = fdLimit();
  const target = Math.min(before.hard, 1 << 20);
  if (before.soft >= target) return before;
  const buf = new BigUint64Array([BigInt(target), BigInt(Math.min(before.hard, INFINITE))]);
  if (before.hard === INFINITE) buf[1] = 0xffffffffffffffffn;
  if (lib().setrlimit(RLIMIT_NOFILE, new Uint8Array(buf.buffer)) !== 0) return before;
  return { ...fdLimit(), from: before.soft };
}

/** File descriptors this process has open (entries of /proc/self/fd). */
export function fdsInUse(): number {
  let n = 0;
  try {
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  } catch {
    return 0;
  }
  return n - 1; // the directory's own fd, open while it is read
}

/** What {@link FdBudget.stats} reports. */
export interface FdStats {
  /** The soft RLIMIT_NOFILE. */
  limit: number;
  /** Fds kept free for everything but source opens. */
  reserve: number;
  /** Source files open now (tracks and covers being read). */
  sourcesOpen: number;
  /** Source opens refused (EMFILE) since the start. */
  refused: number;
  /** The last refusal, ISO 8601. */
  lastRefusedAt?: string;
}

/**
 * Keeps `reserve` fds free of source opens and counts what it refuses. The fd count of the
 * process is read (from /proc/self/fd) only when the source opens reach the last safe count,
 * so with a high limit it is read about once.
 */
export class FdBudget {
  readonly limit: number;
  readonly reserve: number;
  #open = 0;
  /** Source opens known to fit without reading the fd count again. */
  #safeUpTo = -1;
  #refused = 0;
  #refusedSinceLog = 0;
  #lastRefused = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastLog = 0;
  readonly #count: () => number;

  /** A budget under `limit` (default the soft RLIMIT_NOFILE). */
  constructor(opts: { limit?: number; reserve?: number; count?: () => number } = {}) {
    this.limit = opts.limit ?? fdLimit().soft;
    // A control request needs one fd (the accepted connection); SQLite, the log and the FUSE
    // loop hold theirs already. Under `ulimit -n 64` the daemon itself uses about 57.
    this.reserve = opts.reserve ?? Math.max(4, Math.min(256, this.limit >> 4));
    this.#count = opts.count ?? fdsInUse;
  }

  /** Take a slot for one source fd; false (and counted) when the reserve would be touched. */
  acquire(): boolean {
    if (this.#open >= this.#safeUpTo) {
      const used = this.#count();
      const room = this.limit - this.reserve - used;
      if (room <= 0) {
        this.noteRefused();
        return false;
      }
      this.#safeUpTo = this.#open + room;
    }
    this.#open++;
    return true;
  }

  /** Give a slot back (the source fd was closed, or the open did not use one). */
  release(): void {
    if (this.#open > 0) this.#open--;
  }

  /** Count a refused open (also one that met EMFILE anyway); logs at most once a minute. */
  noteRefused(): void {
    this.#refused++;
    this.#refusedSinceLog++;
    this.#lastRefused = Date.now();
    // The next acquire reads the real count again: fds may have been freed meanwhile.
    this.#safeUpTo = -1;
    if (Date.now() - this.#lastLog >= 60_000) this.#report();
    else if (this.#timer === undefined) {
      const timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#refusedSinceLog) this.#report();
      }, 60_000 - (Date.now() - this.#lastLog));
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  #report(): void {
    this.#lastLog = Date.now();
    log.warn(
      "Out of file descriptors: {count} source opens refused with EMFILE since the last report " +
        "({total} in all); limit {limit}, {used} fds in use, {open} sources open, {reserve} kept " +
        "for the daemon",
      {
        count: this.#refusedSinceLog,
        total: this.#refused,
        limit: this.limit,
        used: this.#count(),
        open: this.#open,
        reserve: this.reserve,
      },
    );
    this.#refusedSinceLog = 0;
  }

  /** Stop the pending report (shutdown). */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** For status. */
  stats(): FdStats {
    return {
      limit: this.limit,
      reserve: this.reserve,
      sourcesOpen: this.#open,
      refused: this.#refused,
      lastRefusedAt: this.#lastRefused ? new Date(this.#lastRefused).toISOString() : undefined,
    };
  }
}

function isFdExhaustion(e: unknown): boolean {
  const errno = (e as { errno?: unknown })?.errno;
  if (errno === EMFILE || errno === ENFILE) return true;
  const cause = (e as { cause?: { errno?: unknown } })?.cause?.errno;
  return cause === EMFILE || cause === ENFILE;
}

/**
 * Puts `ops`' file opens (those of inodes `mayHoldFd` names) under `budget`: an open that would eat into the reserve answers
 * EMFILE at once; an open that meets EMFILE anyway is counted; the slot of an open that holds
 * no fd (generated files, cached reads) is given back at once, that of a source fd at release.
 * Only `open` and `release` are wrapped: the read path is untouched.
 */
export function guardOpens(
  ops: FuseOperations,
  budget: FdBudget,
  mayHoldFd: (ino: number) => boolean = () => true,
): void {
  const open = ops.open.bind(ops);
  const release = ops.release?.bind(ops);
  const holding = new Set<number>();
  ops.open = async (ino, flags, ctx): Promise<OpenResult> => {
    // Generated files are served from memory: never refused.
    if (!mayHoldFd(ino)) return await open(ino, flags, ctx);
    if (!budget.acquire()) {
      throw new FsError(EMFILE, "out of file descriptors (see the daemon's log)");
    }
    let result: OpenResult;
    try {
      result = await open(ino, flags, ctx);
    } catch (e) {
      budget.release();
      if (isFdExhaustion(e)) {
        budget.noteRefused();
        throw new FsError(EMFILE, "out of file descriptors", { cause: e });
      }
      throw e;
    }
    if (result.backingFd === undefined || result.fh === undefined) budget.release();
    else holding.add(result.fh);
    return result;
  };
  ops.release = async (ino, fh) => {
    try {
      await release?.(ino, fh);
    } finally {
      if (holding.delete(fh)) budget.release();
    }
  };
}
