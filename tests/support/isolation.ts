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
  const root = Deno.makeTempDirSync({ prefix: "musicfs-test-env-" });
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
    try {
      Deno.removeSync(root, { recursive: true });
    } catch { /* a leftover temp dir is no failure */ }
  });
  return root;
})();

/** The real default state dir (what `musicfs` would use outside the suite). */
export function realDefaultStateDir(): string {
  return REAL_ENV.XDG_STATE_HOME
    ? `${REAL_ENV.XDG_STATE_HOME}/musicfs`
    : `${REAL_ENV.HOME ?? "/root"}/.local/state/musicfs`;
}
