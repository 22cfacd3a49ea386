import assert from "node:assert/strict";
import type { FuseOperations } from "../fuse/mod.ts";
import { guardVanishedRoots } from "./root_guard.ts";

Deno.test("an open failing with ENOENT answers EIO when the whole root is gone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-rootguard-" });
  try {
    const enoent = Object.assign(new Error("open: No such file or directory"), { errno: 2 });
    const ops = { open: () => Promise.reject(enoent) } as unknown as FuseOperations;
    const gone: number[] = [];
    let root = dir;
    guardVanishedRoots(ops, {
      originOf: (ino) => ino === 7 ? { id: 3, root } : undefined,
      onRootGone: (id) => gone.push(id),
    });
    const ctx = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal };
    // The root is there: the file itself is missing, ENOENT stands.
    await assert.rejects(ops.open(7, 0, ctx), (e: unknown) => (e as { errno: number }).errno === 2);
    // Not a source-backed inode: untouched.
    await assert.rejects(ops.open(8, 0, ctx), (e: unknown) => e === enoent);
    root = `${dir}/gone`;
    const started = performance.now();
    await assert.rejects(ops.open(7, 0, ctx), (e: unknown) => (e as { errno: number }).errno === 5);
    assert.ok(performance.now() - started < 1000);
    assert.deepEqual(gone, [3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
