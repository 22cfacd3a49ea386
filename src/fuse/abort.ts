/**
 * The way out of a FUSE mount whose daemon is stopped (SIGSTOP), stuck or dead: abort its
 * kernel connection through the fusectl filesystem (`/sys/fs/fuse/connections/<minor>/abort`),
 * which fails every pending and later request with ENOTCONN, so blocked readers return and
 * `kill -9` works again; then detach the mount. Nothing here touches the mountpoint itself
 * (a stat of a hung mount would hang us too): the connection is found in
 * /proc/self/mountinfo.
 *
 * Hand-written: no package aborts FUSE connections (libfuse has no API for it either).
 *
 * @module
 */
import { basename, dirname, resolve } from "node:path";
import { cstr, errno, identity, libc, SyscallError } from "../sys/libc.ts";
import { detach, findFuseMount, type MountInfo } from "./mount.ts";

/** Where the kernel's fusectl filesystem lists FUSE connections. */
export const FUSECTL_DIR = "/sys/fs/fuse/connections";

/** A FUSE connection that could not be aborted, with a one-line reason. */
export class AbortError extends Error {
  /** `message` is the one-line reason shown to the user. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AbortError";
  }
}

/** What {@link abortFuseMount} did. */
export interface AbortResult {
  /** The mount found at the mountpoint (before it was detached). */
  mount: MountInfo;
  /** The fusectl connection id (the minor of the mount's device). */
  connection: number;
  /** Whether the connection was aborted (false: it was already gone from fusectl). */
  aborted: boolean;
  /** Whether the mount was detached (false: it was already gone). */
  detached: boolean;
}

/**
 * The path as /proc/self/mountinfo spells it. Only the parent is resolved: a stat of a dead or
 * hung mountpoint itself fails with ENOTCONN or blocks.
 */
export function mountinfoPath(path: string): string {
  const abs = resolve(path);
  try {
    return `${Deno.realPathSync(dirname(abs)).replace(/\/$/, "")}/${basename(abs)}`;
  } catch {
    return abs;
  }
}

/** The fusectl connection id of a FUSE mount: the minor number of its device. */
export function connectionOf(mount: MountInfo): number {
  const minor = Number(mount.device.split(":")[1]);
  if (!Number.isInteger(minor)) {
    throw new AbortError(`Cannot abort ${mount.mountpoint}: odd device ${mount.device}`);
  }
  return minor;
}

/**
 * Mount fusectl on {@link FUSECTL_DIR} when it is not (as root; a user cannot, and then needs
 * the system to have mounted it). Resolves whether the directory now lists connections.
 */
async function ensureFusectl(): Promise<boolean> {
  const listed = async () => {
    try {
      for await (const _ of Deno.readDir(FUSECTL_DIR)) return true;
      // An empty fusectl (no connection at all) or a bare directory: tell them apart.
      return (await Deno.readTextFile("/proc/self/mountinfo")).includes(` ${FUSECTL_DIR} `);
    } catch {
      return false;
    }
  };
  if (await listed()) return true;
  if (!identity().root) return false;
  if (libc().mount(cstr("fusectl"), cstr(FUSECTL_DIR), cstr("fusectl"), 0n, null) !== 0) {
    const err = errno();
    if (err !== 16 /* EBUSY: mounted meanwhile */) return false;
  }
  return await listed();
}

/**
 * Aborts the FUSE connection of the mount at `mountpoint` and detaches the mount. Works on a
 * stopped, stuck or dead daemon's mount, and on a live one (its daemon then sees ENODEV and
 * should exit). Resolves undefined when no FUSE filesystem is mounted there.
 * @throws {AbortError} when fusectl is not available or the abort is refused
 */
export async function abortFuseMount(mountpoint: string): Promise<AbortResult | undefined> {
  const path = mountinfoPath(mountpoint);
  const mount = findFuseMount(path);
  if (!mount) return undefined;
  const connection = connectionOf(mount);
  if (!(await ensureFusectl())) {
    throw new AbortError(
      `Cannot abort the FUSE connection of ${path}: ${FUSECTL_DIR} is not mounted` +
        (identity().root ? "" : " (as root: mount -t fusectl none " + FUSECTL_DIR + ")"),
    );
  }
  let aborted = false;
  try {
    await Deno.writeTextFile(`${FUSECTL_DIR}/${connection}/abort`, "1");
    aborted = true;
  } catch (e) {
    // Gone from fusectl: the connection ended meanwhile; the detach below is still needed.
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new AbortError(
        `Cannot abort the FUSE connection ${connection} of ${path}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }
  let detached: boolean;
  try {
    detached = await detach(path);
  } catch (e) {
    const err = e instanceof SyscallError ? e.message : (e as Error).message;
    throw new AbortError(`Aborted ${path}, but cannot detach it: ${err}`, { cause: e });
  }
  return { mount, connection, aborted, detached };
}
