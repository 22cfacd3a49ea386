/**
 * `deno task torture`: the long torture run (issue 7). Environment:
 * - `MUSICFS_TORTURE_SEED`: replay a seed (printed at the start and in the table);
 * - `MUSICFS_TORTURE_ROUNDS`: crash rounds, default 20;
 * - `MUSICFS_TORTURE_TRACKS`: good tracks in the library, default 2000;
 * - `MUSICFS_TORTURE_PASSES`: passes over the corruption matrix, default 2;
 * - `MUSICFS_TORTURE_ALBUM`: tracks in the one huge album of the bad-input case, default 3000;
 * - `MUSICFS_TORTURE_LOAD_MS`: duration of the load case, default 30000;
 * - `MUSICFS_TORTURE_SOURCE_TRACKS`: tracks of each hostile/hung source case, default 20;
 * - `MUSICFS_TORTURE_RESCAN_GONE=0`: skip the rescan while a library root is gone (known bug);
 * - `MUSICFS_TORTURE_DB_TRIALS`: trials of 16 bit flips in library.db, default 40;
 * - `MUSICFS_TORTURE_SEARCH_PASSES`: passes of 4 threads over 200 /.search queries, default 20;
 * - `MUSICFS_TORTURE_VERBOSE=1`: progress lines.
 *
 * Prints the summary table; exits 1 when any invariant was violated.
 *
 * @module
 */
import { runTorture } from "./suite.ts";

function envInt(name: string, fallback: number): number {
  const v = Deno.env.get(name);
  return v && /^\d+$/.test(v) ? Number(v) : fallback;
}

if (import.meta.main) {
  try {
    await Deno.stat("/dev/fuse");
  } catch {
    console.error("torture: /dev/fuse is absent; nothing to run");
    Deno.exit(2);
  }
  const result = await runTorture({
    rounds: envInt("MUSICFS_TORTURE_ROUNDS", 20),
    tracks: envInt("MUSICFS_TORTURE_TRACKS", 2000),
    broken: 40,
    matrixPasses: envInt("MUSICFS_TORTURE_PASSES", 2),
    cleanStopEvery: 4,
    sample: 200,
    fullChecks: true,
    fullDisk: true,
    fullCacheTracks: 8,
    originTracks: 200,
    rescanWhileGone: Deno.env.get("MUSICFS_TORTURE_RESCAN_GONE") !== "0",
    albumTracks: envInt("MUSICFS_TORTURE_ALBUM", 3000),
    loadMs: envInt("MUSICFS_TORTURE_LOAD_MS", 30_000),
    sourceTracks: envInt("MUSICFS_TORTURE_SOURCE_TRACKS", 20),
    recovery: {
      dbTrials: envInt("MUSICFS_TORTURE_DB_TRIALS", 40),
      searchPasses: envInt("MUSICFS_TORTURE_SEARCH_PASSES", 20),
    },
    verbose: Deno.env.get("MUSICFS_TORTURE_VERBOSE") === "1",
  });
  console.log(result.table);
  if (result.stats.violations.length) {
    console.log(`\n${result.stats.violations.length} invariant violation(s):`);
    for (const v of result.stats.violations) console.log(`- ${v.split("\n")[0]}`);
  }
  Deno.exit(result.stats.violations.length ? 1 : 0);
}
