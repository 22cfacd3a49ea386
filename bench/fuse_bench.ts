/**
 * FUSE read throughput (and, from fuse_requests.ts, cost per request): sequential `dd bs=1M` of one big file through a DemoFs mount
 * (`addSource`) against `dd` of the source file itself, in the same run.
 *
 * Cache states, stated per row:
 * - "source warm": the source file is in the page cache (read once first). The mount side is
 *   still "cold" in the FUSE sense: a fresh mount, so the FUSE inode has no page cache. For
 *   passthrough the kernel reads the (warm) backing file; for classic every 1 MiB goes
 *   kernel -> daemon (pread from the warm source) -> kernel.
 * - "repeated": a second read on the same mount; classic opens use FOPEN_KEEP_CACHE, so this
 *   is served from the FUSE inode's own page cache. A third read ("steady") is shown too: the
 *   second touch of a page also pays for moving it to the active LRU list, as the source's
 *   second read does (the source baseline is always at least its second cached read).
 * - "all cold": `echo 3 > /proc/sys/vm/drop_caches` before each side (source on disk too).
 *
 * dd runs as a child process (async): the FUSE request loop runs on this process's main thread,
 * so nothing here may read the mount synchronously. Each side is measured `rounds` times,
 * alternating, and the best round counts.
 */
import { type BenchRow, dd, dropCaches, mbpsRow } from "./common.ts";
import { DemoFs, FuseSession } from "../src/fuse/mod.ts";
import { requestRows } from "./fuse_requests.ts";

const MiB = 1 << 20;

/** A source file of `size` random-ish bytes, written asynchronously. */
async function makeSource(path: string, size: number): Promise<void> {
  const block = new Uint8Array(MiB);
  for (let o = 0; o < MiB; o += 65536) crypto.getRandomValues(block.subarray(o, o + 65536));
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (let i = 0; i < size / MiB; i++) {
      new DataView(block.buffer).setUint32(0, i); // no two MiB blocks alike
      for (let o = 0; o < MiB;) o += await f.write(block.subarray(o));
    }
  } finally {
    f.close();
  }
  await new Deno.Command("sync").output();
}

/**
 * Mount a fresh DemoFs serving `source` as big.bin at `mnt`, run `fn` on the file's path inside
 * the mount, and always unmount. A fresh mount means a fresh FUSE inode with no page cache.
 */
async function withMount<T>(
  mnt: string,
  source: string,
  passthrough: boolean,
  fn: (file: string, session: FuseSession) => Promise<T>,
): Promise<T> {
  const fs = new DemoFs();
  fs.addSource("big.bin", source);
  const session = await FuseSession.mount(mnt, fs, { passthrough, create: true });
  try {
    if (session.passthrough !== passthrough) {
      throw new Error(`asked for passthrough ${passthrough}, got ${session.passthrough}`);
    }
    return await fn(`${mnt}/big.bin`, session);
  } finally {
    await session.unmount();
    fs.closeAll();
  }
}

/**
 * The read throughput rows above, then the per-request rows of fuse_requests.ts.
 * BENCH_FUSE_PART=reads or =requests runs only one part.
 */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const part = Deno.env.get("BENCH_FUSE_PART");
  const reads = part === "requests" ? [] : await readRows({ quick });
  const requests = part === "reads" ? [] : await requestRows({ quick });
  return [...reads, ...requests];
}

async function readRows({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  if (Deno.uid() !== 0) {
    return [{ name: "fuse: skipped", measured: "needs root (passthrough, drop_caches)" }];
  }
  const size = (quick ? 64 : 512) * MiB;
  const rounds = quick ? 5 : 3;
  const label = `${size / MiB} MiB`;
  const dir = await Deno.makeTempDir({ prefix: "musicfs-fuse-bench-" });
  const source = `${dir}/source.bin`;
  const mnt = `${dir}/mnt`;
  try {
    await makeSource(source, size);
    const best = {
      sourceWarm: 0,
      passWarm: 0,
      classicWarm: 0,
      classicRepeat: 0,
      classicSteady: 0,
      sourceCold: 0,
      passCold: 0,
      classicCold: 0,
    };
    const keep = (k: keyof typeof best, r: { bytes: number; mbps: number }) => {
      if (r.bytes !== size) throw new Error(`read ${r.bytes} bytes, expected ${size}`);
      best[k] = Math.max(best[k], r.mbps);
    };
    for (let r = 0; r < rounds; r++) {
      // Source in the page cache; mount side cold (fresh mount).
      await dd(source);
      keep("sourceWarm", await dd(source));
      await withMount(mnt, source, true, async (f) => keep("passWarm", await dd(f)));
      await withMount(mnt, source, false, async (f) => {
        keep("classicWarm", await dd(f));
        keep("classicRepeat", await dd(f));
        keep("classicSteady", await dd(f));
      });
      // Everything cold: the source comes from disk on both sides.
      await dropCaches();
      keep("sourceCold", await dd(source));
      await withMount(mnt, source, true, async (f) => {
        await dropCaches();
        keep("passCold", await dd(f));
      });
      await withMount(mnt, source, false, async (f) => {
        await dropCaches();
        keep("classicCold", await dd(f));
      });
    }
    const w = "source, in page cache";
    const c = "source, caches dropped";
    const f = `fuse read ${label}`;
    return [
      mbpsRow(
        `${f}, passthrough, fresh mount, source warm`,
        best.passWarm,
        best.sourceWarm,
        w,
        0.95,
      ),
      mbpsRow(
        `${f}, classic, fresh mount, source warm`,
        best.classicWarm,
        best.sourceWarm,
        w,
        0.25,
      ),
      mbpsRow(
        `${f}, classic, 2nd read (FUSE page cache)`,
        best.classicRepeat,
        best.sourceWarm,
        w,
        0.9,
      ),
      mbpsRow(`${f}, classic, 3rd read (FUSE page cache)`, best.classicSteady, best.sourceWarm, w),
      mbpsRow(`${f}, passthrough, all caches dropped`, best.passCold, best.sourceCold, c),
      mbpsRow(`${f}, classic, all caches dropped`, best.classicCold, best.sourceCold, c),
    ];
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
