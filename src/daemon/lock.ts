/**
 * One daemon per state dir (and per cache dir): a pid file holding the owner's pid and its
 * start time from /proc/<pid>/stat, so a lock left by a dead process, or by a dead process
 * whose pid now belongs to someone else, is recognised as stale and taken over.
 *
 * The pid file is published with link(2), which fails when the name exists: of two daemons
 * starting together exactly one creates it, and a reader never sees a half-written file.
 * Taking over a stale file (remove, then link) happens under a flock(2) on a companion
 * `<name>.pid.lock` file, so two daemons finding the same stale lock cannot both remove it
 * and both win. The companion file is never removed: removing it would reopen that race.
 *
 * On a full disk, where not even the few bytes of a pid file fit, the pid file is published
 * as a symbolic link whose target is its content: symlink(2) fails on an existing name like
 * link(2), and a short target is kept in the inode, not in a data block. Readers accept both.
 *
 * @module
 */
import { logger } from "../log/mod.ts";

const log = logger("daemon", "lock");

/** Who holds a lock, as recorded in its pid file. */
export interface LockOwner {
  /** The owner's process id. */
  pid: number;
  /** Start time of the process in clock ticks since boot, or null when not recorded. */
  startTime: string | null;
}

/** A lock this process holds. */
export interface HeldLock extends AsyncDisposable {
  /** The pid file. */
  readonly path: string;
  /** Removes the pid file if it is still ours. Safe to call more than once. */
  release(): Promise<void>;
  /** {@link HeldLock.release} for exit paths that cannot await. */
  releaseSync(): void;
}

/** Options of {@link acquireLock} and {@link readLock}. */
export interface LockOptions {
  /** Base name of the pid file: `<dir>/<name>.pid`. Default "musicfs". */
  name?: string;
  /** How the directory is named in errors, e.g. "state dir". Default: its path. */
  label?: string;
}

/** Another live process holds the lock. */
export class AlreadyRunningError extends Error {
  /** The pid of the running daemon. */
  readonly pid: number;
  /** The pid file. */
  readonly path: string;

  /**
   * Creates the error.
   * @param label how the locked directory is named in the message
   * @param pid the holder's pid
   * @param path the pid file
   */
  constructor(label: string, pid: number, path: string, options?: ErrorOptions) {
    super(`Cannot lock ${label}: musicfs is already running (pid ${pid})`, options);
    this.name = "AlreadyRunningError";
    this.pid = pid;
    this.path = path;
  }
}

