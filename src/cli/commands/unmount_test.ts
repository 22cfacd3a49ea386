import assert from "node:assert/strict";
import { acquireLock, controlSocketPath, serveControl } from "../../daemon/mod.ts";
import { detach, findFuseMount, isDeadMount } from "../../fuse/mod.ts";
import { startDemoServer } from "../../../tests/support/demo_server.ts";
import { needsFuse, tempDir } from "../../../tests/support/helpers.ts";
import type { CommandIo } from "./common.ts";
import { unmountCommand } from "./unmount.ts";

function capture(): { io: CommandIo; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, out, err };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cli-unmount-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("unmount with no daemon and nothing mounted: one-line error, exit 1", async () => {
  await withDir(async (dir) => {
    const c = capture();
    const code = await unmountCommand({ stateDir: dir, mountpoint: dir, io: c.io });
    assert.equal(code, 1);
    assert.deepEqual(c.out, []);
    assert.deepEqual(c.err, [
      `musicfs: musicfs is not running, and nothing of it is mounted at ${dir} (nothing to unmount)`,
    ]);
  });
});

Deno.test("unmount names a locked daemon that does not answer on its socket", async () => {
  await withDir(async (dir) => {
    const lock = await acquireLock(dir, { name: "musicfs" });
    try {
      const c = capture();
      assert.equal(await unmountCommand({ stateDir: dir, io: c.io }), 1);
      assert.match(
        c.err[0],
        new RegExp(
          `^musicfs: the daemon \\(pid ${Deno.pid}\\) does not answer on its control socket .*musicfs unmount --force\\)$`,
        ),
      );
    } finally {
      await lock.release();
    }
  });
});

Deno.test("unmount round trip: POST /shutdown, then waits until the daemon's pid is gone", async () => {
  await withDir(async (dir) => {
    // Stands in for the daemon process: the canned status names its pid, the shutdown kills it.
    const daemon = new Deno.Command("sleep", { args: ["600"] }).spawn();
    const asked: string[] = [];
    const server = await serveControl({
      socketPath: controlSocketPath(dir),
      handlers: {
        status: () => ({ pid: daemon.pid, mountpoint: dir }),
        search: () => Promise.resolve({ results: [] }),
        rescan: () => Promise.resolve({ started: true }),
        shutdown: async () => {
          asked.push("shutdown");
          await server.shutdown();
          daemon.kill("SIGTERM");
          await daemon.status;
        },
      },
    });
    try {
      const c = capture();
      assert.equal(await unmountCommand({ stateDir: dir, io: c.io }), 0);
      assert.deepEqual(asked, ["shutdown"]);
      assert.deepEqual(c.out, [`Unmounted ${dir} (daemon pid ${daemon.pid} stopped)`]);
      assert.deepEqual(c.err, []);
    } finally {
      try {
        daemon.kill("SIGKILL");
      } catch { /* already gone */ }
      await daemon.status;
      await server.shutdown();
    }
  });
});

Deno.test("unmount gives up, bounded, on a daemon that does not stop", async () => {
  await withDir(async (dir) => {
    const server = await serveControl({
      socketPath: controlSocketPath(dir),
      handlers: {
        status: () => ({ pid: Deno.pid, mountpoint: dir }),
        search: () => Promise.resolve({ results: [] }),
        rescan: () => Promise.resolve({ started: true }),
        shutdown: () => Promise.resolve(),
      },
    });
    try {
      const c = capture();
      const opts = { stateDir: dir, timeoutMs: 300, slowMs: 100, io: c.io };
      assert.equal(await unmountCommand(opts), 1);
      assert.deepEqual(c.err, [
        "musicfs: waiting for the daemon's shutdown (after a scan it may be storing the tree for the next start)",
        `musicfs: the daemon (pid ${Deno.pid}) did not stop within 0.3 s (see its log; to get out now: musicfs unmount --force)`,
      ]);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test(
  "unmount detaches the dead mount of a killed daemon",
  { ...needsFuse, ignore: needsFuse.ignore || Deno.uid() !== 0 },
  async () => {
    const dir = await tempDir("musicfs-cli-unmount-");
    const mnt = `${dir.path}/mnt`;
    await Deno.mkdir(mnt);
    const server = await startDemoServer(mnt);
    try {
      await server.kill();
      assert.ok(await isDeadMount(mnt), "a SIGKILLed server leaves a dead mount");

      const c = capture();
      assert.equal(await unmountCommand({ stateDir: dir.path, mountpoint: mnt, io: c.io }), 0);
      assert.deepEqual(c.out, [`musicfs was not running; detached the dead mount at ${mnt}`]);
      assert.equal(findFuseMount(mnt), undefined);
    } finally {
      await server.kill();
      if (findFuseMount(mnt)) await detach(mnt);
      await dir.cleanup();
    }
  },
);
