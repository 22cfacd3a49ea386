/**
 * `deno task bench scale`: the daemon at 100k and 1M tracks (issue 14's goal table), over
 * libraries generated once and cached on disk (scale_library.ts). Each size, in one run:
 *
 * - first scan: empty state dir, caches dropped (and again on a warm page cache); spawn -> the scanner's "Scanned" line (the
 *   tree is complete then: every batch reaches the tree before the next one is committed),
 *   as files/s, with where the time went (the scanner's and the daemon's debug stage lines) and
 *   the CPU spent per file by each kind of thread (what bounds the rate on 2 cores, and barely
 *   moved by the other load of a shared machine, unlike the wall-clock figures);
 * - second start of the same state dir: spawn -> "serving" line, spawn -> search ready
 *   (median of the rounds), against a bare `deno run` of the same flags;
 * - search p50/p99 after start: GET /search over the control socket (one kept-alive client),
 *   a few hundred queries of words, prefixes, typos and folded diacritics;
 * - daemon RSS settled: search ready, revalidating scan done, then 5 s of idle;
 * - `find /Artists -type f`, cold (caches dropped) and warm, against `find` over the source.
 *
 * Sizes: 100k and 1M; `--quick` runs 100k only, `--sizes=10k,100k` picks others;
 * `--first-scan-only` stops after the first scans (cold and warm), `--no-warm` skips the warm one. Scale is
 * left out of a bare `deno task bench` (it needs minutes and, at 1M, ~7 GB of cache):
 * name it. Everything that touches the mount runs in child processes, as in daemon_bench.ts.
 */
import type { BenchRow } from "./common.ts";
import { dropCaches, percentile } from "./common.ts";
import {
  type Daemon,
  find,
  scanDone,
  searchReady,
  spawnDaemon,
  stopDaemon,
  tearDown,
  untilServing,
  untilStatus,
} from "./daemon_bench.ts";
import { scaleLibrary } from "./scale_library.ts";
import { controlSocketPath } from "../src/daemon/mod.ts";
import { ParserPool } from "../src/library/pool.ts";
import { walkTree } from "../src/library/walk.ts";

/** Only when named: `deno task bench scale`. */
export const explicitOnly = true;

const CONFIG = new URL("../deno.json", import.meta.url).pathname;

interface Goals {
  serving: number;
  searchReady: number;
  rss: number;
  filesPerS: number;
  searchP99: number;
}

