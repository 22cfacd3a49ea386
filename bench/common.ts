/** Shared shapes and helpers of `deno task bench`. */

/** One printed bench line: a measured figure against a baseline measured in the same run. */
export interface BenchRow {
  /** What was measured, e.g. `sequential read, passthrough, cold`. */
  name: string;
  /** The measured figure with its unit, e.g. `1843 MB/s`. */
  measured: string;
  /** The same-run baseline it is compared with, e.g. `1870 MB/s (source file)`. */
  baseline?: string;
  /** measured / baseline, oriented so that higher is better. */
  ratio?: number;
  /** The goal, e.g. `>= 0.95x` or `p99 <= 10 ms`. */
  goal?: string;
  /** Whether the goal was met (undefined when there is no goal). */
  ok?: boolean;
}

/** A bench module: `bench/<name>_bench.ts` exports `run` returning its rows. */
export type BenchModule = { run(opts: { quick: boolean }): Promise<BenchRow[]> };

/** Megabytes per second of `bytes` moved in `ms` milliseconds. */
export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** The p-th percentile (0..100) of `values` (copied and sorted). */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
