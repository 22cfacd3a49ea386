/**
 * Tests keep to themselves: loaded before every test module (`deno task test` preloads it, and
 * tests/support/helpers.ts imports it for a single file run directly), it points HOME and the XDG
 * dirs of this process, and so of every daemon and CLI the suite spawns, at a private temp dir.
 * A user's own daemon in the real default state dir is then out of reach: the defaults, the
 * control socket and the runtime registry all resolve inside the temp dir.
 *
 * The real values stay available in {@link REAL_ENV} for the test that guards this. DENO_DIR
 * keeps pointing at the real Deno cache (a cache, not state), so children do not re-transpile.
 *
 * @module
 */

/** The variables this module replaces. */
const VARS = [
  "HOME",
  "XDG_STATE_HOME",
  "XDG_CACHE_HOME",
  "XDG_CONFIG_HOME",
  "XDG_DATA_HOME",
  "XDG_RUNTIME_DIR",
] as const;

const MARK = "MUSICFS_TEST_ISOLATED";
const PREFIX = "musicfs-test-env-";
const REAL = "MUSICFS_TEST_REAL_ENV";

/** The environment the suite was started with (before isolation); undefined = unset. */
export const REAL_ENV: Readonly<Record<(typeof VARS)[number], string | undefined>> = (() => {
  const saved = Deno.env.get(REAL);
  if (saved) return JSON.parse(saved);
  const real = Object.fromEntries(VARS.map((v) => [v, Deno.env.get(v)]));
  return real as Record<(typeof VARS)[number], string | undefined>;
})();

/** The private dir holding this run's HOME and XDG dirs. */
export const ISOLATED_ROOT: string = (() => {
  const already = Deno.env.get(MARK);
  if (already) return already;
  const root = Deno.makeTempDirSync({ prefix: PREFIX });
  Deno.writeTextFileSync(`${root}/.owner`, `${Deno.pid} ${startTime(Deno.pid)}\n`);
  removeOrphans(root.slice(0, root.lastIndexOf("/")), root);
  const dirs: Record<(typeof VARS)[number], string> = {
    HOME: `${root}/home`,
    XDG_STATE_HOME: `${root}/state`,
    XDG_CACHE_HOME: `${root}/cache`,
    XDG_CONFIG_HOME: `${root}/config`,
    XDG_DATA_HOME: `${root}/data`,
    XDG_RUNTIME_DIR: `${root}/run`,
  };
  for (const d of Object.values(dirs)) Deno.mkdirSync(d, { mode: 0o700 });
  const realHome = REAL_ENV.HOME ?? "/root";
  if (!Deno.env.get("DENO_DIR")) {
    const cache = REAL_ENV.XDG_CACHE_HOME ?? `${realHome}/.cache`;
    Deno.env.set("DENO_DIR", `${cache}/deno`);
  }
  Deno.env.set(REAL, JSON.stringify(REAL_ENV));
  for (const [k, v] of Object.entries(dirs)) Deno.env.set(k, v);
  Deno.env.set(MARK, root);
  // Removed when the test process ends; daemons the tests started are stopped by then.
  globalThis.addEventListener("unload", () => {
    // A daemon still writing its runtime files (its registry entry, removed last in its
    // shutdown) can make a pass fail (ENOTEMPTY): passes 100 ms apart, for up to 2 s.
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 20; i++) {
      try {
        Deno.removeSync(root, { recursive: true });
        return;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return;
      }
      Atomics.wait(pause, 0, 0, 100);
    }
    // A leftover temp dir is no failure: the next run removes it (see removeOrphans).
  });
  return root;
})();

/** The process start time (field 22 of /proc/PID/stat), or "" when it is gone. */
function startTime(pid: number): string {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

/**
 * Removes the private dirs of earlier runs whose process is gone without cleaning up (killed by
 * a timeout: no unload event), unless something is still mounted below them.
 */
function removeOrphans(tmp: string, ours: string): void {
  let mounts = "";
  try {
    mounts = Deno.readTextFileSync("/proc/self/mounts");
  } catch { /* no /proc: keep everything */ }
  try {
    for (const e of Deno.readDirSync(tmp)) {
      const dir = `${tmp}/${e.name}`;
      if (!e.isDirectory || !e.name.startsWith(PREFIX) || dir === ours) continue;
      let owner: string | undefined;
      try {
        owner = Deno.readTextFileSync(`${dir}/.owner`).trim();
      } catch {
        // Not marked: a dir being made right now (the mark follows at once), or the rest of one
        // whose removal raced a daemon still writing its runtime files: gone after a minute.
        if (!olderThan(dir, 60_000)) continue;
      }
      if (owner !== undefined) {
        const [pid, start] = owner.split(" ");
        if (startTime(Number(pid)) === start) continue; // still running
      }
      if (!mounts || mounts.includes(` ${dir}/`)) continue;
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* another run got there first */ }
    }
  } catch { /* an unreadable temp dir: nothing to tidy */ }
}

/** Whether `path` was last modified more than `ms` ago (false when it cannot be told). */
function olderThan(path: string, ms: number): boolean {
  try {
    const m = Deno.statSync(path).mtime;
    return m !== null && Date.now() - m.getTime() > ms;
  } catch {
    return false;
  }
}

/** The real default state dir (what `musicfs` would use outside the suite). */
export function realDefaultStateDir(): string {
  return REAL_ENV.XDG_STATE_HOME
    ? `${REAL_ENV.XDG_STATE_HOME}/musicfs`
    : `${REAL_ENV.HOME ?? "/root"}/.local/state/musicfs`;
}
