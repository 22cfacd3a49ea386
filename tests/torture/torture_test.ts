/**
 * The fast slice of the torture suite (issue 7) under `deno task test`: a few crash rounds,
 * every corruption case once, the full state and cache dirs when root, a dead origin, bad input, the
 * recovery cases of issue 12 (db bit flips, fd exhaustion, SIGSTOP + unmount --force, /.search
 * under 4 threads, broken and tiny state dirs) and 5 s of load. `deno task torture` runs the
 * long version. Replay a failure with `MUSICFS_TORTURE_SEED=<seed printed>`.
 */
import { needsFuse } from "../support/helpers.ts";
import { runTorture } from "./suite.ts";

Deno.test(
  "torture: crashes, corruption, full disk, dead origin, bad input, hostile sources and load keep every invariant",
  {
    ...needsFuse,
  },
  async () => {
    const rounds = Number(Deno.env.get("MUSICFS_TORTURE_ROUNDS") ?? 3) || 3;
    const result = await runTorture({
      rounds,
      tracks: 150,
      broken: 8,
      matrixPasses: 1,
      cleanStopEvery: rounds,
      sample: 40,
      fullDisk: true,
      fullCacheTracks: 4,
      originTracks: 40,
      albumTracks: 500,
      loadMs: 5000,
      sourceTracks: 8,
      recovery: { dbTrials: 3, searchPasses: 2 },
    });
    console.error(result.table);
    if (result.stats.violations.length) {
      throw new Error(
        `${result.stats.violations.length} invariant violation(s) (seed ${result.seed}):\n` +
          result.stats.violations.join("\n\n"),
      );
    }
  },
);
