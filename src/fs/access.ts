/**
 * Who may read what in an `--allow-other` mount. The kernel checks access itself
 * (`default_permissions`) from the owner, group and mode the tree reports, so these rules are
 * the whole of musicfs's access control:
 *
 * - A track, cover or playlist shows its source's owner, group and permission bits with every
 *   write bit (and setuid/setgid/sticky) cleared: the kernel refuses exactly whom the source
 *   refuses.
 * - A virtual directory is readable (r-x) by a user only if that user can read at least one
 *   entry in it, so a listing never names what its reader cannot open:
 *   - when some entry is readable by everyone (r in all three classes), the directory is
 *     0555, owned by the daemon's user;
 *   - otherwise the owner class goes to the uid owning the most owner-readable entries, and
 *     the group class to the gid of the most entries readable by owner and group (so every
 *     member of that group can read one, whether or not they own it); the other class gets
 *     nothing;
 *   - a directory none of whose entries anyone but root can read is 0500, owned by the
 *     daemon's user.
 *   Users who can read an entry only through rarer combinations (another owner than the
 *   majority, an entry readable by "other" but not by its group) are left out: the rule errs
 *   towards refusing, never towards showing.
 * - `/.musicfs` (status and problems name every source) and `/.search` are 0700, the daemon
 *   user's alone; `--allow-other-search` makes `/.search` 0511 (others may run queries but not
 *   list past ones) and each query directory follows the directory rule over its results.
 *
 * @module
 */

/** Owner, group and permission bits (`st_mode & 0o7777`) of a node. */
export interface Access {
  /** Owner uid. */
  readonly uid: number;
  /** Owner gid. */
  readonly gid: number;
  /** Permission bits, no type bits. */
  readonly mode: number;
}

/** The access a file gets from its source: the source's own, write and special bits cleared. */
export function fileAccess(uid: number, gid: number, mode: number): Access {
  return { uid, gid, mode: mode & 0o555 };
}

/** Readable by every user (owner, group and others). */
function worldReadable(a: Access): boolean {
  return (a.mode & 0o444) === 0o444;
}

/**
 * The access of a directory holding entries with `entries`' access (see the module
 * documentation); `daemon` is the daemon's user and group.
 */
export function dirAccess(
  entries: Iterable<Access>,
  daemon: { uid: number; gid: number },
): Access {
  let owners: Map<number, number> | undefined;
  let groups: Map<number, number> | undefined;
  for (const a of entries) {
    if (worldReadable(a)) return { uid: daemon.uid, gid: daemon.gid, mode: 0o555 };
    if (a.mode & 0o400) {
      owners ??= new Map();
      owners.set(a.uid, (owners.get(a.uid) ?? 0) + 1);
      if ((a.mode & 0o440) === 0o440) {
        groups ??= new Map();
        groups.set(a.gid, (groups.get(a.gid) ?? 0) + 1);
      }
    }
  }
  const uid = owners ? mostCommon(owners, daemon.uid) : daemon.uid;
  const gid = groups ? mostCommon(groups, daemon.gid) : daemon.gid;
  return { uid, gid, mode: groups ? 0o550 : 0o500 };
}

/** The key counted most often; ties go to `prefer`, then to the smallest key. */
function mostCommon(counts: Map<number, number>, prefer: number): number {
  let best = -1;
  let bestCount = 0;
  for (const [k, n] of counts) {
    if (
      n > bestCount ||
      (n === bestCount && k !== best && (k === prefer || (best !== prefer && k < best)))
    ) {
      best = k;
      bestCount = n;
    }
  }
  return best;
}

/** Mode of /.musicfs, and of /.search unless it is shared: the daemon user's alone. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of /.search with `--allow-other-search`: others may look up queries, not list them. */
export const SHARED_SEARCH_MODE = 0o511;
