import assert from "node:assert/strict";
import { findFuseMount } from "../../fuse/mod.ts";
import { needsFuse, run, tempDir } from "../../../tests/support/helpers.ts";
import type { CommandIo } from "./common.ts";
import { forceUnmountCommand } from "./force_unmount.ts";
import { startDemoServer } from "../../../tests/support/demo_server.ts";

function capture(): { io: CommandIo; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, out, err };
}

Deno.test("unmount --force with nothing mounted: one-line error, exit 1", async () => {
  const dir = await tempDir("musicfs-cli-force-");
  try {
    const c = capture();
    const code = await forceUnmountCommand({ stateDir: dir.path, mountpoint: dir.path, io: c.io });
    assert.equal(code, 1);
    assert.deepEqual(c.err, [
      `musicfs: nothing is mounted at ${await Deno.realPath(dir.path)} (nothing to unmount)`,
    ]);
    const none = capture();
    assert.equal(await forceUnmountCommand({ stateDir: dir.path, io: none.io }), 2);
    assert.match(none.err[0], /no mountpoint given .*musicfs unmount --force <mountpoint>\)$/);
  } finally {
    await dir.cleanup();
  }
});

Deno.test(
  "unmount --force frees the readers of a SIGSTOPped server and detaches its mount",
  { ...needsFuse, ignore: needsFuse.ignore || Deno.uid() !== 0 },
  async () => {
    const dir = await tempDir("musicfs-cli-force-");
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    const server = await startDemoServer(mnt);
    const child = server.child;
    try {
      // The state dir records the mountpoint, as the daemon does: no argument needed.
      await Deno.writeTextFile(`${dir.path}/mountpoint`, mnt);
      child.kill("SIGSTOP");
      // A reader that blocks on the stopped server (the kernel cache is bypassed by a fresh
      // name); it must come back once the connection is aborted.
      const started = performance.now();
      const blocked = run(["timeout", "30", "cat", `${mnt}/no-such-file-${Date.now()}`]);
      await new Promise((r) => setTimeout(r, 500));
      const c = capture();
      assert.equal(await forceUnmountCommand({ stateDir: dir.path, io: c.io }), 0, c.err.join());
      assert.match(c.out[0], /^Aborted the FUSE connection \d+ of .*\/mnt and detached the mount$/);
      const r = await blocked;
      const ms = performance.now() - started;
      assert.notEqual(r.code, 124, "the reader was freed, not timed out");
      assert.ok(ms < 10_000, `the reader returned after ${Math.round(ms)} ms`);
      assert.equal(findFuseMount(mnt), undefined, "the mount is gone");
      // Continued, the server sees the aborted connection and exits.
      child.kill("SIGCONT");
      const st = await child.status;
      assert.equal(st.code, 0);
    } finally {
      await server.kill();
      await run(["umount", "-l", mnt]);
      await dir.cleanup();
    }
  },
);