/** Issue 14's table. */
function goalsFor(tracks: number): Goals {
  const big = tracks > 100_000;
  return {
    serving: big ? 1000 : 300,
    searchReady: big ? 2000 : 1000,
    rss: big ? 300 : 150,
    filesPerS: 6000,
    searchP99: 10,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (x: number) => `${x.toFixed(0)} ms`;
const secs = (x: number) => `${(x / 1000).toFixed(2)} s`;
const mb = (x: number) => `${x.toFixed(0)} MB`;
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function rss(pid: number): Promise<{ rss: number; hwm: number }> {
  const text = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (k: string) => Number(text.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
  return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
}

/** The machine's load averages (1, 5 min): the machine may be shared. */
function loadNow(): string {
  const [one, five] = Deno.loadavg();
  return `load ${one.toFixed(1)}/${five.toFixed(1)}`;
}

/** CPU seconds of the process's threads so far, by kind (from /proc/<pid>/task/<tid>/stat). */
function threadCpu(pid: number): Map<string, number> {
  const kinds: [RegExp, string][] = [
    [/^worker-/, "workers (parse, walk, FUSE reader, watch)"],
    [/^V8 /, "V8 helper threads (GC, compiler)"],
    [/^notify-rs/, "inotify watch setup"],
    [/^tokio-/, "I/O thread pool"],
  ];
  const out = new Map<string, number>();
  const hz = 100; // USER_HZ
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
    } catch {
      continue; // exited meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const s = (Number(f[11]) + Number(f[12])) / hz;
    const kind = t.name === String(pid)
      ? "main thread"
      : kinds.find(([re]) => re.test(comm))?.[1] ?? "other threads";
    out.set(kind, (out.get(kind) ?? 0) + s);
  }
  return out;
}

/**
 * The scan's CPU time per file by thread kind: unlike wall time, barely moved by other load on
 * a shared machine, and what bounds the rate on 2 cores.
 */
function cpuRows(cpu: Map<string, number>, files: number): BenchRow[] {
  const us = (s: number) => `${Math.round((s * 1e6) / files)} µs/file`;
  let total = 0;
  const rows: BenchRow[] = [];
  for (const [kind, s] of [...cpu].sort((a, b) => b[1] - a[1])) {
    total += s;
    if (s >= 0.05) {
      rows.push({ name: `    cpu: ${kind}`, measured: `${us(s)} (${s.toFixed(1)} s)` });
    }
  }
  const cores = navigator.hardwareConcurrency;
  rows.unshift({
    name: `  cpu, whole process, spawn -> complete tree`,
    measured: `${us(total)} (${cores} cores: at most ${fmt(files / (total / cores))} files/s)`,
  });
  return rows;
}

/** ms since spawn when a stderr line matching `re` arrived (waits up to `timeoutMs`). */
async function untilLine(d: Daemon, re: RegExp, timeoutMs = 3_600_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let exited = false;
  d.exited.then(() => (exited = true));
  let seen = 0;
  while (performance.now() < deadline) {
    for (; seen < d.lines.length; seen++) {
      if (re.test(d.lines[seen].text)) return d.lines[seen].at - d.t0;
    }
    if (exited) {
      const tail = d.lines.slice(-8).map((l) => l.text).join("\n");
      throw new Error(`daemon exited while waiting for ${re}:\n${tail}`);
    }
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${re}`);
}

/** The named numbers of the first log line matching `re`. */
function numbersOf(d: Daemon, re: RegExp): Record<string, number> | undefined {
  for (const l of d.lines) {
    const m = l.text.match(re);
    if (m?.groups) {
      return Object.fromEntries(Object.entries(m.groups).map(([k, v]) => [k, Number(v)]));
    }
  }
  return undefined;
}

/** The first scan's stage figures from the daemon's debug lines (see scanner.ts, daemon.ts). */
function scanStages(d: Daemon): BenchRow[] {
  const s = numbersOf(
    d,
    /Scan stages of .*: walk (?<walk>\d+) ms \((?<batches>\d+) batches\), parse (?<parse>\d+) ms over (?<workers>\d+) workers \((?:idle (?<idle>\d+) ms; )?tail after the walk (?<tail>\d+) ms\), this thread: handling (?<handle>\d+) ms, SQLite (?<sqlite>\d+) ms in (?<commits>\d+) commits, change listener (?<listener>\d+) ms/,
  );
  const l = numbersOf(
    d,
    /Scan change listener: tree (?<tree>\d+) ms, kernel invalidations (?<inv>\d+) ms, search (?<search>\d+) ms/,
  );
  if (!s) return [{ name: "  stages", measured: "n/a (no stage line in the debug log)" }];
  const rows: BenchRow[] = [
    { name: "  stage: walk (worker, until its last batch)", measured: ms(s.walk) },
    {
      name: `  stage: parse (workers' reading time / ${s.workers} workers)`,
      measured: `${ms(s.parse / s.workers)} (${ms(s.parse)} summed)`,
    },
    {
      name: "  stage: parse workers idle, waiting for work (summed)",
      measured: Number.isNaN(s.idle) ? "n/a" : ms(s.idle),
    },
    { name: "  stage: parses left after the walk", measured: ms(s.tail) },
    {
      name: "  stage: main thread, walk batches + parse answers",
      measured: ms(s.handle),
    },
    { name: `  stage: main thread, SQLite writes (${s.commits} commits)`, measured: ms(s.sqlite) },
    { name: "  stage: main thread, change listener", measured: ms(s.listener) },
  ];
  if (l) {
    rows.push({ name: "    of which tree updates", measured: ms(l.tree) });
    rows.push({ name: "    of which kernel invalidations", measured: ms(l.inv) });
    rows.push({ name: "    of which search indexing", measured: ms(l.search) });
  }
  return rows;
}

/** Queries like a user's: words, prefixes, typos, folded diacritics, artist names. */
const QUERIES = [
  "love",
  "night rain",
  "silver fox",
  "midnight",
  "midn",
  "mountain",
  "moun",
  "electric parade",
  "ocean",
  "summer",
  "wintr",
  "thundr",
  "lantern",
  "sigur ros",
  "bjork",
  "motorhead",
  "cafe del mar",
  "ca plane",
  "anna berg",
  "felix",
  "rosa silva",
  "dream road",
  "golden",
  "harbour",
  "remember tonight",
  "forever",
  "the velvet",
  "crimson tide",
  "stone",
  "glas",
];

async function searchLatencies(d: Daemon, rounds: number): Promise<number[]> {
  const client = Deno.createHttpClient({
    proxy: { transport: "unix", path: controlSocketPath(d.stateDir) },
  });
  const times: number[] = [];
  try {
    const ask = async (q: string) => {
      const t0 = performance.now();
      const res = await fetch(`http://musicfs/search?q=${encodeURIComponent(q)}&limit=20`, {
        client,
      });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`GET /search?q=${q}: HTTP ${res.status}`);
      return performance.now() - t0;
    };
    for (const q of QUERIES) await ask(q); // warm-up
    for (let r = 0; r < rounds; r++) for (const q of QUERIES) times.push(await ask(q));
  } finally {
    client.close();
  }
  return times;
}

/**
 * The parser pool alone (the daemon's, same worker count) over up to `max` files of the library,
 * page cache warm: the same-run baseline of the daemon's first scan.
 */
async function poolAlone(root: string, max: number): Promise<{ files: number; rate: number }> {
  const paths: string[] = [];
  walkTree(root, "", (b) => {
    for (const f of b.files) if (paths.length < max) paths.push(`${root}/${f.relPath}`);
  });
  const pool = new ParserPool();
  try {
    for (const p of paths.slice(0, 200)) await pool.parse(p); // start the workers
    const t0 = performance.now();
    await Promise.all(paths.map((p) => pool.parse(p)));
    return { files: paths.length, rate: paths.length / ((performance.now() - t0) / 1000) };
  } finally {
    pool.close();
  }
}

/** ms from spawn to the first stderr line of a trivial script run like the daemon. */
async function bareDenoStartup(script: string): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `--config=${CONFIG}`, script],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error("bare deno run failed");
  return performance.now() - t0;
}

