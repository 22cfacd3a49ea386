/**
 * One torture run, shared by `deno task torture` (long) and torture_test.ts (fast slice):
 * a baseline, crash rounds, the corruption matrix, a full state and cache dir (root only), each
 * followed by the invariants.
 *
 * @module
 */
import { summaryTable, Torture, tortureSeed, type TortureStats } from "./harness.ts";
import { badInput, deadOrigin, load } from "./extras.ts";
import { sourceFaults } from "./sources.ts";
import { recovery, type RecoveryOptions } from "./recovery.ts";
import {
  corruptionCase,
  CORRUPTIONS,
  crashRound,
  fullCache,
  fullDisk,
  warmCache,
} from "./faults.ts";

/** Options of {@link runTorture}. */
export interface SuiteOptions {
  /** Crash rounds. */
  rounds: number;
  /** Good tracks in the library. */
  tracks: number;
  /** Broken files mixed in. */
  broken: number;
  /** Times the whole corruption matrix runs (its order shuffled after the first). */
  matrixPasses: number;
  /** Clean stop and offline invariants every this many crash rounds. */
  cleanStopEvery: number;
  /** Mounted files hashed per check (all in `full` checks). */
  sample: number;
  /** Hash every mounted file after every restart. */
  fullChecks?: boolean;
  /** Run the full-disk cases (state dir, cache dir) when root. */
  fullDisk: boolean;
  /** Tracks (2.5 MB each) of the full cache dir case; default 4 (a 4 MiB tmpfs holds 3 chunks). */
  fullCacheTracks?: number;
  /** Tracks of the dead-origin library (0: skip). */
  originTracks: number;
  /** Dead origin: also POST /rescan while the root is gone (the library must survive it). */
  rescanWhileGone?: boolean;
  /** Tracks in the one huge album of the bad-input case (0: skip the case). */
  albumTracks: number;
  /** Milliseconds of load (0: skip). */
  loadMs: number;
  /** Tracks of each hostile/hung source case's library (0: skip those cases). */
  sourceTracks?: number;
  /** The recovery cases of issue 12 (db bit flips, fd exhaustion, unmount --force...). */
  recovery?: RecoveryOptions;
  verbose?: boolean;
  seed?: number;
}

/** What {@link runTorture} did. */
export interface SuiteResult {
  seed: number;
  stats: TortureStats;
  elapsedMs: number;
  table: string;
}

/** Run it; never leaves a daemon or a mount behind. */
export async function runTorture(o: SuiteOptions): Promise<SuiteResult> {
  const seed = o.seed ?? tortureSeed();
  console.error(`torture: seed ${seed} (replay with MUSICFS_TORTURE_SEED=${seed})`);
  const started = Date.now();
  const t = await Torture.create({
    seed,
    tracks: o.tracks,
    broken: o.broken,
    sample: o.sample,
    verbose: o.verbose,
  });
  try {
    // Baseline: a first scan, every file hashed, the cache warmed, a clean stop.
    t.step = "baseline";
    await t.start();
    await t.checkOnline({ full: true, scanTimeoutMs: 600_000 });
    await warmCache(t);
    await t.stopClean();
    await t.checkOffline();

    // Crash rounds.
    for (let r = 1; r <= o.rounds; r++) {
      await crashRound(t, r, { full: o.fullChecks });
      if (r % o.cleanStopEvery === 0 || r === o.rounds) {
        t.step = `clean stop after crash round ${r}`;
        await t.stopClean();
        await t.checkOffline();
        // The next round starts from a clean state; warm the cache again now and then.
        if (t.rng.chance(0.5)) {
          await t.start();
          await warmCache(t);
          await t.stopClean();
        }
      }
      if (t.stats.violations.length > 20) break;
    }

    // The corruption matrix.
    for (let pass = 0; pass < o.matrixPasses; pass++) {
      const cases = pass === 0 ? CORRUPTIONS : t.rng.sample(CORRUPTIONS, CORRUPTIONS.length);
      for (const c of cases) {
        await corruptionCase(t, c);
        if (t.stats.violations.length > 20) break;
      }
    }

    // A full state dir, a full cache dir.
    if (o.fullDisk && Deno.uid() === 0) {
      await fullDisk(t);
      await fullCache(t, { tracks: o.fullCacheTracks ?? 4 });
    }

    // A library root that disappears mid-read, bad input, load.
    if (o.originTracks) {
      await deadOrigin(t, { tracks: o.originTracks, rescanWhileGone: o.rescanWhileGone });
    }
    if (o.albumTracks) await badInput(t, { albumTracks: o.albumTracks });
    if (o.sourceTracks) await sourceFaults(t, { tracks: o.sourceTracks });
    if (o.recovery) await recovery(t, o.recovery);
    if (o.loadMs) {
      await load(t, { ms: o.loadMs });
      await t.stopClean();
      await t.checkOffline();
    }
  } catch (e) {
    t.violation(`the run stopped: ${(e as Error).stack ?? e}`);
  } finally {
    await t.cleanup();
  }
  const elapsedMs = Date.now() - started;
  return { seed, stats: t.stats, elapsedMs, table: summaryTable(t.stats, seed, elapsedMs) };
}
