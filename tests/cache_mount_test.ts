/**
 * Playback that survives a dead origin: the real daemon with `--cache-reads always`, a played
 * track read back from the chunk cache after its library root became unreachable.
 */
import assert from "node:assert/strict";
import { makeLibrary } from "./fixtures/mod.ts";
import { controlRequest, controlSocketPath } from "../src/daemon/mod.ts";
import { getXattr, isMounted, needsFuse, run, tempDir, waitFor } from "./support/helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

async function sha(path: string): Promise<{ code: number; hash: string; err: string }> {
  const r = await run(["sh", "-c", `sha256sum < '${path.replace(/'/g, "'\\''")}'`]);
  return { code: r.code, hash: r.stdout.split(" ")[0], err: r.stderr };
}

Deno.test(
  "cache: a played track still reads from the cache while its origin is gone",
  needsFuse,
  async () => {
    const dir = await tempDir();
    const lib = `${dir.path}/lib`;
    const mnt = `${dir.path}/mnt`;
    const state = `${dir.path}/state`;
    const fixture = await makeLibrary(lib, { tracks: 12, seed: 5 });
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
        `${dir.path}/cache`,
        "--cache-reads",
        "always",
        "--foreground",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const errs = (async () => {
      let t = "";
      for await (const c of child.stderr) t += new TextDecoder().decode(c);
      return t;
    })();
    const sock = controlSocketPath(state);
    type Status = {
      tracks: number;
      scan: { phase: string } | null;
      cache: { chunks: number; mode: string } | null;
    };
    const status = () =>
      controlRequest(sock, "GET", "/status", { timeoutMs: 2000 }) as Promise<Status>;
    try {
      await waitFor(
        async () => {
          try {
            const s = await status();
            return s.scan?.phase === "done" && s.tracks === fixture.good.length;
          } catch {
            return false;
          }
        },
        60_000,
        "the daemon to mount and scan",
      );
      assert.equal((await status()).cache?.mode, "always");
      const source = (rel: string) => `${lib}/${rel}`;
      const byPath = new Map<string, string>();
      const list = await run(["find", `${mnt}/Artists`, "-type", "f", "!", "-name", "cover.*"]);
      for (const p of list.stdout.trim().split("\n")) {
        byPath.set((await getXattr(p, "user.musicfs.source"))!, p);
      }
      const [played, unplayed] = fixture.good.slice(0, 2).map((g) => ({
        g,
        mounted: byPath.get(source(g.relPath))!,
      }));
      assert.ok(played.mounted && unplayed.mounted, "both tracks are in the tree");
      const want = await sha(source(played.g.relPath));
      assert.equal((await sha(played.mounted)).hash, want.hash);
      await waitFor(
        async () => ((await status()).cache?.chunks ?? 0) > 0,
        10_000,
        "the chunk to be stored",
      );

      // The origin goes away; drop the kernel's page cache so reads really reach the daemon.
      await Deno.rename(lib, `${lib}.gone`);
      await run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);
      assert.equal((await sha(played.mounted)).hash, want.hash, "cached track must still read");
      const started = Date.now();
      const dead = await sha(unplayed.mounted);
      assert.match(dead.err, /Input\/output error/, "an uncached track fails with EIO");
      assert.ok(Date.now() - started < 10_000, "and does not hang");

      await Deno.rename(`${lib}.gone`, lib);
      await run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]);
      await waitFor(
        async () =>
          (await sha(unplayed.mounted)).hash === (await sha(source(unplayed.g.relPath))).hash,
        15_000,
        "reads to resume",
      );
    } finally {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const st = await Promise.race([
        child.status,
        new Promise((r) => setTimeout(() => r(null), 10_000)),
      ]);
      if (st === null) child.kill("SIGKILL");
      await child.status;
      const log = await errs;
      if (await isMounted(mnt)) await run(["umount", "-l", mnt]);
      await Deno.rename(`${lib}.gone`, lib).catch(() => {});
      await dir.cleanup();
      if (!st) console.error(log);
    }
  },
);
