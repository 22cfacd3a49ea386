import assert from "node:assert/strict";
import { Database } from "./db.ts";
import { repair, verify } from "./verify.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-library-verify-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("library verify: absent, ok with counts, damaged with the finding as a field", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/library.db`;
    assert.deepEqual(verify(path), { store: "library.db", path, state: "absent" });
    const db = Database.open(path);
    db.ensureOrigin("/music");
    db.checkpoint();
    db.close();
    const ok = verify(path);
    assert.equal(ok.state, "ok");
    assert.equal(ok.tracks, 0);
    assert.equal(ok.libraries, 1);
    assert.equal(typeof ok.generation, "number");

    await Deno.writeFile(
      path,
      new TextEncoder().encode("this is not a database at all".repeat(200)),
    );
    const bad = verify(path);
    assert.equal(bad.state, "damaged");
    assert.match(bad.damage!, /not a database/);
    assert.ok(!bad.damage!.includes(path), "the finding carries no path to strip");
  });
});

Deno.test("library repair: the daemon's recovery (moved aside, fresh db); a sound db is untouched", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/library.db`;
    const db = Database.open(path);
    db.ensureOrigin("/music");
    db.close();
    const untouched = repair(path);
    assert.equal(untouched.state, "ok");
    assert.equal(untouched.libraries, 1);

    await Deno.writeFile(path, new Uint8Array(8192).fill(0x42));
    await Deno.remove(`${path}-wal`).catch(() => {});
    await Deno.remove(`${path}-shm`).catch(() => {});
    const fixed = repair(path);
    assert.equal(fixed.state, "repaired");
    assert.match(fixed.movedTo!, /library\.db\.corrupt-/);
    assert.equal(fixed.libraries, 0);
    assert.equal((await Deno.stat(fixed.movedTo!)).size, 8192);
    assert.equal(verify(path).state, "ok");
  });
});
