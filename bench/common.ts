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
export type BenchModule = {
  run(opts: { quick: boolean }): Promise<BenchRow[]>;
  /** Run only when named on the command line (long or disk-hungry benches). */
  explicitOnly?: boolean;
};

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

/** Bytes and MB/s of `dd if=<path> of=/dev/null bs=1M`, from dd's own byte count and time. */
export async function dd(path: string): Promise<{ bytes: number; mbps: number }> {
  const out = await new Deno.Command("dd", {
    args: [`if=${path}`, "of=/dev/null", "bs=1M"],
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`dd ${path} failed: ${text.trim()}`);
  // e.g. "536870912 bytes (537 MB, 512 MiB) copied, 0.0912 s, 5.9 GB/s"
  const m = text.match(/^(\d+) bytes .* copied, ([\d.e+-]+) s/m);
  if (!m) throw new Error(`unexpected dd output: ${text.trim()}`);
  const bytes = Number(m[1]);
  return { bytes, mbps: mbps(bytes, Number(m[2]) * 1000) };
}

/** Write dirty pages and drop the page cache (root only). */
export async function dropCaches(): Promise<void> {
  await new Deno.Command("sync").output();
  await Deno.writeTextFile("/proc/sys/vm/drop_caches", "3");
}

/** A row of MB/s figures: `measured` against `baseline`, with an optional ratio goal. */
export function mbpsRow(
  name: string,
  measured: number,
  baseline: number,
  baselineName: string,
  goal?: number,
): BenchRow {
  const ratio = measured / baseline;
  return {
    name,
    measured: `${measured.toFixed(0)} MB/s`,
    baseline: `${baseline.toFixed(0)} MB/s (${baselineName})`,
    ratio,
    goal: goal === undefined ? undefined : `>= ${goal}x`,
    ok: goal === undefined ? undefined : ratio >= goal,
  };
}
