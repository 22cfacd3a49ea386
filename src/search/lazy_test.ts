import assert from "node:assert/strict";
import { LazySearch, SearchIndex, SearchNotReadyError } from "./mod.ts";
import { ids, track, withTempDir } from "./testdata/helpers.ts";

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

Deno.test("lazy search waits for the load, bounded", async () => {
  const load = deferred<SearchIndex>();
  let calls = 0;
  const lazy = new LazySearch(() => {
    calls++;
    return load.promise;
  });
  assert.equal(lazy.state, "idle");
  lazy.startLoading();
  lazy.startLoading();
  assert.equal(lazy.state, "loading");
  await assert.rejects(lazy.search("anything", 10, { timeoutMs: 5 }), (e: unknown) => {
    assert.ok(e instanceof SearchNotReadyError);
    assert.equal(e.state, "loading");
    assert.equal(e.message, "Search index is not ready: still loading after 5 ms");
    return true;
  });
  lazy.indexFile(track(1, { title: "Queued Song" }));
  lazy.indexFile(track(2, { title: "Queued Then Removed" }));
  lazy.remove(2);
  assert.equal(lazy.dirty, false, "nothing to commit before the load");
  assert.equal(await lazy.commit(3), undefined);
  const waiting = lazy.search("queued", 10, { timeoutMs: 60_000 });
  const index = SearchIndex.create("/nonexistent");
  index.indexFile(track(3, { title: "Loaded Queued" }));
  load.resolve(index);
  assert.deepEqual(ids(await waiting).sort(), [1, 3], "queued changes applied on load");
  assert.equal(lazy.state, "ready");
  assert.equal(lazy.index, index);
  lazy.indexFile(track(4, { title: "Later Queued" }));
  assert.deepEqual(ids(await lazy.search("later")), [4]);
  assert.equal(calls, 1, "loads once");
});

Deno.test("lazy search reports a failed load and retries it", async () => {
  let fail = true;
  const lazy = new LazySearch(() => {
    if (fail) throw new Error("disk on fire");
    return Promise.resolve(SearchIndex.create("/nonexistent"));
  });
  lazy.indexFile(track(7, { title: "Survivor" }));
  await assert.rejects(lazy.search("x", 10, { timeoutMs: 60_000 }), (e: unknown) => {
    assert.ok(e instanceof SearchNotReadyError);
    assert.equal(e.state, "failed");
    assert.equal(e.message, "Search index is not ready: loading failed (disk on fire)");
    assert.equal((e.cause as Error).message, "disk on fire");
    return true;
  });
  assert.equal(lazy.state, "failed");
  fail = false;
  assert.deepEqual(ids(await lazy.search("survivor", 10, { timeoutMs: 60_000 })), [7]);
});

Deno.test("lazy search from a damaged snapshot serves a rebuilt index", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    await Deno.writeFile(path, new TextEncoder().encode("not a snapshot"));
    const lazy = LazySearch.fromSnapshot(path, {
      rebuildFrom: () => [track(1, { title: "From The Database" })],
      generation: 9,
    });
    lazy.startLoading();
    assert.deepEqual(ids(await lazy.search("database", 10, { timeoutMs: 60_000 })), [1]);
    assert.equal(lazy.generation, 9);
    assert.equal((await SearchIndex.open(path, { generation: 9 })).size, 1);
  });
});
