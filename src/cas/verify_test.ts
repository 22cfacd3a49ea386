import assert from "node:assert/strict";
import { cacheLayout, CasStore } from "./store.ts";
import { repair, verify } from "./verify.ts";

Deno.test("cache verify/repair: bad chunk files and a damaged index, as fields", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cas-verify-" });
  try {
    assert.equal((await verify({ dir: `${dir}/none` })).state, "absent");
    const store = await CasStore.open({ dir, maxSize: 1 << 20 });
    const hashes: string[] = [];
    for (let i = 0; i < 5; i++) {
      hashes.push(await store.put(new TextEncoder().encode(`chunk ${i} `.repeat(100))));
    }
    const victim = store.chunkPath(hashes[2]);
    await store.close();

    const ok = await verify({ dir });
    assert.deepEqual([ok.state, ok.chunks, ok.badChunks], ["ok", 5, []]);
    assert.equal(ok.index?.status, "ok");

    const bytes = await Deno.readFile(victim);
    bytes[0] ^= 0xff;
    await Deno.writeFile(victim, bytes);
    const bad = await verify({ dir });
    assert.equal(bad.state, "damaged");
    assert.deepEqual(bad.badChunks, [victim]);

    const fixed = await repair({ dir });
    assert.deepEqual([fixed.state, fixed.was, fixed.deletedBad, fixed.chunks], [
      "repaired",
      "damaged",
      1,
      4,
    ]);
    assert.equal((await verify({ dir })).state, "ok");

    await Deno.writeFile(`${cacheLayout(dir).index}/data.mdb`, new Uint8Array(4096));
    const idx = await verify({ dir });
    assert.equal(idx.state, "damaged");
    assert.equal(idx.index?.status, "damaged");
    const rebuilt = await repair({ dir });
    assert.equal(rebuilt.state, "repaired");
    assert.ok(rebuilt.opened?.rebuiltBecause);
    assert.equal((await verify({ dir })).chunks, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
