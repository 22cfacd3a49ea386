/**
 * Chunk cache (CAS) figures: put and cached get of 1 MiB chunks against plain file write/read
 * of the same bytes in the same directory, the cost of fsync per chunk, and how long the
 * child-process index validation (run at every daemon start) and a whole open take for a
 * healthy index.
 */
import { type BenchRow, mbps, mbpsRow } from "./common.ts";
import { CasStore, checkIndex, sha256Hex } from "../src/cas/mod.ts";

const MiB = 1 << 20;

/** Distinct 1 MiB chunks without holding them all: random bytes, chunk number in front. */
function chunkMaker(): (i: number) => Uint8Array {
  const base = new Uint8Array(MiB);
  for (let o = 0; o < MiB; o += 65536) crypto.getRandomValues(base.subarray(o, o + 65536));
  return (i) => {
    const b = base.slice();
    new DataView(b.buffer).setUint32(0, i);
    return b;
  };
}

/**
 * Milliseconds `fn` takes, starting with no dirty pages: otherwise whichever side runs second
 * pays for the writeback of the first one's data.
 */
async function time(fn: () => Promise<void>): Promise<number> {
  await new Deno.Command("sync").output();
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/**
 * Put then cached get of `n` chunks, against plain write then read of the same bytes; rounds
 * alternate the two sides and the best round of each counts, because writeback of earlier
 * rounds makes single runs noisy.
 */
async function throughput(
  dir: string,
  n: number,
  rounds: number,
  opts: { fsync?: boolean; shardLevels?: number } = {},
) {
  const fsync = opts.fsync ?? false;
  const tag = `${fsync}-${opts.shardLevels}`;
  const make = chunkMaker();
  const bytes = n * MiB;
  const best = { write: 0, put: 0, read: 0, get: 0 };
  for (let r = 0; r < rounds; r++) {
    const plainDir = `${dir}/plain-${tag}-${r}`;
    await Deno.mkdir(plainDir);
    best.write = Math.max(
      best.write,
      mbps(
        bytes,
        await time(async () => {
          for (let i = 0; i < n; i++) {
            const f = await Deno.open(`${plainDir}/${i}`, { write: true, createNew: true });
            const b = make(i);
            for (let o = 0; o < b.length;) o += await f.write(b.subarray(o));
            if (fsync) await f.syncData();
            f.close();
          }
        }),
      ),
    );
    const storeDir = `${dir}/cas-${tag}-${r}`;
    const store = await CasStore.open({
      dir: storeDir,
      maxSize: bytes * 2,
      fsync,
      shardLevels: opts.shardLevels,
    });
    const hashes: string[] = [];
    try {
      best.put = Math.max(
        best.put,
        mbps(
          bytes,
          await time(async () => {
            for (let i = 0; i < n; i++) hashes.push(await store.put(make(i)));
          }),
        ),
      );
      // Both read from the page cache: the chunks were just written.
      best.read = Math.max(
        best.read,
        mbps(
          bytes,
          await time(async () => {
            for (let i = 0; i < n; i++) await Deno.readFile(`${plainDir}/${i}`);
          }),
        ),
      );
      best.get = Math.max(
        best.get,
        mbps(
          bytes,
          await time(async () => {
            for (const h of hashes) {
              if (!(await store.get(h))) throw new Error(`chunk ${h} missing`);
            }
          }),
        ),
      );
    } finally {
      await store.close();
    }
    await Deno.remove(plainDir, { recursive: true });
    await Deno.remove(storeDir, { recursive: true });
  }
  return best;
}

async function sha256Bound(n: number): Promise<number> {
  const b = chunkMaker()(0);
  const ms = await time(async () => {
    for (let i = 0; i < n; i++) await sha256Hex(b);
  });
  return mbps(n * MiB, ms);
}

/** A healthy store of `chunks` chunks (tiny: the index is what matters) and 4 maps each. */
async function validation(dir: string, chunks: number): Promise<BenchRow[]> {
  const storeDir = `${dir}/valid-${chunks}`;
  const store = await CasStore.open({ dir: storeDir, maxSize: 1e15 });
  try {
    for (let i = 0; i < chunks; i++) {
      const h = await store.put(new TextEncoder().encode(`chunk ${i}`));
      for (let n = 0; n < 4; n++) store.putChunkFor(`${i}@${MiB * 4}:1700000000000`, n, h);
    }
  } finally {
    await store.close();
  }
  const checks: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await checkIndex(`${storeDir}/index`);
    if (r.status !== "ok" || r.chunks !== chunks) {
      throw new Error(`unexpected ${JSON.stringify(r)}`);
    }
    checks.push(r.ms);
  }
  const opens: number[] = [];
  for (let i = 0; i < 3; i++) {
    opens.push(
      await time(async () => await (await CasStore.open({ dir: storeDir, maxSize: 1e15 })).close()),
    );
  }
  const best = (xs: number[]) => Math.min(...xs);
  const label = `${chunks} chunks + ${chunks * 4} file maps (${
    (chunks / 1024).toFixed(0)
  } GiB of 1 MiB chunks)`;
  return [
    {
      name: `CAS index validation in child, ${label}`,
      measured: `${best(checks).toFixed(0)} ms`,
      goal: "<= 250 ms",
      ok: best(checks) <= 250,
    },
    {
      name: `CAS open (validate + walk chunks + load), ${label}`,
      measured: `${best(opens).toFixed(0)} ms`,
      goal: "<= 500 ms",
      ok: best(opens) <= 500,
    },
  ];
}

/** Bench entry point (see bench/main.ts). */
export async function run(opts: { quick: boolean }): Promise<BenchRow[]> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cas-bench-" });
  try {
    const n = opts.quick ? 32 : 128;
    const rounds = opts.quick ? 2 : 4;
    const t = await throughput(dir, n, rounds);
    const t1 = await throughput(dir, n, rounds, { shardLevels: 1 });
    const ts = await throughput(dir, opts.quick ? 8 : 32, rounds, { fsync: true });
    const hash = await sha256Bound(n);
    // A verifying content-addressed store cannot beat SHA-256 of the bytes (about half of
    // page-cache write/read speed here), so the goals are set against that bound; the plain
    // file figures are the comparison SPEC 7 asks for.
    return [
      mbpsRow("CAS put, 1 MiB chunks (new ab/cd dirs)", t.put, t.write, "plain write"),
      mbpsRow("CAS put, 1 MiB chunks (new ab/cd dirs)", t.put, hash, "SHA-256 alone", 0.5),
      mbpsRow("CAS put, 1 MiB chunks, shardLevels 1", t1.put, t1.write, "plain write"),
      mbpsRow("CAS put, 1 MiB chunks, fsync option", ts.put, ts.write, "plain write + fsync"),
      mbpsRow("CAS cached get (SHA-256 verified), 1 MiB", t.get, t.read, "plain read"),
      mbpsRow("CAS cached get (SHA-256 verified), 1 MiB", t.get, hash, "SHA-256 alone", 0.7),
      ...(await validation(dir, 2048)),
      ...(opts.quick ? [] : await validation(dir, 20480)),
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  for (const r of await run({ quick: Deno.args.includes("--quick") })) console.log(r);
}
