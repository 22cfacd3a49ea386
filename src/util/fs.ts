/** Small filesystem helpers shared by the stores, the daemon and the CLI. */

/**
 * Whether a directory entry named `path` is there (a dangling symlink counts: the name is
 * taken). Errors other than "not found" (EACCES, EIO) are thrown, not read as "absent".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exists } from "./fs.ts";
 *
 * const dir = await Deno.makeTempDir();
 * try {
 *   await Deno.symlink(`${dir}/gone`, `${dir}/link`);
 *   assert.equal(await exists(`${dir}/link`), true); // dangling, but the name is taken
 *   assert.equal(await exists(`${dir}/gone`), false);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** {@link exists}, synchronously (for callers that are synchronous themselves). */
export function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** How {@link moveAside} names and prunes the set-aside copies. */
export interface MoveAsideOptions {
  /** How many set-aside copies (the newest) to keep; older ones are removed. */
  keep: number;
  /** Files that go with `path` under its name plus a suffix (SQLite's `-wal`, `-shm`). */
  companions?: string[];
}

/**
 * Set a damaged store aside for forensics: rename `path` (and its companions) to
 * `<path>.corrupt-<time>`, then keep only the newest `keep` such copies. Returns the new
 * name, or undefined when `path` was not there.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { existsSync, moveAside } from "./fs.ts";
 *
 * const dir = Deno.makeTempDirSync();
 * try {
 *   Deno.writeTextFileSync(`${dir}/library.db`, "junk");
 *   Deno.writeTextFileSync(`${dir}/library.db-wal`, "junk");
 *   const to = moveAside(`${dir}/library.db`, { keep: 3, companions: ["-wal", "-shm"] });
 *   assert.match(to!, /\/library\.db\.corrupt-\d{4}-\d\d-\d\dT.*Z$/);
 *   assert.ok(existsSync(`${to}-wal`)); // the WAL goes with it; the absent -shm is no error
 *   assert.ok(!existsSync(`${dir}/library.db`));
 *   assert.equal(moveAside(`${dir}/library.db`, { keep: 3 }), undefined); // nothing there
 * } finally {
 *   Deno.removeSync(dir, { recursive: true });
 * }
 * ```
 */
export function moveAside(path: string, options: MoveAsideOptions): string | undefined {
  const companions = options.companions ?? [];
  // ISO time without ':' (awkward in file names), after every copy already set aside: two in
  // the same millisecond get `.2`, `.3`..., so the newest is never the one pruned.
  const stamps = [...asideStamps(path, companions)].sort(byStamp);
  const newest = stamps.at(-1);
  let stamp = stampNow();
  if (newest !== undefined && byStamp(newest, stamp) >= 0) {
    const [time, n] = splitStamp(newest);
    stamp = `${time}.${n + 1}`;
  }
  const target = `${path}.corrupt-${stamp}`;
  try {
    Deno.renameSync(path, target);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  // The companions keep their suffixes, so the set-aside copy can still be opened as it was.
  for (const suffix of companions) {
    try {
      Deno.renameSync(path + suffix, target + suffix);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  pruneAside(path, options.keep, companions);
  return target;
}

function stampNow(): string {
  return new Date().toISOString().replaceAll(":", "-");
}

/** The time (and same-millisecond counter) of each copy of `path` set aside. */
function asideStamps(path: string, companions: string[]): Set<string> {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash) || "/" : ".";
  const base = path.slice(slash + 1) + ".corrupt-";
  const stamps = new Set<string>();
  for (const e of Deno.readDirSync(dir)) {
    if (!e.name.startsWith(base)) continue;
    let stamp = e.name.slice(base.length);
    const suffix = companions.find((s) => stamp.endsWith(s));
    if (suffix) stamp = stamp.slice(0, -suffix.length);
    stamps.add(stamp);
  }
  return stamps;
}

/** A stamp's time and its same-millisecond counter (1 when it has none). */
function splitStamp(stamp: string): [string, number] {
  const m = /^(.*Z)\.(\d+)$/.exec(stamp);
  return m ? [m[1], Number(m[2])] : [stamp, 1];
}

/** Oldest first: by time (ISO text), then by counter as a number (`.10` after `.9`). */
function byStamp(a: string, b: string): number {
  const [ta, na] = splitStamp(a);
  const [tb, nb] = splitStamp(b);
  return ta < tb ? -1 : ta > tb ? 1 : na - nb;
}

function pruneAside(path: string, keep: number, companions: string[]): void {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash) || "/" : ".";
  const base = path.slice(slash + 1) + ".corrupt-";
  const stamps = [...asideStamps(path, companions)].sort(byStamp);
  for (const stamp of stamps.reverse().slice(keep)) {
    for (const suffix of ["", ...companions]) {
      try {
        Deno.removeSync(`${dir}/${base}${stamp}${suffix}`, { recursive: true });
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
}
