/**
 * Search at 100k and 1M tracks (10k with --quick), against the goals of issue 14: rebuild
 * time, open to first answer, p50/p99 query latency, memory and file size. The baselines are
 * measured in the same run: a bare Deno process (memory) and minisearch holding the same
 * documents (the index musicfs used before search.db).
 *
 * The document sets (varietyTracks: accents, CJK, duplicates) are generated once and cached as
 * JSON lines under `.bench-cache/` (git-ignored) or $MUSICFS_BENCH_CACHE. Every figure that
 * needs a fresh process (start, memory) is taken in a child: `search_bench.ts <mode> ...`.
 */
import MiniSearch from "minisearch";
import process from "node:process";
import { type BenchRow, percentile } from "./common.ts";
import { SearchIndex } from "../src/search/mod.ts";
import { FIELDS, toDocument } from "../src/search/text.ts";
import type { TrackRecord } from "../src/library/types.ts";
import { syntheticQueries, varietyTracks } from "../src/search/testdata/synthetic.ts";

/** Bump when varietyTracks changes its output. */
const DOCS_VERSION = 1;
const SEED = 41;
const GENERATION = 7;
const QUERIES = 450;

/** Goals of issue 14; the memory goal is search's share of the daemon's RSS budget. */
const GOALS: Record<number, { readyMs: number; rssMb: number; p99Ms: number }> = {
  10_000: { readyMs: 1000, rssMb: 30, p99Ms: 10 },
  100_000: { readyMs: 1000, rssMb: 30, p99Ms: 10 },
  1_000_000: { readyMs: 2000, rssMb: 60, p99Ms: 10 },
};

const f0 = (n: number) => n.toFixed(0);
const f2 = (n: number) => n.toFixed(2);
const mb = (n: number) => (n / 1e6).toFixed(1);
const label = (n: number) => (n >= 1e6 ? `${n / 1e6}M` : `${n / 1e3}k`);

function cacheDir(): string {
  return Deno.env.get("MUSICFS_BENCH_CACHE") ??
    new URL("../.bench-cache", import.meta.url).pathname;
}

/** The document set of `n` tracks, generated once and then read from the cache. */
export async function documents(n: number): Promise<TrackRecord[]> {
  const path = `${cacheDir()}/search-docs-v${DOCS_VERSION}-${n}-${SEED}.jsonl`;
  try {
    const text = await Deno.readTextFile(path);
    return text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const tracks = varietyTracks(n, SEED);
  await Deno.mkdir(cacheDir(), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  for (let i = 0; i < tracks.length; i += 10_000) {
    const chunk = tracks.slice(i, i + 10_000).map((t) => JSON.stringify(t)).join("\n") + "\n";
    await f.write(enc.encode(chunk));
  }
  f.close();
  await Deno.rename(tmp, path);
  return tracks;
}

/** Longest time the event loop was blocked while `fn` ran, and how long `fn` took. */
async function timed<T>(
  fn: () => Promise<T> | T,
): Promise<{ value: T; ms: number; stall: number }> {
  let stall = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    stall = Math.max(stall, now - last);
    last = now;
  }, 1);
  await new Promise((r) => setTimeout(r, 5));
  last = performance.now();
  const start = performance.now();
  const value = await fn();
  const ms = performance.now() - start;
  await new Promise((r) => setTimeout(r, 2));
  clearInterval(timer);
  return { value, ms, stall };
}

