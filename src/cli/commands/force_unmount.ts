/**
 * `musicfs unmount --force [MOUNT]`: the way out when the daemon is stopped (SIGSTOP), stuck
 * or dead and `ls`, `cat` and `df` on the mount block. Aborts the mount's FUSE connection
 * (fusectl) so every blocked reader returns, and detaches the mount. The daemon is not asked
 * (it may not answer) and not killed: a stopped one, once continued, sees the aborted
 * connection and shuts down in order.
 *
 * @module
 */
import { isOwnerAlive, readLock } from "../../daemon/mod.ts";
import { AbortError, abortFuseMount, mountinfoPath } from "../../fuse/mod.ts";
import { CommandError, type CommandIo, consoleIo, reportError } from "./common.ts";

/** Options of {@link forceUnmountCommand}. */
export interface ForceUnmountOptions {
  /** The daemon's state dir: its pid, and the mountpoint it recorded. */
  stateDir: string;
  /** The mount to abort (MOUNT or `--mountpoint`); default the one the daemon recorded. */
  mountpoint?: string;
  /** Where to print; default stdout/stderr. */
  io?: CommandIo;
}

/** The process state letter of `pid` (`R`, `S`, `D`, `T`...), or undefined. */
async function processState(pid: number): Promise<string | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

/**
 * Aborts and detaches the mount; resolves to the exit code: 0 when it was aborted or
 * detached, 1 when nothing is mounted there or the abort is refused.
 */
export async function forceUnmountCommand(opts: ForceUnmountOptions): Promise<number> {
  const io = opts.io ?? consoleIo;
  try {
    const recorded = await Deno.readTextFile(`${opts.stateDir.replace(/\/+$/, "")}/mountpoint`)
      .then((m) => m.trim() || undefined, () => undefined);
    const target = opts.mountpoint ?? recorded;
    if (!target) {
      throw new CommandError(
        "no mountpoint given and the state dir records none",
        "name it: musicfs unmount --force <mountpoint>",
        2,
      );
    }
    let result;
    try {
      result = await abortFuseMount(target);
    } catch (e) {
      if (e instanceof AbortError) {
        throw new CommandError(e.message, `as a last resort: umount -l ${target}`, 1, {
          cause: e,
        });
      }
      throw e;
    }
    if (!result) {
      throw new CommandError(
        `nothing is mounted at ${mountinfoPath(target)}`,
        "nothing to unmount",
      );
    }
    const what = result.aborted
      ? `Aborted the FUSE connection ${result.connection} of ${result.mount.mountpoint}`
      : `The FUSE connection of ${result.mount.mountpoint} was already gone`;
    io.out(`${what}${result.detached ? " and detached the mount" : ""}`);
    // Only the daemon of this state dir, and only when it served this mount.
    const owner = await readLock(opts.stateDir, { name: "musicfs" }).catch(() => null);
    if (owner && isOwnerAlive(owner) && (!recorded || recorded === result.mount.mountpoint)) {
      const state = await processState(owner.pid);
      if (state === "T" || state === "t") {
        io.out(
          `The daemon (pid ${owner.pid}) is stopped; once continued (kill -CONT ${owner.pid}) ` +
            "it sees the abort and shuts down",
        );
      } else {
        io.out(`The daemon (pid ${owner.pid}) sees the abort and shuts down`);
      }
    }
    return 0;
  } catch (e) {
    return reportError(io, e, "see the daemon's log");
  }
}
