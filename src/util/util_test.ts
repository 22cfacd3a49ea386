import assert from "node:assert/strict";
import { abortableSleep, collectGarbage, exists, existsSync, moveAside } from "./mod.ts";

Deno.test("abortableSleep: ends at once when aborted, before or during the wait", async () => {
  const stop = new AbortController();
  stop.abort();
  const t0 = performance.now();
  await abortableSleep(60_000, stop.signal);
  const late = new AbortController();
  const slept = abortableSleep(60_000, late.signal);
  setTimeout(() => late.abort(), 5);
  await slept;
  assert.ok(performance.now() - t0 < 30_000);
  await abortableSleep(1);
});

Deno.test("exists: a dangling symlink is there, a missing name is not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.symlink(`${dir}/nowhere`, `${dir}/link`);
    assert.deepEqual(await exists(`${dir}/link`), true);
    assert.deepEqual(existsSync(`${dir}/link`), true);
    assert.deepEqual(await exists(`${dir}/nowhere`), false);
    assert.deepEqual(existsSync(`${dir}/nowhere`), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("moveAside: renames with companions, keeps the newest few, absent is undefined", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/library.db`;
    assert.deepEqual(moveAside(path, { keep: 2 }), undefined);
    const moved: string[] = [];
    for (let i = 0; i < 4; i++) {
      await Deno.writeTextFile(path, `copy ${i}`);
      await Deno.writeTextFile(`${path}-wal`, `wal ${i}`);
      moved.push(moveAside(path, { keep: 2, companions: ["-wal", "-shm"] })!);
    }
    assert.deepEqual(existsSync(path), false);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names.length, 4, names.join());
    for (const m of moved.slice(2)) {
      assert.deepEqual(await Deno.readTextFile(m), `copy ${moved.indexOf(m)}`);
      assert.ok(existsSync(`${m}-wal`));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("moveAside: copies set aside within one millisecond keep their order, past .9 too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/search.db`;
    const moved: string[] = [];
    // Fast enough that most land in the same millisecond: the newest three must be the kept ones
    // (a name freed by pruning was reused once, and the newest copy was pruned at once).
    for (let i = 0; i < 14; i++) {
      await Deno.writeTextFile(path, `copy ${i}`);
      moved.push(moveAside(path, { keep: 3 })!);
    }
    const kept = [...Deno.readDirSync(dir)].map((e) => `${dir}/${e.name}`).sort();
    assert.deepEqual(kept, moved.slice(-3).sort());
    for (const m of moved.slice(-3)) {
      assert.equal(await Deno.readTextFile(m), `copy ${moved.indexOf(m)}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("collectGarbage: a full collection on demand shrinks the heap", () => {
  let junk: unknown[] | null = [];
  for (let i = 0; i < 300_000; i++) junk.push({ i, s: `item ${i}` });
  const before = Deno.memoryUsage().heapUsed;
  junk = null;
  assert.equal(collectGarbage(), true);
  assert.ok(Deno.memoryUsage().heapUsed < before - 5e6, "the garbage is gone");
});
