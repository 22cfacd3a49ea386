/**
 * The state and cache dirs hold what the sources protect (library.db has every title, the
 * cache every byte read): they are the daemon user's alone, 0700 with files 0600. A dir left
 * wider (by an older version, a copy, a umask) is fixed at start, with one warning.
 *
 * @module
 */
import { logger } from "../log/mod.ts";

const log = logger("daemon");

/** What {@link makePrivate} changed. */
export interface PrivateDirReport {
  /** Directories and files whose mode was narrowed. */
  fixed: number;
  /** Entries that could not be fixed (e.g. owned by another user), with the reason. */
  failed: { path: string; reason: string }[];
}

/** The permission bits that let anyone but the owner in. */
const OTHERS = 0o077;

/**
 * Create `dir` (0700) when missing, then narrow it and everything below it: directories to
 * 0700, files to 0600 (their owner's execute bit aside, none is expected). Symlinks are never
 * followed (they are left alone, and so is what they point at); neither are other mounts.
 * Logs one warning naming `what` when anything was wider. Never throws for an entry it cannot
 * fix: those are reported and logged in the same warning.
 */
export async function makePrivate(dir: string, what: string): Promise<PrivateDirReport> {
  const report: PrivateDirReport = { fixed: 0, failed: [] };
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const top = await Deno.lstat(dir);
  if (top.isSymlink) {
    // The user pointed us at a link on purpose: fix what it names, as the top only.
    await narrow(dir, await Deno.stat(dir), report);
  } else await narrow(dir, top, report);
  const dev = (await Deno.stat(dir)).dev;
  const walk = async (d: string): Promise<void> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(d));
    } catch (e) {
      report.failed.push({ path: d, reason: (e as Error).message });
      return;
    }
    for (const e of entries) {
      const p = `${d}/${e.name}`;
      let st: Deno.FileInfo;
      try {
        st = await Deno.lstat(p);
      } catch {
        /* gone meanwhile */
        continue;
      }
      if (st.isSymlink) continue;
      if (st.dev !== dev) continue;
      await narrow(p, st, report);
      if (st.isDirectory) await walk(p);
    }
  };
  await walk(dir);
  if (report.failed.length) {
    const first = report.failed[0];
    log.warn(
      `The ${what} {dir} is open to other users; made {fixed} entries private (0700/0600) but ` +
        `could not fix {failed}, e.g. {path}: {reason}`,
      { dir, fixed: report.fixed, failed: report.failed.length, ...first },
    );
  } else if (report.fixed) {
    log.warn(
      `The ${what} {dir} was open to other users; made {fixed} entries private (0700/0600)`,
      { dir, fixed: report.fixed },
    );
  }
  return report;
}

async function narrow(path: string, st: Deno.FileInfo, report: PrivateDirReport): Promise<void> {
  const mode = (st.mode ?? 0) & 0o7777;
  if (!(mode & OTHERS) && !(mode & 0o7000)) return;
  const want = st.isDirectory ? 0o700 : mode & 0o600;
  try {
    // The path was just lstat'ed as a file or directory; chmod of a path swapped for a link
    // since would follow it, so check the same inode is still there first.
    const again = await Deno.lstat(path);
    if (again.isSymlink || again.ino !== st.ino) return;
    await Deno.chmod(path, want);
    report.fixed++;
  } catch (e) {
    report.failed.push({ path, reason: (e as Error).message });
  }
}
