/**
 * The generated libraries of `deno task bench scale`, made once and kept on disk: real tagged
 * audio files from the fixture generator (tests/fixtures), all seven formats, covers in about
 * half of the album folders. They live under `$XDG_CACHE_HOME/musicfs-bench` (default
 * `~/.cache/musicfs-bench`), or under `$MUSICFS_BENCH_CACHE` when set; never under a fixed /tmp
 * path. A library is written into a `.partial` folder and renamed into place with its
 * manifest last, so an interrupted generation is started over, never used half-made.
 *
 * ```sh
 * deno run -A bench/scale_library.ts 100000   # make (or find) the 100k library, print its path
 * ```
 *
 * @module
 */
import { makeLibrary } from "../tests/fixtures/mod.ts";

/** What a cached library holds and what generating it cost. */
export interface ScaleLibrary {
  /** The library root (the folder to mount). */
  root: string;
  /** Good tracks written. */
  tracks: number;
  /** Cover images written. */
  covers: number;
  /** Bytes of audio written. */
  bytes: number;
  /** How long the generation took, in ms (when it was made, not now). */
  generatedMs: number;
  /** When it was generated (ISO time). */
  generatedAt: string;
  /** Whether this call generated it (false: found in the cache). */
  fresh: boolean;
}

/** Bump when the generator's output changes, so stale caches are not measured. */
const VERSION = 1;
const SEED = 1;

/** The cache folder of the scale bench. */
export function benchCacheDir(): string {
  const own = Deno.env.get("MUSICFS_BENCH_CACHE");
  if (own) return own;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME");
  if (xdg) return `${xdg}/musicfs-bench`;
  if (home) return `${home}/.cache/musicfs-bench`;
  // No home at all: a git-ignored folder of the checkout.
  return new URL("../.bench-cache", import.meta.url).pathname;
}

const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);

/**
 * The library of `tracks` tracks, generated on the first call (minutes at 100k) and found in
 * the cache afterwards.
 */
export async function scaleLibrary(
  tracks: number,
  log: (msg: string) => void = (m) => console.error(m),
): Promise<ScaleLibrary> {
  const base = benchCacheDir();
  const dir = `${base}/library-${tracks}-seed${SEED}-v${VERSION}`;
  const manifestPath = `${dir}/manifest.json`;
  if (await exists(manifestPath)) {
    const m = JSON.parse(await Deno.readTextFile(manifestPath)) as Omit<ScaleLibrary, "fresh">;
    return { ...m, root: `${dir}/lib`, fresh: false };
  }
  await Deno.mkdir(base, { recursive: true, mode: 0o700 });
  const partial = `${dir}.partial`;
  await Deno.remove(partial, { recursive: true }).catch(() => {});
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  log(`bench scale: generating a ${tracks.toLocaleString("en")}-track library in ${dir}...`);
  const t0 = performance.now();
  const lib = await makeLibrary(`${partial}/lib`, { tracks, seed: SEED, covers: true });
  const generatedMs = Math.round(performance.now() - t0);
  const manifest = {
    root: "",
    tracks: lib.good.length,
    covers: lib.covers.length,
    bytes: lib.good.reduce((s, t) => s + t.size, 0),
    generatedMs,
    generatedAt: new Date().toISOString(),
  };
  await Deno.writeTextFile(`${partial}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
  await Deno.rename(partial, dir);
  log(`bench scale: generated in ${(generatedMs / 1000).toFixed(0)} s`);
  return { ...manifest, root: `${dir}/lib`, fresh: true };
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 100_000);
  if (!Number.isInteger(n) || n <= 0) {
    console.error("usage: scale_library.ts <tracks>");
    Deno.exit(2);
  }
  const lib = await scaleLibrary(n);
  console.log(JSON.stringify(lib));
}
