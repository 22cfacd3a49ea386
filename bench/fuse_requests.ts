/**
 * FUSE cost per request, against same-run baselines: the source tree itself, and the reference
 * FUSE servers in /work/shared/peers (libfuse's passthrough_hp and go-fuse's loopback, both
 * mirroring the source tree; see their README). Where the peers are absent only the source
 * baselines are printed.
 *
 * Rows (musicfs is the daemon, `main.ts mount`, over a generated library of 20k tracks; 2k with
 * --quick; BENCH_FUSE_TRACKS overrides):
 * - getattr round trip: `statloop getattr` (statx with AT_STATX_FORCE_SYNC on an open fd: one
 *   GETATTR per call), mean and p99;
 * - open + close: `statloop openclose`;
 * - `find -type f` over /Artists (each track once) against the whole source tree, cold
 *   (drop_caches first, for every side) and warm (the next run);
 * - player scan: open, read 64 KiB and close every file found (`xargs head -c 65536`), caches
 *   dropped first, then warm (the best of two more runs).
 *
 * The machine is shared: the latency rows keep the best of three rounds on every side, and the
 * rounds go round the sides (each round measures every side once), so that a burst of load from
 * elsewhere falls on all sides alike rather than on whichever side was being measured.
 *
 * Ratios: per-request rows are libfuse / musicfs (goal >= 0.8, i.e. musicfs at most 1.25x
 * libfuse's time); `find` rows are source / musicfs (goals: warm >= 0.67, cold >= 0.33).
 */
import { type BenchRow, dropCaches } from "./common.ts";
import {
  find,
  scanDone,
  searchReady,
  spawnDaemon,
  stopDaemon,
  untilServing,
  untilStatus,
} from "./daemon_bench.ts";
import { makeLibrary } from "../tests/fixtures/mod.ts";
import { findFuseMount } from "../src/fuse/mod.ts";

const PEERS_DIR = Deno.env.get("MUSICFS_PEERS") ?? "/work/shared/peers";

interface Latency {
  mean: number;
  p99: number;
}

