import assert from "node:assert/strict";
import { acquireLock, AlreadyRunningError, lockPath, readLock } from "./lock.ts";

const root = Deno.uid() === 0;

Deno.test({
  name: "lock: on a full disk the pid file is a symlink, read and released like a file",
  ignore: !root,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "musicfs-lockfull-" });
    const mnt = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir],
    })
      .output();
    assert.ok(mnt.success, "mount tmpfs");
    try {
      const f = await Deno.open(`${dir}/filler`, { write: true, create: true });
      try {
        for (;;) await f.write(new Uint8Array(4096));
      } catch {
        /* full */
      } finally {
        f.close();
      }
      const lock = await acquireLock(dir, { name: "musicfs" });
      assert.ok((await Deno.lstat(lockPath(dir))).isSymlink, "published as a symlink");
      assert.deepEqual((await readLock(dir))?.pid, Deno.pid);
      await assert.rejects(acquireLock(dir, { name: "musicfs" }), AlreadyRunningError);
      await lock.release();
      await assert.rejects(Deno.lstat(lockPath(dir)), Deno.errors.NotFound);
    } finally {
      await new Deno.Command("umount", { args: ["-l", dir] }).output();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
