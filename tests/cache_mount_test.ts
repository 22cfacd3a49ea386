/**
 * Playback that survives a dead origin: the real daemon with `--cache-reads always`, a played
 * track read back from the chunk cache after its library root became unreachable.
 */
import assert from "node:assert/strict";
import { makeLibrary } from "./fixtures/mod.ts";
import { daemonOptions, withDaemon, withDirs } from "./support/daemon.ts";
import { getXattr, needsFuse, run, waitFor } from "./support/helpers.ts";

async function sha(path: string): Promise<{ hash: string; err: string }> {
  const r = await run(["sh", "-c", `sha256sum < '${path.replace(/'/g, "'\\''")}'`]);
  return { hash: r.stdout.split(" ")[0], err: r.stderr };
}

const dropPageCache = () => run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);

Deno.test(
  "cache: a played track still reads from the cache while its origin is gone",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      const lib = dirs.lib;
      const fixture = await makeLibrary(lib, { tracks: 12, seed: 5 });
      await withDaemon(daemonOptions(dirs, { args: ["--cache-reads", "always"] }), async (d) => {
        const scanned = await d.waitScanDone();
        assert.equal(scanned.tracks, fixture.good.length);
        assert.equal(scanned.cache?.mode, "always");
        const bySource = new Map<string, string>();
        const list = await run([
          "find",
          `${dirs.mnt}/Artists`,
          "-type",
          "f",
          "!",
          "-name",
          "cover.*",
        ]);
        for (const p of list.stdout.trim().split("\n")) {
          bySource.set((await getXattr(p, "user.musicfs.source"))!, p);
        }
        const [played, unplayed] = fixture.good.slice(0, 2).map((g) => ({
          source: `${lib}/${g.relPath}`,
          mounted: bySource.get(`${lib}/${g.relPath}`)!,
        }));
        assert.ok(played.mounted && unplayed.mounted, "both tracks are in the tree");
        const want = await sha(played.source);
        assert.equal((await sha(played.mounted)).hash, want.hash);
        await waitFor(
          async () => ((await d.getStatus()).cache?.chunks ?? 0) > 0,
          10_000,
          "the chunk to be stored",
        );

        // The origin goes away; drop the kernel's page cache so reads really reach the daemon.
        await Deno.rename(lib, `${lib}.gone`);
        try {
          await dropPageCache();
          assert.equal((await sha(played.mounted)).hash, want.hash, "cached track must still read");
          assert.match(
            (await sha(unplayed.mounted)).err,
            /Input\/output error/,
            "an uncached track fails with EIO",
          );
        } finally {
          await Deno.rename(`${lib}.gone`, lib);
        }
        await dropPageCache();
        const back = (await sha(unplayed.source)).hash;
        await waitFor(
          async () => (await sha(unplayed.mounted)).hash === back,
          15_000,
          "reads to resume",
        );
      });
    });
  },
);
