import assert from "node:assert/strict";
import { BulkWriter } from "./bulk_writer.ts";
import { inspectSnapshot, LazySearch, SearchIndex } from "./mod.ts";
import { packChange, type PackedValue, unpackChanges } from "./packed.ts";
import { toDocument } from "./text.ts";
import { ids, track, withTempDir } from "./testdata/helpers.ts";

const many = (from: number, n: number, title = (i: number) => `Song ${i}`) =>
  Array.from({ length: n }, (_, k) => track(from + k, { title: title(from + k), artist: "Bulk" }));

Deno.test("a large batch is indexed by the worker, searchable, and committed with its generation", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.db`;
    const lazy = LazySearch.fromSnapshot(path, { generation: 0 });
    await lazy.ready();
    const tracks = many(1, 500);
    tracks[41] = track(42, { title: "Midnight Lantern", artist: "Beyoncé" });
    lazy.update(tracks);
    assert.ok(lazy.pendingBulk > 0, "sent to the worker");
    assert.equal(lazy.dirty, true);
    // A search waits for what was handed over before it.
    assert.deepEqual(ids(await lazy.search("midnight lantern")), [42]);
    // A change after a batch still out goes the same way, after it.
    lazy.remove(7);
    lazy.indexFile(track(9, { title: "Renamed Nine" }));
    await lazy.settled();
    assert.equal(lazy.pendingBulk, 0);
    assert.equal(lazy.index!.size, 499);
    assert.deepEqual(
      ids(await lazy.search("midnigt lantrn")),
      [42],
      "typos: words from the worker",
    );
    assert.deepEqual(ids(await lazy.search("beyonce")), [42], "diacritics folded");
    assert.deepEqual(ids(await lazy.search("lant")), [42], "prefix");
    assert.deepEqual(ids(await lazy.search("song 7")), [], "removed after the batch");
    assert.deepEqual(ids(await lazy.search("renamed")), [9]);
    // Small changes are applied here, and committed with the worker's.
    lazy.update([track(1000, { title: "Small Change" })]);
    assert.deepEqual(ids(await lazy.search("small change")), [1000]);
    const result = await lazy.commit(5);
    assert.equal(result?.generation, 5);
    assert.equal(result?.documentCount, 500);
    // Then the worker again, after a direct change (its counts start from the file).
    lazy.update(many(2000, 100));
    await lazy.commit(6);
    lazy.close();

    const reopened = await SearchIndex.open(path, { generation: 6 });
    try {
      assert.equal(reopened.size, 600, "counts stamped match the documents");
      assert.deepEqual(ids(reopened.search("midnigt")), [42]);
      assert.deepEqual(ids(reopened.search("small change")), [1000]);
      assert.equal(reopened.search("song 2050").map((r) => r.id)[0], 2050);
    } finally {
      reopened.close();
    }
    // The word list the worker kept matches the postings (the full check compares them).
    assert.equal((await inspectSnapshot(path)).documentCount, 600);
  });
});

Deno.test("the worker's batches are committed as they go: a crash keeps them, stamped stale", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.db`;
    const lazy = LazySearch.fromSnapshot(path, { generation: 3 });
    await lazy.ready();
    lazy.update(many(1, 300));
    await lazy.settled();
    // No commit of the searching side (a kill -9 now): the file holds the batch, counted, at
    // the generation last stamped; opening it against a newer library says stale, not damaged.
    const copy = `${dir}/copy.db`;
    Deno.copyFileSync(path, copy);
    for (const side of ["-wal", "-shm"]) {
      try {
        Deno.copyFileSync(path + side, copy + side);
      } catch { /* none */ }
    }
    lazy.close();
    const opened = await SearchIndex.open(copy, { generation: 3 });
    try {
      assert.equal(opened.size, 300);
    } finally {
      opened.close();
    }
    await assert.rejects(SearchIndex.open(copy, { generation: 4 }), /stale|generation/i);
  });
});

for (const [how, query] of [["answers with an error", ""], ["throws", "?throw"]]) {
  Deno.test(`a worker that ${how} hands its batches back: nothing is lost`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/search.db`;
      const index = await SearchIndex.openWithRecovery(path, { generation: 0 });
      const writer = new BulkWriter(index, {
        workerUrl: new URL(`./testdata/failing_index_worker.ts${query}`, import.meta.url),
      });
      try {
        assert.ok(index.releaseWrites());
        writer.send(many(1, 100).map((t) => [t.id, t]));
        writer.send([[5, null]]);
        await writer.drained();
        assert.equal(writer.usable, false);
        assert.equal(index.size, 99);
        assert.deepEqual(ids(index.search("song 50")).slice(0, 1), [50]);
        assert.equal(ids(index.search("song 5")).includes(5), false);
        // Later changes go straight to the index.
        writer.send([[200, track(200, { title: "After The Failure" })]]);
        assert.deepEqual(ids(index.search("failure")), [200]);
        await index.commit(1);
      } finally {
        writer.close();
        index.close();
      }
      const reopened = await SearchIndex.open(path, { generation: 1 });
      assert.equal(reopened.size, 100);
      reopened.close();
    });
  });
}

Deno.test("packed changes carry what the index reads of a track", () => {
  const t = track(3, {
    title: "Señor",
    artist: "A",
    albumArtist: "B",
    album: "C",
    genre: "D",
    year: 1999,
  });
  const packed: PackedValue[] = [];
  packChange(packed, 3, t);
  packChange(packed, 4, null);
  packChange(packed, 5, track(5, { relPath: "x/Untitled.mp3", title: undefined }));
  const [a, b, c] = unpackChanges(packed);
  assert.deepEqual(toDocument(a[1]!), toDocument(t));
  assert.deepEqual(b, [4, null]);
  assert.deepEqual(toDocument(c[1]!).title, "untitled");
});

Deno.test("while the background check holds the file, a large batch waits in the index itself", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.db`;
    const first = await SearchIndex.openWithRecovery(path, { generation: 1 });
    for (const t of many(1, 50)) first.indexFile(t);
    await first.commit(1);
    first.close();
    const lazy = LazySearch.fromSnapshot(path, { generation: 1, verify: true });
    const index = await lazy.ready();
    assert.equal(index.acceptsWriter, false, "the check holds the write lock");
    lazy.update(many(100, 200));
    assert.equal(lazy.pendingBulk, 0, "not sent to the worker");
    await index.checked;
    assert.equal(index.size, 250);
    assert.deepEqual(ids(await lazy.search("song 150")).slice(0, 1), [150]);
    // Once the check is over, large batches go to the worker again.
    lazy.update(many(1000, 100));
    assert.ok(lazy.pendingBulk > 0);
    await lazy.commit(2);
    lazy.close();
    assert.equal((await inspectSnapshot(path, { generation: 2 })).documentCount, 350);
  });
});
