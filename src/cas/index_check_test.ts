import assert from "node:assert/strict";
import { open } from "lmdb";
import { checkIndex, DB_NAMES, MAX_DBS } from "./index_check.ts";
import { CasStore } from "./store.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cas-check-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("checkIndex reports a healthy index with its counts", async () => {
  await withDir(async (dir) => {
    const store = await CasStore.open({ dir, maxSize: 1 << 20 });
    const h1 = await store.put(new Uint8Array(100));
    await store.put(new Uint8Array(50).fill(1));
    store.putChunkFor("f@1:1", 0, h1);
    store.putChunkFor("f@1:1", 1, h1);
    store.putChunkFor("g@1:1", 0, h1);
    await store.close();
    const r = await checkIndex(`${dir}/index`);
    assert.equal(r.status, "ok", JSON.stringify(r));
    assert.deepEqual({ ...r, ms: 0 }, { status: "ok", chunks: 2, bytes: 150, files: 3, ms: 0 });
  });
});

Deno.test("checkIndex reports an absent index without spawning", async () => {
  await withDir(async (dir) => {
    const r = await checkIndex(`${dir}/index`, { command: ["false"] });
    assert.deepEqual(r, { status: "absent" });
  });
});

Deno.test("checkIndex reports a foreign format marker as damaged", async () => {
  await withDir(async (dir) => {
    const env = open({ path: `${dir}/index`, maxDbs: MAX_DBS });
    await env.openDB({ name: DB_NAMES.meta }).put("format", 99);
    await env.close();
    const r = await checkIndex(`${dir}/index`);
    assert.equal(r.status, "damaged");
    assert.match(r.status === "damaged" ? r.reason : "", /format marker is 99, expected 1/);
  });
});

Deno.test("checkIndex reports a bad entry as damaged", async () => {
  await withDir(async (dir) => {
    await (await CasStore.open({ dir, maxSize: 1000 })).close();
    const env = open({ path: `${dir}/index`, maxDbs: MAX_DBS });
    await env.openDB({ name: DB_NAMES.chunks }).put("not-a-hash", [1, 2]);
    await env.close();
    const r = await checkIndex(`${dir}/index`);
    assert.equal(r.status, "damaged");
    assert.match(r.status === "damaged" ? r.reason : "", /bad chunk key "not-a-hash"/);
  });
});

Deno.test("checkIndex reports a validator killed by a signal as damaged", async () => {
  await withDir(async (dir) => {
    await (await CasStore.open({ dir, maxSize: 1000 })).close();
    const r = await checkIndex(`${dir}/index`, {
      command: ["bash", "-c", "echo 'mdb.c: Assertion failed' >&2; kill -BUS $$"],
    });
    assert.equal(r.status, "damaged");
    assert.match(r.status === "damaged" ? r.reason : "", /crashed with SIGBUS: mdb.c: Assertion/);
  });
});
