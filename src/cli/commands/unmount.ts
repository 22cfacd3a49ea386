/**
 * `musicfs unmount [--mountpoint DIR]`: asks the daemon for its ordered shutdown (which
 * unmounts) and waits until it is gone; with no daemon, clears a dead FUSE mount left at the
 * mountpoint by one that was killed.
 *
 * @module
 */
import { basename, dirname, resolve } from "node:path";
import { DaemonNotRunningError, isOwnerAlive, type LockOwner, readLock } from "../../daemon/mod.ts";
import { detach, findFuseMount, probeMount } from "../../fuse/mod.ts";
import {
  askDaemon,
  CommandError,
  type CommandIo,
  consoleIo,
  type DaemonOptions,
  forceUnmountHint,
  livePid,
  reportError,
} from "./common.ts";
import { describeHolders, holdersOf } from "./holders.ts";

/** Options of {@link unmountCommand}. */
export interface UnmountOptions extends DaemonOptions {
  /**
   * Where the filesystem is mounted (`--mountpoint`, or the default). The running daemon's own
   * answer wins; this one is used to find a dead mount when no daemon answers.
   */
  mountpoint?: string;
  /**
   * Detach even when processes use the mount (the kernel finishes it when they let go).
   * Without it a busy mount is refused, naming the processes.
   */
  lazy?: boolean;
  /**
   * The mountpoint was named but no running musicfs serves it: only a dead mount left there
   * is cleared (the daemon of `stateDir` is not asked).
   */
  daemonless?: boolean;
  /**
   * How long to wait for the daemon to exit after asking. Default 60 000 ms: as long as
   * systemd waits (contrib/'s TimeoutStopSec), since a shutdown right after the first scan of a
   * large library stores the tree for the next start first (1M tracks: 13-19 s).
   */
  timeoutMs?: number;
  /** After how long the wait says what is taking time. Default 3 000 ms. */
  slowMs?: number;
  /** Where to print; default stdout/stderr. */
  io?: CommandIo;
}

const POLL_MS = 100;
const SLOW_MS = 3_000;

/**
 * Stops the daemon of `opts.stateDir` and waits (bounded) until its process is gone. Resolves
 * to the exit code: 0 when it stopped or a dead mount was detached, 1 otherwise.
 */
export async function unmountCommand(opts: UnmountOptions): Promise<number> {
  const io = opts.io ?? consoleIo;
  try {
    if (opts.daemonless) return await withoutDaemon(opts, io, false);
    let status: { pid?: number; mountpoint?: string } | null;
    try {
      status = (await askDaemon(opts, "GET", "/status")) as typeof status;
    } catch (e) {
      if (e instanceof DaemonNotRunningError) return await withoutDaemon(opts, io);
      throw e;
    }
    const owner = await ownerOf(opts.stateDir, status?.pid);
    const served = status?.mountpoint ?? opts.mountpoint;
    if (served && !opts.lazy) await refuseBusy(served, status?.pid);
    try {
      await askDaemon(opts, "POST", "/shutdown");
    } catch (e) {
      // Gone between the two requests: that is what was asked for.
      if (!(e instanceof DaemonNotRunningError)) throw e;
    }
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const slow = setTimeout(() => {
      io.err(
        "musicfs: waiting for the daemon's shutdown (after a scan it may be storing the tree " +
          "for the next start)",
      );
    }, opts.slowMs ?? SLOW_MS);
    const stopped = await waitUntilStopped(opts, owner, timeoutMs).finally(() =>
      clearTimeout(slow)
    );
    if (!stopped) {
      const who = owner ? `the daemon (pid ${owner.pid})` : "the daemon";
      throw new CommandError(
        `${who} did not stop within ${+(timeoutMs / 1000).toFixed(1)} s`,
        `see its log; to get out now: ${await forceUnmountHint(opts.stateDir)}`,
      );
    }
    const mountpoint = status?.mountpoint ?? opts.mountpoint;
    // A daemon that died during its shutdown may have left the mount behind.
    const detached = mountpoint ? await detachIfDead(mountpoint, false) : false;
    const where = mountpoint ? `Unmounted ${mountpoint}` : "Unmounted";
    const who = owner ? ` (daemon pid ${owner.pid} stopped)` : " (daemon stopped)";
    io.out(`${where}${who}`);
    if (detached) io.out(`Detached the dead mount left at ${mountpoint}`);
    return 0;
  } catch (e) {
    return reportError(io, e, "see the daemon's log");
  }
}

