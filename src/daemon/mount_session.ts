/**
 * The daemon's mount: the FUSE session with the options the tree's invalidations allow, the
 * connection it is (so only our own dead mount is ever detached), and its st_dev (so the walk
 * never descends into it).
 */
import { detach, findFuseMount, type FuseOperations, FuseSession } from "../fuse/mod.ts";
import { logger } from "../log/mod.ts";

const log = logger("daemon");

/** A mounted session and which kernel connection it is. */
export interface DaemonMount {
  /** The session serving the tree. */
  session: FuseSession;
  /** The mountpoint as mounted. */
  mountpoint: string;
  /** `major:minor` of our connection, if mountinfo shows it. */
  device: string | undefined;
  /** `st_dev` of the mount (the walk refuses anything on it: a loop). */
  dev: number | undefined;
}

/** Mount `ops` at `mountpoint`. */
export async function mountTree(
  mountpoint: string,
  ops: FuseOperations,
  opts: { allowOther?: boolean },
): Promise<DaemonMount> {
  // MUSICFS_PASSTHROUGH=0 serves reads in userspace even as root (tests of that path).
  const passthroughEnv = Deno.env.get("MUSICFS_PASSTHROUGH");
  const session = await FuseSession.mount(mountpoint, ops, {
    create: true,
    allowOther: opts.allowOther,
    passthrough: passthroughEnv === "0" ? false : "auto",
    // Other users get exactly what the sources give them; the kernel checks the modes.
    defaultPermissions: opts.allowOther,
    // The tree tells the kernel about every change, so its caches may live long (generated
    // files, which change without a notice, get 1 s: see MusicOps.shareAttrs).
    entryTtlMs: 3_600_000,
    attrTtlMs: 3_600_000,
    // Listings too: apply() invalidates a directory's inode whenever its entries change.
    cacheDirs: true,
  });
  // Which connection is ours: after an abort (fusectl) the session ends without unmounting,
  // and only a mount of this very connection may be detached at shutdown.
  const device = findFuseMount(session.mountpoint)?.device;
  return { session, mountpoint: session.mountpoint, device, dev: deviceNumber(device) };
}

/** Unmount, then detach what an aborted connection of ours left there. */
export async function unmountTree(m: DaemonMount): Promise<void> {
  await m.session.unmount();
  await detachOwnDeadMount(m.mountpoint, m.device);
}

/**
 * Detach the mount at `mountpoint` when it is still the connection `device` (`major:minor`):
 * what an aborted connection leaves (the session ends without unmounting), a dead mount that
 * fails every access with ENOTCONN. A mount made there since by someone else is left alone.
 */
async function detachOwnDeadMount(mountpoint: string, device: string | undefined): Promise<void> {
  if (!device) return;
  const mount = findFuseMount(mountpoint);
  if (mount?.device !== device) return;
  if (await detach(mountpoint)) {
    log.info("Detached {mountpoint}: its FUSE connection had been aborted", { mountpoint });
  }
}

/** `st_dev` of a `major:minor` device (glibc's makedev), or undefined. */
function deviceNumber(device: string | undefined): number | undefined {
  const m = device && /^(\d+):(\d+)$/.exec(device);
  if (!m) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return ((major & 0xfffff000) * 2 ** 32) + ((major & 0xfff) << 8) + ((minor & 0xffffff00) << 12) +
    (minor & 0xff);
}
