/**
 * What `--allow-other` (kernel permission checks against the sources' owners and modes, and
 * the folder rule of src/fs/access.ts) costs: a large track read through the real daemon's
 * mount with and without it, against `dd` of the source in the same run (page cache warm:
 * the daemon's share shows most there), and a `find -ls` of a 2,000-track library (every
 * entry stat'ed: the folder rule is computed on first sight).
 *
 * Needs root (passthrough, allow_other).
 */
import { type BenchRow, dd, mbpsRow } from "./common.ts";
import { encodeTrack, writeTrack } from "../tests/fixtures/mod.ts";
import { daemonDirs, daemonOptions, detachIfMounted, withDaemon } from "../tests/support/daemon.ts";

/** See the module doc. */
export async function run({ quick }: { quick: boolean }): Promise<BenchRow[]> {
  const size = (quick ? 32 : 512) << 20;
  const tracks = quick ? 200 : 2000;
  const dirs = await daemonDirs("musicfs-access-bench-");
  try {
    await Deno.mkdir(`${dirs.lib}/Big`, { recursive: true });
    const wav = encodeTrack("wav", { artist: "Bench", album: "Big", title: "Big", track: 1 }, {
      durationMs: Math.ceil(size / 8),
    });
    const source = `${dirs.lib}/Big/big.wav`;
    await Deno.writeFile(source, wav);
    for (let i = 0; i < tracks; i++) {
      const dir = `${dirs.lib}/A${i % 50}/B${i % 200}`;
      await Deno.mkdir(dir, { recursive: true });
      await writeTrack(`${dir}/${i}.mp3`, "mp3-id3v24", {
        artist: `Artist ${i % 50}`,
        album: `Album ${i % 200}`,
        title: `Song ${i}`,
        track: (i % 10) + 1,
      });
      // A mix of private and shared files, as a multi-user machine has.
      if (i % 3 === 0) await Deno.chmod(`${dir}/${i}.mp3`, 0o600);
    }
    const rows: BenchRow[] = [];
    for (const allowOther of [false, true]) {
      const label = allowOther ? "--allow-other" : "own mount";
      const args = ["--cache-reads", "never", "--log-level", "warning"];
      if (allowOther) args.push("--allow-other");
      await withDaemon(daemonOptions(dirs, { args }), async (d) => {
        await d.waitScanDone(120_000);
        const mounted = `${dirs.mnt}/Artists/Bench/Big/01 - Big.wav`;
        await dd(source);
        const src = await dd(source);
        const first = await dd(mounted);
        if (first.bytes !== wav.length) throw new Error(`read ${first.bytes} of ${wav.length}`);
        rows.push(
          mbpsRow(
            `daemon read ${size >> 20} MiB, passthrough, ${label}`,
            first.mbps,
            src.mbps,
            "source, in page cache",
            0.95,
          ),
        );
        const t0 = performance.now();
        const out = await new Deno.Command("find", { args: [dirs.mnt, "-ls"], stdout: "piped" })
          .output();
        const ms = performance.now() - t0;
        const entries = new TextDecoder().decode(out.stdout).split("\n").length - 1;
        rows.push({
          name: `find -ls over the mount (${tracks} tracks), ${label}`,
          measured: `${ms.toFixed(0)} ms (${entries} entries)`,
        });
      });
    }
    return rows;
  } finally {
    await detachIfMounted(dirs.mnt);
    await dirs.cleanup();
  }
}
