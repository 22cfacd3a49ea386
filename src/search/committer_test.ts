import assert from "node:assert/strict";
import { runCommitter, SearchCommitError, SearchIndex } from "./mod.ts";
import { ids, track, withTempDir } from "./testdata/helpers.ts";
import { syntheticTracks } from "./testdata/synthetic.ts";

Deno.test("shutdown flushes search index", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.snapshot`;
    const index = SearchIndex.create(path);
    let generation = 0;
    const controller = new AbortController();
    // An interval far longer than the test: only the shutdown flush can write the snapshot.
    const task = runCommitter(index, {
      intervalMs: 3_600_000,
      signal: controller.signal,
      generation: () => generation,
    });
    await index.indexAll(syntheticTracks(2000, 8));
    index.indexFile(track(9001, { title: "Last Before Shutdown" }));
    generation = 17;
    controller.abort();
    await task;
    assert.equal(index.dirty, false);
    const reopened = await SearchIndex.open(path, { generation: 17 });
    assert.equal(reopened.size, 2001);
    assert.deepEqual(ids(reopened.search("last before shutdown")), [9001]);
  });
});

Deno.test("committer commits changes and new generations while running", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const index = SearchIndex.create(path);
    let generation = 1;
    const controller = new AbortController();
    const task = runCommitter(index, {
      intervalMs: 5,
      signal: controller.signal,
      generation: () => generation,
    });
    const waitFor = async (what: string, pred: () => boolean) => {
      const deadline = Date.now() + 30_000;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`committer did not ${what}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    try {
      index.indexFile(track(1, { title: "Periodic" }));
      await waitFor("commit a change", () => !index.dirty);
      assert.equal((await SearchIndex.open(path, { generation: 1 })).size, 1);
      generation = 2;
      await waitFor("commit a new generation", () => index.generation === 2);
      assert.equal((await SearchIndex.open(path)).generation, 2);
    } finally {
      controller.abort();
      await task;
    }
  });
});

Deno.test("committer rejects when a commit fails", async () => {
  await withTempDir(async (dir) => {
    const index = SearchIndex.create(`${dir}/missing-dir/s`);
    index.indexFile(track(1));
    const controller = new AbortController();
    await assert.rejects(
      runCommitter(index, { intervalMs: 1, signal: controller.signal }),
      SearchCommitError,
    );
    controller.abort();
    await assert.rejects(
      runCommitter(index, { intervalMs: 1, signal: controller.signal }),
      SearchCommitError,
      "the shutdown flush fails loudly too",
    );
  });
});