/** `statloop MODE PATH N`: mean and p99 in µs. */
async function statloop(bin: string, mode: string, path: string, n: number): Promise<Latency> {
  const out = await new Deno.Command(bin, {
    args: [mode, path, String(n)],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`statloop ${mode} ${path}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const f = text.split(/\s+/);
  return { mean: Number(f[2]), p99: Number(f[5]) };
}

/** Open, read 64 KiB and close each file listed (NUL-separated) in `list`: ms. */
async function playerScan(list: string): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command("sh", {
    args: ["-c", 'xargs -0 -a "$1" head -q -c 65536 > /dev/null', "sh", list],
    stderr: "piped",
  }).output();
  const ms = performance.now() - t0;
  if (!out.success) {
    throw new Error(`player scan: ${new TextDecoder().decode(out.stderr).slice(0, 300)}`);
  }
  return ms;
}

/** Every regular file under `dir`, NUL-separated, into `list`; returns the count. */
async function listFiles(dir: string, list: string): Promise<number> {
  const out = await new Deno.Command("find", {
    args: [dir, "-type", "f", "-print0"],
    stdout: "piped",
  }).output();
  await Deno.writeFile(list, out.stdout);
  return out.stdout.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
}

/** A peer FUSE server mirroring a directory. */
interface Peer {
  name: string;
  mnt: string;
  stop(): Promise<void>;
}

async function waitMounted(mnt: string, child: Deno.ChildProcess, what: string): Promise<void> {
  let exited = false;
  child.status.then(() => (exited = true));
  for (let i = 0; i < 500; i++) {
    if (findFuseMount(mnt)) return;
    if (exited) throw new Error(`${what} exited before mounting`);
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what} did not mount in 10 s`);
}

async function startPeer(name: string, cmd: string, mnt: string): Promise<Peer> {
  await Deno.mkdir(mnt, { recursive: true });
  // passthrough_hp holds an O_PATH fd per inode the kernel knows.
  const child = new Deno.Command("sh", {
    args: ["-c", `ulimit -n 1048576; exec ${cmd}`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitMounted(mnt, child, name);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    throw e;
  }
  return {
    name,
    mnt,
    stop: async () => {
      await new Deno.Command("umount", { args: ["-l", mnt] }).output();
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(t);
    },
  };
}

interface Side {
  name: string;
  /** Directory `find` and the player scan walk. */
  dir: string;
  /** The file the per-request loops use. */
  file: string;
}

/** What walking the whole tree measured on one side. */
interface Tree {
  findCold: number;
  findWarm: number;
  files: number;
  scan: number;
  scanWarm: number;
}

interface Figures {
  getattr: Latency;
  openclose: Latency;
  /** Undefined when the side could not serve the whole tree (then `treeError` says why). */
  tree?: Tree;
  treeError?: string;
}

const ROUNDS = 3;

/** A round's figures, kept when its mean is the lowest so far (a round may be interrupted). */
function better(best: Latency | undefined, l: Latency): Latency {
  return !best || l.mean < best.mean ? l : best;
}

/** getattr and open + close of every side, best of {@link ROUNDS} rounds that go round the sides. */
async function latencies(
  sides: Side[],
  statloopBin: string,
  n: number,
): Promise<Map<string, { getattr: Latency; openclose: Latency }>> {
  const best = new Map<string, { getattr?: Latency; openclose?: Latency }>();
  for (let i = 0; i < ROUNDS; i++) {
    for (const side of sides) {
      const b = best.get(side.name) ?? {};
      b.getattr = better(b.getattr, await statloop(statloopBin, "getattr", side.file, n));
      b.openclose = better(b.openclose, await statloop(statloopBin, "openclose", side.file, n));
      best.set(side.name, b);
    }
  }
  return new Map([...best].map(([k, v]) => [k, { getattr: v.getattr!, openclose: v.openclose! }]));
}

async function measure(
  side: Side,
  lat: { getattr: Latency; openclose: Latency },
  tmp: string,
  expectFiles?: number,
): Promise<Figures> {
  const { getattr, openclose } = lat;
  try {
    return { getattr, openclose, tree: await walk(side, tmp, expectFiles) };
  } catch (e) {
    // e.g. passthrough_hp out of fds: it holds one per inode, and the hard limit may be low.
    return { getattr, openclose, treeError: e instanceof Error ? e.message : String(e) };
  }
}

async function walk(side: Side, tmp: string, expectFiles?: number): Promise<Tree> {
  await dropCaches();
  const cold = await find(side.dir);
  const warm = Math.min((await find(side.dir)).ms, (await find(side.dir)).ms);
  const list = `${tmp}/list-${side.name.replace(/\W+/g, "_")}`;
  const files = await listFiles(side.dir, list);
  if (files !== cold.files || (expectFiles !== undefined && files !== expectFiles)) {
    throw new Error(
      `find saw ${cold.files} files, then ${files}` +
        (expectFiles === undefined ? "" : ` (source ${expectFiles})`),
    );
  }
  await dropCaches();
  const scan = await playerScan(list);
  const scanWarm = Math.min(await playerScan(list), await playerScan(list));
  return { findCold: cold.ms, findWarm: warm, files, scan, scanWarm };
}

const us = (l: Latency) => `${l.mean.toFixed(1)} / ${l.p99.toFixed(0)} µs`;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** See the module comment. */
export async function requestRows({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  if (Deno.uid() !== 0) {
    return [{ name: "fuse requests: skipped", measured: "needs root (mounts, drop_caches)" }];
  }
  const tracks = Number(Deno.env.get("BENCH_FUSE_TRACKS") ?? (quick ? 2000 : 20_000));
  const n = quick ? 5000 : 20_000;
  const peersBin = `${PEERS_DIR}/bin`;
  const havePeers = await Deno.stat(`${peersBin}/passthrough_hp`).then(() => true, () => false);
  const dir = await Deno.makeTempDir({ prefix: "musicfs-fuse-req-bench-" });
  const lib = `${dir}/lib`;
  const mnt = `${dir}/mnt`;
  const state = `${dir}/state`;
  const cache = `${dir}/cache`;
  const peers: Peer[] = [];
  let daemon: ReturnType<typeof spawnDaemon> | undefined;
  try {
    console.error(`bench: fuse requests: writing a library of ${tracks} tracks...`);
    const fixture = await makeLibrary(lib, { tracks, seed: 1 });
    const rel = `/${fixture.good[fixture.good.length >> 1].relPath}`;
    // statloop is only in the peers dir; without it, a local build of the same source.
    const statloopBin = havePeers ? `${peersBin}/statloop` : await buildStatloop(dir);
    if (!statloopBin) {
      return [{
        name: "fuse requests: skipped",
        measured: "no statloop (peers dir absent, no gcc)",
      }];
    }

    daemon = spawnDaemon(lib, mnt, state, cache);
    await untilServing(daemon);
    await untilStatus(daemon, "the scan", scanDone);
    await untilStatus(daemon, "the search index", searchReady);
    // The daemon commits the index and settles after a first scan.
    await new Promise((r) => setTimeout(r, 3000));
    const first = new TextDecoder().decode(
      (await new Deno.Command("sh", {
        args: [
          "-c",
          'find "$1" -type f | sed -n "$2p"',
          "sh",
          `${mnt}/Artists`,
          String(tracks >> 1),
        ],
        stdout: "piped",
      }).output()).stdout,
    ).trim();
    const sides: Side[] = [{ name: "musicfs", dir: `${mnt}/Artists`, file: first }];
    sides.push({ name: "source", dir: lib, file: `${lib}${rel}` });
    if (havePeers) {
      peers.push(
        await startPeer(
          "libfuse",
          `${peersBin}/passthrough_hp --foreground '${lib}' '${dir}/hp'`,
          `${dir}/hp`,
        ),
      );
      peers.push(
        await startPeer(
          "go-fuse",
          `${peersBin}/go-fuse-loopback -q -directmount '${dir}/gofuse' '${lib}'`,
          `${dir}/gofuse`,
        ),
      );
      for (const p of peers) sides.push({ name: p.name, dir: p.mnt, file: `${p.mnt}${rel}` });
    }
    console.error(`bench: fuse requests: getattr and open + close, ${ROUNDS} rounds...`);
    const lat = await latencies(sides, statloopBin, n);
    const fig = new Map<string, Figures>();
    for (const side of sides) {
      console.error(`bench: fuse requests: ${side.name}...`);
      const expect = side.name === "musicfs" ? undefined : fig.get("source")?.tree?.files;
      const f = await measure(side, lat.get(side.name)!, dir, expect);
      if (!f.tree && (side.name === "musicfs" || side.name === "source")) {
        throw new Error(`${side.name}: ${f.treeError}`);
      }
      fig.set(side.name, f);
    }
    return rows(fig, tracks);
  } finally {
    for (const p of peers) await p.stop().catch(() => {});
    if (daemon) await stopDaemon(daemon);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function buildStatloop(dir: string): Promise<string | undefined> {
  // The same program as the peers' bin/statloop (a copy of its source lives here).
  const src = new URL("./statloop.c", import.meta.url).pathname;
  const out = await new Deno.Command("gcc", { args: ["-O2", "-o", `${dir}/statloop`, src] })
    .output()
    .catch(() => undefined);
  return out?.success ? `${dir}/statloop` : undefined;
}

function rows(fig: Map<string, Figures>, tracks: number): BenchRow[] {
  const m = fig.get("musicfs")!;
  const src = fig.get("source")!;
  const hp = fig.get("libfuse");
  const go = fig.get("go-fuse");
  const others = (f: (x: Figures) => string | undefined) =>
    ([["libfuse", hp], ["go-fuse", go], ["source", src]] as const)
      .filter(([, x]) => x)
      .map(([name, x]) => `${name} ${f(x!) ?? `n/a (${x!.treeError})`}`)
      .join("; ");
  const out: BenchRow[] = [];
  const perRequest = (name: string, pick: (x: Figures) => Latency) => {
    const ref = hp ? pick(hp).mean : undefined;
    const ratio = ref === undefined ? undefined : ref / pick(m).mean;
    out.push({
      name: `${name}, mean / p99`,
      measured: us(pick(m)),
      baseline: others((x) => us(pick(x))),
      ratio,
      goal: ref === undefined ? undefined : ">= 0.8x libfuse",
      ok: ratio === undefined ? undefined : ratio >= 0.8,
    });
  };
  perRequest("getattr round trip", (x) => x.getattr);
  perRequest("open + close", (x) => x.openclose);
  const k = `${Math.round(tracks / 1000)}k`;
  const mt = m.tree!;
  const st = src.tree!;
  const time = (pick: (t: Tree) => number) => (x: Figures) => x.tree && s(pick(x.tree));
  const findRow = (name: string, pick: (t: Tree) => number, goal: number) => {
    const ratio = pick(st) / pick(mt);
    out.push({
      name: `${name} (${mt.files} files; source ${st.files})`,
      measured: s(pick(mt)),
      baseline: others(time(pick)),
      ratio,
      goal: `>= ${goal}x source`,
      ok: ratio >= goal,
    });
  };
  findRow(`find /Artists ${k}, cold`, (t) => t.findCold, 0.33);
  findRow(`find /Artists ${k}, warm`, (t) => t.findWarm, 0.67);
  const scanRow = (name: string, pick: (t: Tree) => number) => {
    const ref = hp?.tree && pick(hp.tree);
    out.push({
      name,
      measured: s(pick(mt)),
      baseline: others(time(pick)),
      ratio: ref === undefined ? pick(st) / pick(mt) : ref / pick(mt),
      goal: ref === undefined ? undefined : ">= 0.8x libfuse",
      ok: ref === undefined ? undefined : ref / pick(mt) >= 0.8,
    });
  };
  scanRow(`player scan ${k} (open, read 64 KiB, close each), caches dropped`, (t) => t.scan);
  scanRow(`player scan ${k}, warm`, (t) => t.scanWarm);
  return out;
}