/** The lock could not be taken for another reason (permissions, I/O). */
export class LockError extends Error {
  /**
   * Creates the error.
   * @param message what went wrong
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LockError";
  }
}

/** The pid file path of a lock. */
export function lockPath(dir: string, options: Pick<LockOptions, "name"> = {}): string {
  return `${dir.replace(/\/+$/, "") || "/"}/${options.name ?? "musicfs"}.pid`;
}

/**
 * Start time of process `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or
 * null when no such process exists or it is a zombie (dead, just not reaped).
 */
export function processStartTime(pid: number): string | null {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  if (state === "Z" || state === "X" || state === "x") return null;
  return rest[19] ?? null;
}

/** Whether the process recorded in `owner` still runs (the same process, not a reused pid). */
export function isOwnerAlive(owner: LockOwner): boolean {
  const start = processStartTime(owner.pid);
  if (start === null) return false;
  return owner.startTime === null || owner.startTime === start;
}

/** The recorded owner of the lock in `dir`, or null when there is none or it is unreadable. */
export async function readLock(dir: string, options: LockOptions = {}): Promise<LockOwner | null> {
  try {
    return parseOwner(await readPidFile(lockPath(dir, options)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** The content of a pid file: a regular file, or the target of the full-disk symlink form. */
async function readPidFile(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    // A dangling symlink reads as NotFound: its target is the content.
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    return await Deno.readLink(path);
  }
}

function readPidFileSync(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    return Deno.readLinkSync(path);
  }
}

function isNoSpace(e: unknown): boolean {
  return (e as { code?: string })?.code === "ENOSPC" ||
    /os error 28\b|No space left/.test(String(e));
}

function parseOwner(text: string): LockOwner | null {
  const [pidLine, startLine] = text.split("\n");
  const pid = Number(pidLine);
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  return { pid, startTime: /^\d+$/.test(startLine ?? "") ? startLine : null };
}

/**
 * Takes the single-instance lock of `dir` (created if missing) for this process.
 * @throws {AlreadyRunningError} when a live process holds it
 * @throws {LockError} when the pid file cannot be written or read
 */
export async function acquireLock(dir: string, options: LockOptions = {}): Promise<HeldLock> {
  const label = options.label ?? dir;
  const path = lockPath(dir, options);
  const startTime = processStartTime(Deno.pid);
  const content = `${Deno.pid}\n${startTime ?? ""}\n`;
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  let full = false;
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(tmp, content, { mode: 0o600 });
  } catch (e) {
    if (!isNoSpace(e)) {
      throw new LockError(`Cannot lock ${label}: ${errorMessage(e)}`, { cause: e });
    }
    // A full disk: the symlink form needs no data block.
    full = true;
    await Deno.remove(tmp).catch(() => {});
    log.warn("The disk of {dir} is full: the pid file is a symbolic link", { dir });
  }
  const publish = () => full ? trySymlink(content, path, label) : tryLink(tmp, path, label);
  try {
    // Few rounds are ever needed: each one either wins, fails, or loses to a racer whose live
    // lock the next round reports.
    for (let round = 0; round < 5; round++) {
      if (await publish()) return held(path, content);
      const guard = await openGuard(`${path}.lock`, label);
      try {
        await guard.lock(true);
        let text: string;
        try {
          text = await readPidFile(path);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) continue; // released meanwhile: link again
          throw new LockError(`Cannot lock ${label}: ${errorMessage(e)}`, { cause: e });
        }
        const owner = parseOwner(text);
        if (owner && isOwnerAlive(owner)) throw new AlreadyRunningError(label, owner.pid, path);
        log.warn("Taking over the stale lock {path} of {owner}", {
          path,
          owner: owner ? `dead pid ${owner.pid}` : "an unreadable pid file",
        });
        await Deno.remove(path).catch((e) => {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        });
        if (await publish()) return held(path, content);
      } finally {
        guard.close();
      }
    }
    throw new LockError(`Cannot lock ${label}: ${path} keeps changing`);
  } finally {
    if (!full) await Deno.remove(tmp).catch(() => {});
  }
}

async function trySymlink(content: string, path: string, label: string): Promise<boolean> {
  try {
    await Deno.symlink(content, path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    throw new LockError(`Cannot lock ${label}: ${errorMessage(e)}`, { cause: e });
  }
}

async function tryLink(tmp: string, path: string, label: string): Promise<boolean> {
  try {
    await Deno.link(tmp, path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    throw new LockError(`Cannot lock ${label}: ${errorMessage(e)}`, { cause: e });
  }
}

async function openGuard(path: string, label: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { create: true, write: true, mode: 0o600 });
  } catch (e) {
    throw new LockError(`Cannot lock ${label}: ${errorMessage(e)}`, { cause: e });
  }
}

function held(path: string, content: string): HeldLock {
  let released = false;
  log.debug("Locked {path}", { path });
  const lock: HeldLock = {
    path,
    async release() {
      if (released) return;
      released = true;
      try {
        // Another process may have taken over a lock it wrongly judged stale; leave theirs.
        if (await readPidFile(path) === content) await Deno.remove(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          log.warn("Cannot remove the pid file {path}: {error}", { path, error: errorMessage(e) });
        }
      }
    },
    releaseSync() {
      if (released) return;
      released = true;
      try {
        if (readPidFileSync(path) === content) Deno.removeSync(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          log.warn("Cannot remove the pid file {path}: {error}", { path, error: errorMessage(e) });
        }
      }
    },
    [Symbol.asyncDispose]() {
      return lock.release();
    },
  };
  return lock;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
