import assert from "node:assert/strict";
import type { TrackRecord } from "../library/types.ts";
import { INO, type Invalidation, VirtualTree } from "./tree.ts";
import { MusicOps } from "./ops.ts";

function setup() {
  const tracks: TrackRecord[] = Array.from({ length: 5 }, (_, i) => ({
    id: i + 1,
    originId: 1,
    relPath: `A/0${i} Song ${i}.mp3`,
    ext: "mp3",
    size: 10,
    mtimeMs: 0,
    artist: "Artist",
    album: "Album",
    title: `Song ${i}`,
  }));
  const tree = new VirtualTree({ origins: [{ id: 1, path: "/music" }], tracks, uid: 0, gid: 0 });
  const invalidations: Invalidation[] = [];
  const ops = new MusicOps({
    tree,
    search: () => Promise.resolve([1, 2, 3]),
    invalidate: (inv) => invalidations.push(...inv),
  });
  return { tree, ops, invalidations };
}

Deno.test("/.search: a query directory the kernel holds survives 200 newer queries", async () => {
  const { ops, invalidations } = setup();
  const first = await ops.lookup(INO.search, "held query");
  assert.ok(first);
  const ino = first.attr.ino;
  for (let i = 0; i < 200; i++) {
    const e = await ops.lookup(INO.search, `query ${i}`);
    // The kernel lets go of every other one at once.
    ops.forget(e!.attr.ino);
  }
  // Still listable: what opendir after a lookup does.
  const listing = await ops.readdir(ino);
  assert.equal(listing.length, 3);
  assert.equal((await ops.getattr(ino)).ino, ino);
  assert.ok(
    invalidations.some((i) => i.kind === "entry" && i.name === "held query"),
    "the kernel is asked to let go of its entry",
  );
  assert.ok(ops.searchDirs.kept <= 65, `${ops.searchDirs.kept} kept`);
  // Once the kernel forgets it, it goes.
  ops.forget(ino);
  await assert.rejects(ops.readdir(ino));
  assert.ok(ops.searchDirs.kept <= 64);
});

Deno.test("/.search: a query looked up again moves to the front and is not dropped", async () => {
  const { ops } = setup();
  const a = await ops.lookup(INO.search, "again");
  ops.forget(a!.attr.ino);
  for (let i = 0; i < 100; i++) {
    if (i % 10 === 0) {
      const e = await ops.lookup(INO.search, "again");
      ops.forget(e!.attr.ino);
    }
    const e = await ops.lookup(INO.search, `q${i}`);
    ops.forget(e!.attr.ino);
  }
  assert.equal((await ops.readdir(a!.attr.ino)).length, 3);
});
