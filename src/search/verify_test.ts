import assert from "node:assert/strict";
import { Database, type FileUpsert } from "../library/mod.ts";
import { SearchIndex } from "./search_index.ts";
import { repair, verify } from "./verify.ts";

function upserts(originId: number, n: number): FileUpsert[] {
  return Array.from({ length: n }, (_, i) => ({
    originId,
    relPath: `a/${i}.mp3`,
    ext: "mp3",
    size: 100 + i,
    mtimeMs: 1_700_000_000_000 + i,
    tags: { artist: `Artist ${i % 5}`, title: `Title ${i}` },
  }));
}

Deno.test("search verify/repair: stale after a kill -9 is no damage; repair rebuilds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-search-verify-" });
  try {
    const dbPath = `${dir}/library.db`;
    const snap = `${dir}/search.snapshot`;
    assert.equal((await verify(snap)).state, "absent");
    const db = Database.open(dbPath);
    db.applyBatch({ files: upserts(db.ensureOrigin("/m").id, 30) });
    const index = SearchIndex.create(snap, { generation: db.generation });
    await index.indexAll(db.allTracks());
    await index.commit();
    index.close();
    const ok = await verify(snap, { libraryGeneration: db.generation });
    assert.deepEqual([ok.state, ok.documents, ok.generation], ["ok", 30, db.generation]);

    // The database moves on and the snapshot is not committed (what a kill -9 leaves).
    db.applyBatch({ files: upserts(db.ensureOrigin("/n").id, 5) });
    const stale = await verify(snap, { libraryGeneration: db.generation });
    assert.equal(stale.state, "stale");
    assert.equal(stale.libraryGeneration, db.generation);
    assert.equal(
      (await verify(snap, { libraryGeneration: db.generation, live: true })).state,
      "ok",
    );
    db.close();

    const fixed = await repair(snap, { libraryPath: dbPath });
    assert.deepEqual([fixed.state, fixed.was, fixed.documents], ["repaired", "stale", 35]);

    // Damage: a structured problem, not a message to parse.
    const bytes = await Deno.readFile(snap);
    // Garbage over the page of the stamped values (the first table's root page).
    bytes.fill(0xa5, 4096, 8192);
    await Deno.writeFile(snap, bytes);
    const bad = await verify(snap);
    assert.equal(bad.state, "damaged");
    assert.equal(bad.problem, "checksum");
    assert.ok(bad.damage && !bad.damage.includes(snap));
    assert.equal((await repair(snap, { libraryPath: dbPath })).state, "repaired");
    assert.equal((await verify(snap)).state, "ok");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
