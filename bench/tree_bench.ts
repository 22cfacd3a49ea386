/**
 * Virtual tree figures: build time and retained heap for a synthetic library (100k tracks,
 * 10k with `--quick`), incremental apply() of one track, a big listing, lookups.
 *
 * The measuring runs in a child Deno with `--expose-gc`, so the heap figure is what the tree
 * keeps alive after a full collection, not garbage left by the build.
 */
import type { BenchRow } from "./common.ts";
import { percentile } from "./common.ts";
import type { TrackRecord } from "../src/library/types.ts";
import { type CoverImage, INO, VirtualTree } from "../src/fs/mod.ts";

interface Figures {
  tracks: number;
  buildMs: number;
  heapMB: number;
  applyP50: number;
  applyP99: number;
  albumP50: number;
  listMs: number;
  listEntries: number;
  lookupsPerSec: number;
}

/** A library shaped like a real one: 10-track albums, 10 albums per artist, some gaps. */
function library(n: number): { tracks: TrackRecord[]; covers: CoverImage[] } {
  const tracks: TrackRecord[] = [];
  const covers: CoverImage[] = [];
  const genres = ["Rock", "Jazz", "Pop", "Classical", "Electronic", "Folk", "Hip-Hop", "Metal"];
  for (let id = 1; id <= n; id++) {
    const album = Math.floor((id - 1) / 10);
    const artist = Math.floor(album / 10);
    const dir = `Artist ${artist}/Album ${album}`;
    if ((id - 1) % 10 === 0 && album % 3 !== 0) {
      covers.push({ originId: 1, dir, relPath: `${dir}/cover.jpg`, ext: "jpg", size: 50_000 });
    }
    tracks.push({
      id,
      originId: 1,
      relPath: `${dir}/${String(id % 10).padStart(2, "0")} Track ${id}.flac`,
      ext: "flac",
      size: 30_000_000,
      mtimeMs: 1_700_000_000_000,
      artist: `Artist ${artist}`,
      albumArtist: album % 7 === 0 ? "Various Artists" : undefined,
      album: album % 50 === 0 ? undefined : `Album ${album} — édition ${album}`,
      title: id % 97 === 0 ? undefined : `Track title number ${id}`,
      track: (id - 1) % 10 + 1,
      disc: album % 11 === 0 ? 1 + ((id - 1) % 2) : undefined,
      year: album % 13 === 0 ? undefined : 1960 + (album % 60),
      genre: album % 17 === 0 ? undefined : genres[album % genres.length],
    });
  }
  return { tracks, covers };
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function measure(n: number): Figures {
  const { tracks, covers } = library(n);
  const origins = [{ id: 1, path: "/srv/music" }];
  gc();
  const heap0 = Deno.memoryUsage().heapUsed;
  let t0 = performance.now();
  const tree = new VirtualTree({ origins, tracks, covers, uid: 1000, gid: 1000 });
  const buildMs = performance.now() - t0;
  gc();
  const heapMB = (Deno.memoryUsage().heapUsed - heap0) / 1e6;

  const one: number[] = [];
  for (let i = 0; i < 300; i++) {
    const t = tracks[(i * 7919) % tracks.length];
    const changed = { ...t, title: `Retitled ${i}`, size: t.size + 1 };
    t0 = performance.now();
    tree.apply({ changed: [changed] });
    one.push(performance.now() - t0);
    tracks[(i * 7919) % tracks.length] = changed;
  }
  const album: number[] = [];
  for (let i = 0; i < 100; i++) {
    const added = Array.from({ length: 12 }, (_, k) => ({
      ...tracks[k],
      id: 10_000_000 + i * 100 + k,
      relPath: `new/${i}/${k}.flac`,
      album: `Fresh album ${i}`,
      disc: 1 + (k % 2),
    }));
    t0 = performance.now();
    tree.apply({ added });
    tree.apply({ removed: added });
    album.push((performance.now() - t0) / 2);
  }

  t0 = performance.now();
  const list = tree.children(INO.albums)!;
  const listMs = performance.now() - t0;

  const paths = tracks.slice(0, 20_000).map((t) =>
    tree.pathOf(t.id + 2 ** 52)!.split("/").slice(1)
  );
  t0 = performance.now();
  let lookups = 0;
  for (const p of paths) {
    let ino: number = INO.root;
    for (const name of p) {
      ino = tree.lookup(ino, name)!.ino;
      lookups++;
    }
  }
  const lookupsPerSec = lookups / ((performance.now() - t0) / 1000);

  return {
    tracks: n,
    buildMs,
    heapMB,
    applyP50: percentile(one, 50),
    applyP99: percentile(one, 99),
    albumP50: percentile(album, 50),
    listMs,
    listEntries: list.length,
    lookupsPerSec,
  };
}

/** Bench entry: spawn the measuring child and turn its figures into rows. */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const n = quick ? 10_000 : 100_000;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", new URL(import.meta.url).pathname, String(n)],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`tree bench child failed (exit ${out.code})`);
  const f = JSON.parse(new TextDecoder().decode(out.stdout)) as Figures;
  const k = `${f.tracks / 1000}k`;
  const buildGoal = quick ? 150 : 1500;
  const heapGoal = quick ? 15 : 150;
  return [
    {
      name: `tree build, ${k} tracks`,
      measured: `${f.buildMs.toFixed(0)} ms`,
      goal: `<= ${buildGoal} ms`,
      ok: f.buildMs <= buildGoal,
    },
    {
      name: `tree heap retained, ${k} tracks`,
      measured: `${f.heapMB.toFixed(1)} MB`,
      goal: `<= ${heapGoal} MB`,
      ok: f.heapMB <= heapGoal,
    },
    {
      name: `tree apply(1 changed track), ${k}`,
      measured: `p50 ${f.applyP50.toFixed(3)} ms, p99 ${f.applyP99.toFixed(3)} ms`,
      // p99 catches whatever GC pause falls in the 300 samples; p50 is the apply itself.
      goal: "p50 <= 1 ms",
      ok: f.applyP50 <= 1,
    },
    {
      name: `tree apply(12-track album add/remove), ${k}`,
      measured: `p50 ${f.albumP50.toFixed(3)} ms`,
    },
    {
      name: `tree children(/Albums), ${f.listEntries} entries`,
      measured: `${f.listMs.toFixed(2)} ms`,
    },
    {
      name: `tree lookup, ${k}`,
      measured: `${(f.lookupsPerSec / 1e6).toFixed(2)} M/s`,
    },
  ];
}

if (import.meta.main) {
  console.log(JSON.stringify(measure(Number(Deno.args[0] ?? 100_000))));
}