/** The daemon's pid, with the start time from its lock when it matches (for pid reuse). */
async function ownerOf(stateDir: string, pid: number | undefined): Promise<LockOwner | null> {
  let locked: LockOwner | null = null;
  try {
    locked = await readLock(stateDir, { name: "musicfs" });
  } catch {
    // Unreadable: the pid from the status answer is enough.
  }
  if (typeof pid !== "number") return locked;
  return { pid, startTime: locked?.pid === pid ? locked.startTime : null };
}

/**
 * Waits until the daemon's process is gone, or (pid unknown) until its socket stops answering.
 * False when `timeoutMs` passed first.
 */
async function waitUntilStopped(
  opts: DaemonOptions,
  owner: LockOwner | null,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (owner ? !isOwnerAlive(owner) : await socketSilent(opts)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function socketSilent(opts: DaemonOptions): Promise<boolean> {
  try {
    await askDaemon({ ...opts, requestTimeoutMs: 1000 }, "GET", "/status");
    return false;
  } catch (e) {
    return e instanceof DaemonNotRunningError;
  }
}

/**
 * Throws when processes use `mountpoint`: the daemon's unmount would detach it lazily, leaving
 * them reading a filesystem that no longer shows anywhere.
 */
async function refuseBusy(mountpoint: string, daemonPid: number | undefined): Promise<void> {
  let scan;
  try {
    scan = await holdersOf(canonical(mountpoint), new Set(daemonPid ? [daemonPid] : []));
  } catch {
    return; // no /proc: nothing to name, and the kernel still finishes a lazy detach
  }
  if (!scan.holders.length) return;
  throw new CommandError(
    `${mountpoint} is in use by ${describeHolders(scan.holders)}`,
    `close them, or detach it anyway with: musicfs unmount --lazy ${mountpoint}`,
  );
}

async function withoutDaemon(
  opts: UnmountOptions,
  io: CommandIo,
  checkDaemon = true,
): Promise<number> {
  const pid = checkDaemon ? await livePid(opts.stateDir) : null;
  if (pid) {
    throw new CommandError(
      `the daemon (pid ${pid}) does not answer on its control socket`,
      `it may still be starting; if it is stopped or stuck: ${await forceUnmountHint(
        opts.stateDir,
      )}`,
    );
  }
  if (opts.mountpoint && (await detachIfDead(opts.mountpoint, true))) {
    io.out(`musicfs was not running; detached the dead mount at ${opts.mountpoint}`);
    return 0;
  }
  const where = opts.mountpoint ? `, and nothing of it is mounted at ${opts.mountpoint}` : "";
  throw new CommandError(`musicfs is not running${where}`, "nothing to unmount");
}

/**
 * Detaches the FUSE mount at `mountpoint` when its server is gone (ENOTCONN), or when it is a
 * musicfs mount that does not answer and `noDaemon` says ours is not running. A live mount is
 * refused: it belongs to a process we know nothing about.
 */
async function detachIfDead(mountpoint: string, noDaemon: boolean): Promise<boolean> {
  const path = canonical(mountpoint);
  const mount = findFuseMount(path);
  if (!mount) return false;
  const state = await probeMount(path);
  if (state === "live") {
    if (!noDaemon) return false;
    throw new CommandError(
      `${mountpoint} is mounted (${mount.fstype}) by a process other than this musicfs`,
      `unmount it with: fusermount3 -u ${mountpoint}`,
    );
  }
  if (state === "hung" && mount.fstype !== "fuse.musicfs") {
    throw new CommandError(
      `${mountpoint} is mounted (${mount.fstype}) and does not answer`,
      `unmount it with: fusermount3 -uz ${mountpoint}`,
    );
  }
  try {
    return await detach(path);
  } catch (e) {
    throw new CommandError(
      `cannot detach the dead mount at ${mountpoint}: ${e instanceof Error ? e.message : e}`,
      `try: fusermount3 -uz ${mountpoint}`,
      1,
      { cause: e },
    );
  }
}

/**
 * The path as /proc/self/mountinfo spells it. Only the parent is resolved: stat of a dead
 * mountpoint itself fails with ENOTCONN.
 */
function canonical(path: string): string {
  const abs = resolve(path);
  try {
    return `${Deno.realPathSync(dirname(abs)).replace(/\/$/, "")}/${basename(abs)}`;
  } catch {
    return abs;
  }
}
