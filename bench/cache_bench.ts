/**
 * Reads through the chunk cache (`--cache-reads always`) with the real daemon: a large track
 * read through the mount with an empty cache (every 1 MiB chunk fetched from the origin,
 * hashed and stored) and again from the filled cache after the page cache is dropped, each
 * against `dd` of the source file with the page cache dropped, in the same run.
 *
 * The track is a WAV whose samples are random (valid noise), so no two chunks deduplicate.
 * Needs root (drop_caches, FUSE mount).
 */
import { type BenchRow, dd, dropCaches } from "./common.ts";
import { encodeTrack } from "../tests/fixtures/mod.ts";
import { controlRequest, controlSocketPath } from "../src/daemon/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** See the module doc. */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const size = (quick ? 32 : 256) << 20;
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cache-bench-" });
  const lib = `${dir}/lib`;
  const mnt = `${dir}/mnt`;
  const state = `${dir}/state`;
  await Deno.mkdir(`${lib}/Noise`, { recursive: true });
  // 8 kHz 8-bit mono PCM: one byte a sample, so the duration sets the size.
  const wav = encodeTrack("wav", { artist: "Bench", album: "Noise", title: "Big", track: 1 }, {
    durationMs: Math.ceil(size / 8),
  });
  const data = findDataChunk(wav);
  for (let o = data.start; o < data.end; o += 65536) {
    crypto.getRandomValues(wav.subarray(o, Math.min(o + 65536, data.end)));
  }
  const source = `${lib}/Noise/big.wav`;
  await Deno.writeFile(source, wav);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      `--config=${CONFIG}`,
      MAIN,
      "mount",
      lib,
      "--mountpoint",
      mnt,
      "--state-dir",
      state,
      "--cache-dir",
      `${dir}/cache`,
      "--cache-reads",
      "always",
      "--foreground",
      "--log-level",
      "warning",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const sock = controlSocketPath(state);
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const st = await controlRequest(sock, "GET", "/status", { timeoutMs: 1000 }) as {
          tracks: number;
          scan: { phase: string } | null;
        };
        if (st.tracks === 1 && st.scan?.phase === "done") break;
      } catch { /* starting */ }
      if (Date.now() > deadline) throw new Error("the daemon did not come up");
      await new Promise((r) => setTimeout(r, 100));
    }
    const mounted = `${mnt}/Artists/Bench/Noise/01 - Big.wav`;
    await dropCaches();
    const src = await dd(source);
    await dropCaches();
    const cold = await dd(mounted);
    if (cold.bytes !== wav.length) throw new Error(`read ${cold.bytes} of ${wav.length} bytes`);
    // Let the background chunk stores finish, then read again from the cache alone.
    await new Promise((r) => setTimeout(r, 1000));
    await dropCaches();
    const warm = await dd(mounted);
    const mb = (x: { mbps: number }) => `${Math.round(x.mbps)} MB/s`;
    const base = `${mb(src)} (source, caches dropped)`;
    const label = `${size >> 20} MiB`;
    return [
      {
        name: `cache read ${label}, empty cache (origin fetch + hash + store)`,
        measured: mb(cold),
        baseline: base,
        ratio: cold.mbps / src.mbps,
      },
      {
        name: `cache read ${label}, from the cache (page cache dropped)`,
        measured: mb(warm),
        baseline: base,
        ratio: warm.mbps / src.mbps,
      },
    ];
  } finally {
    child.kill("SIGTERM");
    const done = await Promise.race([
      child.status,
      new Promise((r) => setTimeout(() => r(null), 10_000)),
    ]);
    if (done === null) {
      child.kill("SIGKILL");
      await child.status;
      await new Deno.Command("umount", { args: ["-l", mnt] }).output();
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
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
