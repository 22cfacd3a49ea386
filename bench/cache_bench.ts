/**
 * Reads through the chunk cache (`--cache-reads always`) with the real daemon: a large track
 * read through the mount with an empty cache (every 1 MiB chunk fetched from the origin,
 * hashed and stored) and again from the filled cache after the page cache is dropped, each
 * against `dd` of the source file with the page cache dropped, in the same run.
 *
 * The track is a WAV whose samples are random (valid noise), so no two chunks deduplicate.
 * Needs root (drop_caches, FUSE mount).
 */
import { type BenchRow, dd, dropCaches, mbpsRow } from "./common.ts";
import { encodeTrack } from "../tests/fixtures/mod.ts";
import { daemonDirs, daemonOptions, detachIfMounted, withDaemon } from "../tests/support/daemon.ts";

/** See the module doc. */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const size = (quick ? 32 : 256) << 20;
  const dirs = await daemonDirs("musicfs-cache-bench-");
  await Deno.mkdir(`${dirs.lib}/Noise`, { recursive: true });
  // 8 kHz 8-bit mono PCM: one byte a sample, so the duration sets the size.
  const wav = encodeTrack("wav", { artist: "Bench", album: "Noise", title: "Big", track: 1 }, {
    durationMs: Math.ceil(size / 8),
  });
  const data = findDataChunk(wav);
  for (let o = data.start; o < data.end; o += 65536) {
    crypto.getRandomValues(wav.subarray(o, Math.min(o + 65536, data.end)));
  }
  const source = `${dirs.lib}/Noise/big.wav`;
  await Deno.writeFile(source, wav);
  try {
    return await withDaemon(
      daemonOptions(dirs, { args: ["--cache-reads", "always", "--log-level", "warning"] }),
      async (d) => {
        await d.waitScanDone();
        const mounted = `${dirs.mnt}/Artists/Bench/Noise/01 - Big.wav`;
        await dropCaches();
        const src = await dd(source);
        await dropCaches();
        const cold = await dd(mounted);
        if (cold.bytes !== wav.length) throw new Error(`read ${cold.bytes} of ${wav.length} bytes`);
        // Let the background chunk stores finish, then read again from the cache alone.
        await new Promise((r) => setTimeout(r, 1000));
        await dropCaches();
        const warm = await dd(mounted);
        const label = `${size >> 20} MiB`;
        return [
          mbpsRow(
            `cache read ${label}, empty cache (origin fetch + hash + store)`,
            cold.mbps,
            src.mbps,
            "source, caches dropped",
          ),
          mbpsRow(
            `cache read ${label}, from the cache (page cache dropped)`,
            warm.mbps,
            src.mbps,
            "source, caches dropped",
          ),
        ];
      },
    );
  } finally {
    await detachIfMounted(dirs.mnt);
    await dirs.cleanup();
  }
}

/** Where the samples of a RIFF/WAVE file are (the tags chunk may follow them). */
function findDataChunk(b: Uint8Array): { start: number; end: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let o = 12; o + 8 <= b.length;) {
    const id = String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3]);
    const len = v.getUint32(o + 4, true);
    if (id === "data") return { start: o + 8, end: o + 8 + len };
    o += 8 + len + (len & 1);
  }
  throw new Error("no data chunk in the WAV fixture");
}
