/**
 * The checks and settings of a daemon start that come before any store is opened: the
 * open-files limit, private state and cache dirs, and refusing a mount that would loop into a
 * library. A refused start changes nothing.
 */
import { isInside } from "../fs/mod.ts";
import { logger } from "../log/mod.ts";
import { exists } from "../util/mod.ts";
import { MIN_FDS, raiseFdLimit } from "./fd_limit.ts";
import { makePrivate } from "./private_dir.ts";

const log = logger("daemon");

/** A daemon start that failed before the mount answered, with a one-line reason. */
export class DaemonStartError extends Error {
  /** `message` is shown to the user as is. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DaemonStartError";
  }
}

/** Raise the open-files limit as far as allowed; refuse a start below {@link MIN_FDS}. */
export function ensureFdLimit(): { soft: number } {
  const limits = raiseFdLimit();
  if (limits.soft < MIN_FDS) {
    throw new Error(
      `Cannot start: the open files limit is ${limits.soft}, musicfs needs at least ${MIN_FDS} (raise it with ulimit -n)`,
    );
  }
  if (limits.from !== undefined) {
    log.info("Raised the open files limit from {from} to {soft}", limits);
  }
  return limits;
}

/** What the daemon writes (library.db, snapshots, chunks, log, socket) is its user's alone. */
export async function makeDaemonFilesPrivate(stateDir: string, cacheDir: string): Promise<void> {
  Deno.umask(0o077);
  await makePrivate(stateDir, "state dir");
  if (await exists(cacheDir)) await makePrivate(cacheDir, "cache dir");
}

/**
 * Refuse a mountpoint inside a library (or a library inside the mountpoint): the mount would
 * index its own views, and the watcher's setup would stat the mount from the thread that
 * serves it, a deadlock. Also through links: the mountpoint's folder as it really is (the
 * mountpoint itself may be a dead mount, not to be stat'ed).
 */
export async function refuseMountLoop(mountpoint: string, libraries: string[]): Promise<void> {
  const slash = mountpoint.lastIndexOf("/");
  const realParent = await Deno.realPath(mountpoint.slice(0, slash) || "/").catch(() => "");
  const mountpoints = [mountpoint];
  if (realParent) {
    mountpoints.push(`${realParent === "/" ? "" : realParent}${mountpoint.slice(slash)}`);
  }
  for (const root of libraries) {
    for (const mp of mountpoints) {
      if (isInside(mp, root) || isInside(root, mp)) {
        throw new DaemonStartError(
          `Cannot mount ${mountpoint}: it ${
            isInside(mp, root) ? "is inside" : "holds"
          } the library ${root}, a loop (choose a mountpoint outside the libraries)`,
        );
      }
    }
  }
}