function parseSizes(): number[] | undefined {
  const arg = Deno.args.find((a) => a.startsWith("--sizes="));
  if (!arg) return undefined;
  return arg.slice("--sizes=".length).split(",").map((s) => {
    const m = s.trim().toLowerCase().match(/^(\d+)(k|m)?$/);
    if (!m) throw new Error(`--sizes: cannot read ${s}`);
    return Number(m[1]) * (m[2] === "m" ? 1e6 : m[2] === "k" ? 1e3 : 1);
  });
}

async function measure(tracks: number): Promise<BenchRow[]> {
  const goals = goalsFor(tracks);
  const at = tracks >= 1e6 ? `${tracks / 1e6}M` : `${tracks / 1000}k`;
  const rows: BenchRow[] = [];
  const lib = await scaleLibrary(tracks);
  rows.push({
    name: `[${at}] library (generated once, cached)`,
    measured: `${fmt(lib.tracks)} tracks, ${fmt(lib.covers)} covers, ${mb(lib.bytes / 1e6)}`,
    baseline: `generated in ${secs(lib.generatedMs)}${lib.fresh ? " (this run)" : ""}`,
  });
  const dir = await Deno.makeTempDir({ prefix: "musicfs-scale-bench-" });
  const mnt = `${dir}/mnt`;
  const state = `${dir}/state`;
  const cache = `${dir}/cache`;
  let current: Daemon | undefined;
  const start = () => (current = spawnDaemon(lib.root, mnt, state, cache));
  const stop = async () => {
    if (current) await stopDaemon(current);
    current = undefined;
  };
  try {
    // 1. First scan: empty state dir, caches dropped.
    await dropCaches();
    {
      const d = start();
      const serving = await untilServing(d);
      const scanned = await untilLine(d, /scanner: Scanned /);
      const cpu = threadCpu(d.child.pid);
      const mem = await rss(d.child.pid);
      // The stage lines follow the "Scanned" line.
      await untilLine(d, /Scan change listener:/, 60_000).catch(() => {});
      await stop();
      const rate = lib.tracks / (scanned / 1000);
      rows.push({
        name: `[${at}] first scan, caches dropped, spawn -> complete tree`,
        measured: `${fmt(rate)} files/s (${secs(scanned)}; serving after ${
          ms(serving)
        }; ${loadNow()})`,
        goal: `>= ${fmt(goals.filesPerS)} files/s`,
        ok: rate >= goals.filesPerS,
      });
      rows.push(...scanStages(d), ...cpuRows(cpu, lib.tracks));
      rows.push({
        name: `[${at}] daemon RSS just after the first scan`,
        measured: `${mb(mem.rss)} (peak ${mb(mem.hwm)})`,
      });
    }

    // 1b. The same first scan on a warm page cache (a fresh state dir): what the daemon does
    // once the disk is out of the picture, comparable with the parser bench (library_bench.ts).
    if (!Deno.args.includes("--no-warm")) {
      const alone = await poolAlone(lib.root, 30_000);
      rows.push({
        name: `[${at}] parser pool alone, warm page cache (${fmt(alone.files)} files)`,
        measured: `${fmt(alone.rate)} files/s`,
      });
      const d = spawnDaemon(lib.root, mnt, `${dir}/state-warm`, `${dir}/cache-warm`);
      current = d;
      await untilServing(d);
      const scanned = await untilLine(d, /scanner: Scanned /);
      const cpu = threadCpu(d.child.pid);
      await untilLine(d, /Scan change listener:/, 60_000).catch(() => {});
      await stop();
      const rate = lib.tracks / (scanned / 1000);
      rows.push({
        name: `[${at}] first scan, warm page cache, spawn -> complete tree`,
        measured: `${fmt(rate)} files/s (${secs(scanned)}; ${loadNow()})`,
        baseline: `${fmt(alone.rate)} files/s (parser pool alone)`,
        ratio: rate / alone.rate,
        goal: `>= ${fmt(goals.filesPerS)} files/s`,
        ok: rate >= goals.filesPerS,
      });
      rows.push(...scanStages(d), ...cpuRows(cpu, lib.tracks));
      await Deno.remove(`${dir}/state-warm`, { recursive: true }).catch(() => {});
      await Deno.remove(`${dir}/cache-warm`, { recursive: true }).catch(() => {});
    }

    if (Deno.args.includes("--first-scan-only")) return rows;

    // 2. Second starts of the indexed library.
    const trivial = `${dir}/trivial.ts`;
    await Deno.writeTextFile(trivial, 'console.error("ready");\n');
    const bare: number[] = [];
    for (let i = 0; i < 3; i++) bare.push(await bareDenoStartup(trivial));
    bare.shift();
    const rounds = tracks >= 1e6 ? 2 : 3;
    const serving: number[] = [];
    const ready: number[] = [];
    let latencies: number[] = [];
    let settled = { rss: NaN, hwm: NaN };
    for (let r = 0; r < rounds; r++) {
      const d = start();
      serving.push(await untilServing(d));
      ready.push((await untilStatus(d, "search ready", searchReady)).ms);
      if (r === rounds - 1) {
        await untilStatus(d, "the revalidating scan", scanDone);
        latencies = await searchLatencies(d, 5);
        await sleep(5000);
        settled = await rss(d.child.pid);
      }
      await stop();
    }
    const servingMs = median(serving);
    const bareMs = median(bare);
    rows.push({
      name: `[${at}] second start -> serving (median of ${rounds})`,
      measured: ms(servingMs),
      baseline: `${ms(bareMs)} (bare deno run)`,
      goal: `<= ${ms(goals.serving)}`,
      ok: servingMs <= goals.serving,
    });
    rows.push({
      name: `[${at}] second start -> search answers (median of ${rounds})`,
      measured: ms(median(ready)),
      goal: `<= ${ms(goals.searchReady)}`,
      ok: median(ready) <= goals.searchReady,
    });
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    rows.push({
      name: `[${at}] search p50 / p99 (GET /search, ${latencies.length} queries)`,
      measured: `${p50.toFixed(1)} / ${p99.toFixed(1)} ms`,
      goal: `p99 <= ${goals.searchP99} ms`,
      ok: p99 <= goals.searchP99,
    });
    rows.push({
      name: `[${at}] daemon RSS settled (idle after start, scan and searches)`,
      measured: `${mb(settled.rss)} (peak ${mb(settled.hwm)})`,
      goal: `<= ${mb(goals.rss)}`,
      ok: settled.rss <= goals.rss,
    });

    // 3. find over /Artists against find over the source, cold then warm.
    const src = lib.root;
    await find(src);
    const srcWarm = Math.min((await find(src)).ms, (await find(src)).ms);
    await dropCaches();
    const srcCold = await find(src);
    {
      const d = start();
      await untilServing(d);
      await untilStatus(d, "idle", (s) => searchReady(s) && scanDone(s));
      await dropCaches();
      const cold = await find(`${mnt}/Artists`);
      const warm = await find(`${mnt}/Artists`);
      const mem = await rss(d.child.pid);
      await stop();
      const files = (n: number) => `${fmt(n)} files`;
      rows.push({
        name: `[${at}] find /Artists -type f, cold`,
        measured: `${secs(cold.ms)} (${files(cold.files)})`,
        baseline: `${secs(srcCold.ms)} (source, ${files(srcCold.files)})`,
        ratio: srcCold.ms / cold.ms,
      });
      rows.push({
        name: `[${at}] find /Artists -type f, warm`,
        measured: `${secs(warm.ms)}`,
        baseline: `${secs(srcWarm)} (source)`,
        ratio: srcWarm / warm.ms,
      });
      rows.push({
        name: `[${at}] daemon RSS after the finds`,
        measured: `${mb(mem.rss)} (peak ${mb(mem.hwm)})`,
      });
    }
    return rows;
  } finally {
    await tearDown(stop, mnt, dir);
  }
}

/** See the module comment. */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  if (Deno.uid() !== 0) {
    return [{ name: "scale: skipped", measured: "needs root (FUSE mount, drop_caches)" }];
  }
  const sizes = parseSizes() ?? (quick ? [100_000] : [100_000, 1_000_000]);
  const rows: BenchRow[] = [];
  for (const n of sizes) {
    try {
      rows.push(...(await measure(n)));
    } catch (e) {
      rows.push({ name: `[${n}] failed`, measured: e instanceof Error ? e.message : String(e) });
    }
  }
  return rows;
}
