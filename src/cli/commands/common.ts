/**
 * What the commands of `musicfs` share: one-line errors (`musicfs: <what> (<what to do>)`),
 * where output goes, the state dir's file names, and requests to the running daemon.
 *
 * @module
 */
import {
  ControlPermissionError,
  controlRequest,
  ControlRequestError,
  controlSocketPath,
  DaemonNotRunningError,
  DaemonTimeoutError,
  isOwnerAlive,
  readLock,
} from "../../daemon/mod.ts";

/** Where a command prints: one call per line, without the newline. */
export interface CommandIo {
  /** A line of regular output (stdout). */
  out(line: string): void;
  /** A line of error output (stderr). */
  err(line: string): void;
}

/** Prints to the process's stdout and stderr. */
export const consoleIo: CommandIo = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};

/** A failure a command reports as `musicfs: <what> (<todo>)` and exits with `exitCode`. */
export class CommandError extends Error {
  /** What went wrong. */
  readonly what: string;
  /** What the user can do about it. */
  readonly todo: string;
  /** The process exit code: 1 failure, 2 usage error. */
  readonly exitCode: number;

  /**
   * Creates the error.
   * @param what what went wrong, e.g. "musicfs is not running"
   * @param todo what to do, e.g. "start it with: musicfs mount <library>"
   * @param exitCode 1 (default) for a failure, 2 for a usage error
   */
  constructor(what: string, todo: string, exitCode = 1, options?: ErrorOptions) {
    super(`${what} (${todo})`, options);
    this.name = "CommandError";
    this.what = what;
    this.todo = todo;
    this.exitCode = exitCode;
  }
}

/** The answer to every command that needs a daemon when none runs. */
export function notRunningError(): CommandError {
  return new CommandError("musicfs is not running", "start it with: musicfs mount <library>");
}

/**
 * Prints `e` as the one-line error and returns the exit code. Errors that are not a
 * {@link CommandError} get `fallbackTodo` as their advice, since only the caller knows what
 * it was doing.
 */
export function reportError(io: CommandIo, e: unknown, fallbackTodo: string): number {
  if (e instanceof CommandError) {
    io.err(`musicfs: ${e.message}`);
    return e.exitCode;
  }
  const message = e instanceof Error ? e.message : String(e);
  io.err(`musicfs: ${message} (${fallbackTodo})`);
  return 1;
}

/** The files of a state dir (the integrator's layout contract). */
export function statePaths(stateDir: string): { db: string; snapshot: string } {
  const dir = stateDir.replace(/\/+$/, "") || "/";
  // `snapshot`: the search index (search.db; named so before it became an SQLite file).
  return { db: `${dir}/library.db`, snapshot: `${dir}/search.db` };
}

/** Options shared by the commands that talk to the daemon. */
export interface DaemonOptions {
  /** The daemon's state dir. */
  stateDir: string;
  /** The control socket; default `controlSocketPath(stateDir)`. For tests. */
  socketPath?: string;
  /** Bound on each request to the daemon. Default 5000 ms. */
  requestTimeoutMs?: number;
}

/** The control socket of `opts`. */
export function socketOf(opts: DaemonOptions): string {
  return opts.socketPath ?? controlSocketPath(opts.stateDir);
}

/**
 * One request to the daemon. Resolves to its JSON answer, or throws: the daemon's absence as
 * {@link DaemonNotRunningError} (each command decides what that means), everything else as a
 * {@link CommandError} ready to print.
 */
export async function askDaemon(
  opts: DaemonOptions,
  method: "GET" | "POST",
  path: string,
): Promise<unknown> {
  try {
    return await controlRequest(socketOf(opts), method, path, {
      timeoutMs: opts.requestTimeoutMs ?? 5000,
    });
  } catch (e) {
    if (e instanceof DaemonNotRunningError) throw e;
    throw await describeDaemonFailure(
      opts.stateDir,
      `${method} ${path.replace(/\?.*/, "")}`,
      e,
      opts.requestTimeoutMs ?? 5000,
    );
  }
}

async function describeDaemonFailure(
  stateDir: string,
  what: string,
  e: unknown,
  timeoutMs: number,
): Promise<CommandError> {
  if (e instanceof ControlPermissionError) {
    let owner = "";
    try {
      const uid = (await Deno.stat(e.socketPath)).uid;
      if (uid !== null && uid !== Deno.uid()) owner = ` (it belongs to uid ${uid})`;
    } catch { /* the uid is only a hint */ }
    return new CommandError(
      `permission denied on the daemon's control socket ${e.socketPath}${owner}`,
      "run this command as the user who started the daemon",
      1,
      { cause: e },
    );
  }
  if (e instanceof DaemonTimeoutError) {
    const pid = await livePid(stateDir);
    const who = pid ? `the daemon (pid ${pid})` : "the daemon";
    return new CommandError(
      `${who} did not answer ${what} within ${+(timeoutMs / 1000).toFixed(1)} s`,
      `if it is stopped or stuck, get out with: ${await forceUnmountHint(stateDir)}`,
      1,
      { cause: e },
    );
  }
  if (e instanceof ControlRequestError && e.status !== 0) {
    return new CommandError(
      `the daemon refused ${what}: ${e.message}`,
      "see the daemon's log",
      1,
      { cause: e },
    );
  }
  return new CommandError(
    e instanceof Error ? e.message : String(e),
    "see the daemon's log",
    1,
    { cause: e },
  );
}

/**
 * The command that gets the user out of a stopped or stuck daemon's mount: `musicfs unmount
 * --force <mountpoint>`, with the mountpoint the daemon of `stateDir` recorded (kill does
 * nothing to a stopped process or one blocked in the kernel).
 */
export async function forceUnmountHint(stateDir: string): Promise<string> {
  const mountpoint = await Deno.readTextFile(`${stateDir.replace(/\/+$/, "")}/mountpoint`).then(
    (m) => m.trim(),
    () => "",
  );
  return `musicfs unmount --force${mountpoint ? ` ${mountpoint}` : ""}`;
}

/** The pid of the live process holding the lock of `stateDir`, or null. */
export async function livePid(stateDir: string): Promise<number | null> {
  try {
    const owner = await readLock(stateDir, { name: "musicfs" });
    return owner && isOwnerAlive(owner) ? owner.pid : null;
  } catch {
    // An unreadable pid file only costs the pid in a message.
    return null;
  }
}

/** A duration as people read it: `45s`, `3m 05s`, `2h 03m`, `4d 07h`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  const s = Math.floor(ms / 1000);
  const two = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${two(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${two(m % 60)}m`;
  return `${Math.floor(h / 24)}d ${two(h % 24)}h`;
}