async function child(args: string[], v8 = ""): Promise<Record<string, number>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      ...(v8 ? [`--v8-flags=${v8}`] : []),
      import.meta.filename!,
      ...args,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`bench child ${args[0]} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

/** The rows of one library size. */
async function rowsFor(n: number): Promise<BenchRow[]> {
  const L = label(n);
  const goal = GOALS[n];
  const rows: BenchRow[] = [];
  const gen = await timed(() => documents(n));
  const tracks = gen.value;
  console.error(`bench: search ${L}: ${tracks.length} documents ready in ${f0(gen.ms)} ms`);
  const dir = await Deno.makeTempDir({ prefix: "musicfs-search-bench-" });
  try {
    const path = `${dir}/search.db`;
    // Rebuild from records (what a damaged or stale index costs), then the first commit.
    const rebuild = await timed(async () => {
      const index = SearchIndex.create(path, { generation: GENERATION });
      await index.indexAll(tracks);
      return index;
    });
    const commit = await timed(() => rebuild.value.commit());
    rebuild.value.close();
    const bytes = commit.value.bytes;
    rows.push({
      name: `search: rebuild from records + first commit, ${L} tracks`,
      measured: `${f0(rebuild.ms)} + ${f0(commit.ms)} ms (max stall ${f0(rebuild.stall)} / ${
        f0(commit.stall)
      } ms), ${f0(n / ((rebuild.ms + commit.ms) / 1000))} tracks/s`,
      goal: ">= 6000 tracks/s (the first-scan goal)",
      ok: n / ((rebuild.ms + commit.ms) / 1000) >= 6000,
    });
    rows.push({
      name: `search: index file size, ${L} tracks`,
      measured: `${mb(bytes)} MB (${f0(bytes / n)} bytes/track)`,
    });

    // A fresh process: open, first answer, then latency and memory; against a bare process.
    const queriesFile = `${dir}/queries.json`;
    await Deno.writeTextFile(
      queriesFile,
      JSON.stringify(syntheticQueries(tracks, QUERIES + 100, 5)),
    );
    const bare = await child(["bare"], "--expose-gc");
    const s = await child(["serve", path, queriesFile], "--expose-gc");
    rows.push({
      name: `search: start to first answer, ${L} tracks`,
      measured: `${f0(s.readyMs)} ms (open ${f0(s.openMs)} ms, first query ${f2(s.firstMs)} ms)`,
      goal: `<= ${goal.readyMs} ms`,
      ok: s.readyMs <= goal.readyMs,
    });
    rows.push({
      name: `search: background full check of the file, ${L} tracks`,
      measured: `${f0(s.checkMs)} ms (off the event loop; max stall ${f0(s.checkStall)} ms)`,
    });
    rows.push({
      name: `search: query latency, ${QUERIES} queries, ${L} tracks`,
      measured: `p50 ${f2(s.p50)} ms, p99 ${f2(s.p99)} ms, max ${f2(s.max)} ms wall; CPU p50 ${
        f2(s.cpuP50)
      } ms, p99 ${f2(s.cpuP99)} ms (load average ${
        s.load.toFixed(1)
      } on ${navigator.hardwareConcurrency} cores)`,
      goal: `p99 <= ${goal.p99Ms} ms`,
      ok: s.p99 <= goal.p99Ms,
    });
    rows.push({
      name: `search: hostile queries (10 KB, long typos, many prefixes), ${L} tracks`,
      measured: `max ${f2(s.hostileMax)} ms`,
      goal: "<= 50 ms",
      ok: s.hostileMax <= 50,
    });
    const rss = s.rss - bare.rss;
    rows.push({
      name: `search: memory once serving, ${L} tracks`,
      measured: `RSS +${mb(rss)} MB over a bare process (${mb(s.rss)} MB; +${
        mb(s.rssReady - bare.rss)
      } MB at the first answer), live heap ${mb(s.heap)} MB`,
      baseline: `${mb(bare.rss)} MB RSS, heap ${mb(bare.heap)} MB (bare Deno process)`,
      goal: `<= ${goal.rssMb} MB (search's share of the daemon's RSS goal)`,
      ok: rss <= goal.rssMb * 1e6,
    });
    if (n <= 100_000) {
      // minisearch, as musicfs kept it before search.db: the whole index in the heap.
      const ms = await child(["minisearch", String(n)], "--expose-gc");
      rows.push({
        name: `search: minisearch heap for the same documents, ${L} tracks (before search.db)`,
        measured: `${mb(ms.heap)} MB heap, build ${f0(ms.buildMs)} ms`,
        baseline: `search.db: heap ${mb(s.heap)} MB, RSS +${mb(rss)} MB`,
        ratio: ms.heap / Math.max(1, rss),
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}

/** The bench rows. */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const sizes = quick ? [10_000] : [100_000, 1_000_000];
  const rows: BenchRow[] = [];
  for (const n of sizes) rows.push(...await rowsFor(n));
  return rows;
}

/** `serve <path> <queries.json>`: what a daemon start does with search.db, measured. */
async function serve(path: string, queriesFile: string): Promise<Record<string, number>> {
  const queries: string[] = JSON.parse(await Deno.readTextFile(queriesFile));
  const start = performance.now();
  const index = await SearchIndex.openWithRecovery(path, {
    generation: GENERATION,
    verify: true,
    rebuildFrom: () => {
      throw new Error("the bench index must open without a rebuild");
    },
  });
  const openMs = performance.now() - start;
  const t = performance.now();
  index.search(queries[0], 1000);
  const firstMs = performance.now() - t;
  const readyMs = performance.now() - start;
  const rssReady = Deno.memoryUsage().rss;
  // The full check runs in a worker meanwhile: the event loop must keep running.
  const check = await timed(() => index.checked);
  const checkMs = performance.now() - start;
  for (const q of queries.slice(QUERIES)) index.search(q, 1000);
  const lat: number[] = [];
  const cpu: number[] = [];
  for (const q of queries.slice(0, QUERIES)) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    index.search(q, 1000);
    lat.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  const hostile = [
    "la ".repeat(3400),
    Array.from({ length: 12 }, (_, i) => "qzx" + "abcdefghij".repeat(6) + i).join(" "),
    "a b c d e f g h i j k l",
    "th lo ma ka ro be sa mi ta ne",
    '/"\'"/'.repeat(2000),
  ];
  const hostileMax = Math.max(...hostile.map((q) => {
    const t0 = performance.now();
    index.search(q, 1000);
    return performance.now() - t0;
  }));
  await new Promise((r) => setTimeout(r, 50));
  (globalThis as { gc?: () => void }).gc?.();
  const mem = Deno.memoryUsage();
  const result = {
    openMs,
    firstMs,
    readyMs,
    checkMs,
    checkStall: check.stall,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: Math.max(...lat),
    cpuP50: percentile(cpu, 50),
    cpuP99: percentile(cpu, 99),
    load: Deno.loadavg()[0],
    hostileMax,
    rss: mem.rss,
    rssReady,
    heap: mem.heapUsed,
  };
  index.close();
  return result;
}

if (import.meta.main) {
  const [mode, a, b] = Deno.args;
  if (mode === "bare") {
    // The same modules loaded, nothing opened.
    await new Promise((r) => setTimeout(r, 50));
    (globalThis as { gc?: () => void }).gc?.();
    const mem = Deno.memoryUsage();
    console.log(JSON.stringify({ rss: mem.rss, heap: mem.heapUsed, ok: SearchIndex ? 1 : 0 }));
  } else if (mode === "serve") {
    console.log(JSON.stringify(await serve(a, b)));
  } else if (mode === "minisearch") {
    const tracks = await documents(Number(a));
    const gc = (globalThis as { gc?: () => void }).gc!;
    gc();
    const before = Deno.memoryUsage().heapUsed;
    const t = performance.now();
    const ms = new MiniSearch({
      fields: [...FIELDS],
      storeFields: [],
      tokenize: (s: string) => s.split(" "),
      processTerm: (term: string) => term || null,
    });
    for (const track of tracks) ms.add(toDocument(track));
    const buildMs = performance.now() - t;
    tracks.length = 0;
    gc();
    const heap = Deno.memoryUsage().heapUsed - before;
    if (ms.documentCount !== Number(a)) throw new Error("index incomplete");
    console.log(JSON.stringify({ heap, buildMs }));
  } else if (b !== undefined || mode) {
    throw new Error(`unknown mode ${mode}`);
  }
}
