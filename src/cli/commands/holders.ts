/**
 * Which processes hold files or folders under a mountpoint open, from /proc (their cwd, root,
 * open files and mapped files), so `musicfs unmount` can refuse a busy mount by name instead of
 * detaching it lazily behind their backs. Only paths are compared: nothing under the mount is
 * stat'ed, so a hung mount cannot block this.
 *
 * @module
 */

/** A process using the mount. */
export interface Holder {
  pid: number;
  /** Its command name (/proc/PID/comm). */
  command: string;
}

/** What a scan of /proc found. `complete` is false when some processes could not be read. */
export interface HolderScan {
  holders: Holder[];
  complete: boolean;
}

/**
 * The processes (other than those in `exclude`) whose cwd, root, open files or mappings lie at
 * or below `mountpoint`.
 */
export async function holdersOf(
  mountpoint: string,
  exclude: ReadonlySet<number> = new Set(),
  proc = "/proc",
): Promise<HolderScan> {
  const prefix = mountpoint.replace(/\/+$/, "");
  const under = (p: string) => p === prefix || p.startsWith(prefix + "/");
  const holders: Holder[] = [];
  let complete = true;
  for await (const e of Deno.readDir(proc)) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    if (pid === Deno.pid || exclude.has(pid)) continue;
    let uses = false;
    try {
      for (const link of ["cwd", "root"]) {
        if (under(await readLinkOr(`${proc}/${pid}/${link}`))) uses = true;
      }
      if (!uses) {
        for await (const fd of Deno.readDir(`${proc}/${pid}/fd`)) {
          if (under(await readLinkOr(`${proc}/${pid}/fd/${fd.name}`))) {
            uses = true;
            break;
          }
        }
      }
      if (!uses) {
        const maps = await Deno.readTextFile(`${proc}/${pid}/maps`);
        uses = maps.split("\n").some((l) => {
          const i = l.indexOf("/");
          return i >= 0 && under(l.slice(i));
        });
      }
    } catch (err) {
      // Gone meanwhile: not a holder. Not ours to read: the answer may miss it.
      if (!(err instanceof Deno.errors.NotFound)) complete = false;
      continue;
    }
    if (uses) {
      const command = (await Deno.readTextFile(`${proc}/${pid}/comm`).catch(() => "?")).trim();
      holders.push({ pid, command });
    }
  }
  return { holders: holders.sort((a, b) => a.pid - b.pid), complete };
}

async function readLinkOr(path: string): Promise<string> {
  try {
    return await Deno.readLink(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}

/** `pid 12 (vlc), pid 40 (bash)`, at most `max` named. */
export function describeHolders(holders: Holder[], max = 5): string {
  const named = holders.slice(0, max).map((h) => `pid ${h.pid} (${h.command})`);
  if (holders.length > max) named.push(`${holders.length - max} more`);
  return named.join(", ");
}
