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

/**
 * The access of a directory holding entries with `entries`' access (see the module
 * documentation); `daemon` is the daemon's user and group.
 */
export function dirAccess(
  entries: Iterable<Access>,
  daemon: { uid: number; gid: number },
): Access {
  const tally = new AccessTally();
  for (const a of entries) if (tally.add(a)) break;
  return tally.result(daemon);
}

/**
 * {@link dirAccess} one entry at a time, so a directory can stop looking at its entries (and
 * computing theirs) as soon as one is readable by everyone. Costs no allocation while the
 * entries share one owner and one group, the usual case.
 */
export class AccessTally {
  #world = false;
  #uid = -1;
  #uidCount = 0;
  #owners: Map<number, number> | undefined;
  #gid = -1;
  #gidCount = 0;
  #groups: Map<number, number> | undefined;

  /** Start over, to count another directory's entries with the same object. */
  reset(): this {
    this.#world = false;
    this.#uidCount = 0;
    this.#owners = undefined;
    this.#gidCount = 0;
    this.#groups = undefined;
    return this;
  }

  /** Count an entry; true once some entry is readable by everyone (the rest cannot matter). */
  add(a: Access): boolean {
    if ((a.mode & 0o444) === 0o444) return (this.#world = true);
    if (!(a.mode & 0o400)) return false;
    if (this.#owners) bump(this.#owners, a.uid);
    else if (this.#uidCount === 0 || a.uid === this.#uid) {
      this.#uid = a.uid;
      this.#uidCount++;
    } else {
      this.#owners = new Map([[this.#uid, this.#uidCount]]);
      bump(this.#owners, a.uid);
    }
    // Readable by owner and group: every member of the group can read it, owner or not.
    if ((a.mode & 0o440) !== 0o440) return false;
    if (this.#groups) bump(this.#groups, a.gid);
    else if (this.#gidCount === 0 || a.gid === this.#gid) {
      this.#gid = a.gid;
      this.#gidCount++;
    } else {
      this.#groups = new Map([[this.#gid, this.#gidCount]]);
      bump(this.#groups, a.gid);
    }
    return false;
  }

  /** The directory's access from the entries counted. */
  result(daemon: { uid: number; gid: number }): Access {
    if (this.#world) return { uid: daemon.uid, gid: daemon.gid, mode: 0o555 };
    const uid = this.#owners
      ? mostCommon(this.#owners, daemon.uid)
      : this.#uidCount
      ? this.#uid
      : daemon.uid;
    const hasGroup = this.#groups !== undefined || this.#gidCount > 0;
    const gid = this.#groups
      ? mostCommon(this.#groups, daemon.gid)
      : hasGroup
      ? this.#gid
      : daemon.gid;
    return { uid, gid, mode: hasGroup ? 0o550 : 0o500 };
  }
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

function bump(m: Map<number, number>, k: number): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/** Mode of /.musicfs, and of /.search unless it is shared: the daemon user's alone. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of /.search with `--allow-other-search`: others may look up queries, not list them. */
export const SHARED_SEARCH_MODE = 0o511;
