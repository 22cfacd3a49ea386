import assert from "node:assert/strict";
import { EMPTY_TREE_STATS, VirtualTree } from "../fs/mod.ts";
import { Database, type FileUpsert } from "../library/mod.ts";
import { TreeRowsKeeper, treeShape } from "./tree_rows.ts";

function files(from: number, n: number, album = "Album"): FileUpsert[] {
  return Array.from({ length: n }, (_, i) => ({
    originId: 1,
    relPath: `A/${album}/${from + i}.flac`,
    ext: "flac",
    size: 1000 + from + i,
    mtimeMs: 1.7e12,
    tags: { artist: "A", album, title: `T${from + i}`, track: i + 1, year: 2000 },
  }));
}

function keeperOf(db: Database, tree: VirtualTree, idle: () => boolean): TreeRowsKeeper {
  return new TreeRowsKeeper({
    db,
    tree,
    shape: treeShape(undefined, ["/music"]),
    valid: undefined,
    idle,
  });
}

async function withLibrary(fn: (db: Database, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const db = Database.open(`${dir}/library.db`);
  try {
    db.ensureOrigin("/music");
    await fn(db, dir);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every stored row: "parent/name ino size nlink". */
function stored(db: Database, parent = 1, out = new Set<string>()): Set<string> {
  for (const r of db.treeChildren(parent)) {
    out.add(`${parent}/${r.name} ${r.ino} ${r.size} ${r.nlink}`);
    if (r.kind === 0) stored(db, r.ino, out);
  }
  return out;
}

function rowsOf(tree: VirtualTree): Set<string> {
  return new Set(
    [...tree.allRows()].map((r) => `${r.parent}/${r.name} ${r.ino} ${r.size} ${r.nlink}`),
  );
}

Deno.test("tree rows keeper: a dump when stale, deltas per batch, a dump again after a big batch, drop when idle", async () => {
  await withLibrary(async (db) => {
    db.applyBatch({ files: files(1, 5) });
    const origins = db.origins();
    const tree = new VirtualTree({
      origins,
      uid: 0,
      gid: 0,
      tracks: db.allTracks(),
      stored: {
        source: db,
        stats: EMPTY_TREE_STATS,
        content: () => ({
          tracks: db.allTracks(),
          covers: db.covers(),
          names: db.names(),
          generation: db.generation,
        }),
      },
    });
    let scanning = false;
    const keeper = keeperOf(db, tree, () => !scanning);
    try {
      assert.equal(keeper.valid, false);
      assert.equal(await keeper.dump(), true);
      assert.equal(keeper.valid, true);
      assert.equal(db.treeStamp()?.generation, db.generation);
      assert.deepEqual(stored(db), rowsOf(tree));

      // A small batch: its rows are stored with it, stamped.
      tree.apply(db.applyBatch({ files: [{ ...files(6, 1)[0], size: 7777 }] }));
      keeper.saveNames(tree.takeNameChanges());
      assert.equal(keeper.valid, true);
      assert.equal(db.treeStamp()?.generation, db.generation);
      assert.deepEqual(stored(db), rowsOf(tree));

      // A big batch (a scan's): the rows wait for a dump, unstamped meanwhile.
      scanning = true;
      tree.apply(db.applyBatch({ files: files(100, 1500, "Big") }));
      keeper.saveNames(tree.takeNameChanges());
      assert.equal(keeper.valid, false);
      assert.notEqual(db.treeStamp()?.generation, db.generation);
      scanning = false;
      assert.equal(await keeper.dump(), true);
      assert.deepEqual(stored(db), rowsOf(tree));

      // Idle: the tree is dropped, the rows serve, a change builds it again.
      keeper.dropWhenIdle(1, () => true);
      const until = Date.now() + 5000;
      while (tree.loaded && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.equal(tree.loaded, false, "dropped");
      assert.equal(tree.stats().tracks, 1506);
      const change = db.applyBatch({ remove: [{ originId: 1, relPath: "A/Album/1.flac" }] });
      assert.deepEqual(tree.apply(change), [], "nothing to tell before the tree is built");
      await tree.ensureLoaded();
      assert.equal(tree.stats().tracks, 1505);
    } finally {
      await keeper.stop();
    }
  });
});

Deno.test("tree rows keeper: a daemon stopped right after a big scan stores the rows at shutdown, within its budget", async () => {
  await withLibrary(async (db) => {
    const tree = new VirtualTree({ origins: db.origins(), uid: 0, gid: 0, tracks: [] });
    let scanning = true;
    const keeper = keeperOf(db, tree, () => !scanning);
    tree.apply(db.applyBatch({ files: files(1, 1500, "Big") }));
    keeper.saveNames(tree.takeNameChanges());
    scanning = false;
    assert.notEqual(db.treeStamp()?.generation, db.generation);
    await keeper.stop(5000);
    assert.equal(db.treeStamp()?.generation, db.generation, "stored at shutdown");
    assert.deepEqual(stored(db), rowsOf(tree));

    // No budget: nothing is written.
    tree.recordRows(true);
    tree.apply(db.applyBatch({ files: files(2000, 1500, "Bigger") }));
    const again = keeperOf(db, tree, () => false);
    await again.stop();
    assert.notEqual(db.treeStamp()?.generation, db.generation);
  });
});

Deno.test("tree rows keeper: memory is given back once requests pause, not while they come", async () => {
  await withLibrary(async (db) => {
    const tree = new VirtualTree({ origins: db.origins(), uid: 0, gid: 0, tracks: [] });
    let requests = 0;
    const released: number[] = [];
    const keeper = new TreeRowsKeeper({
      db,
      tree,
      shape: treeShape(undefined, ["/music"]),
      valid: undefined,
      idle: () => true,
      release: () => released.push(requests),
    });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      // Busy: every tick sees a request more than the last (whatever the timers do meanwhile).
      let busy = true;
      keeper.dropWhenIdle(1000, () => false, () => (busy ? ++requests : requests));
      await sleep(1500); // ticks every 250 ms
      assert.deepEqual(released, [], "nothing released while requests come");
      assert.ok(requests >= 3, `ticks ran (${requests})`);
      busy = false;
      const until = Date.now() + 3000;
      while (released.length === 0 && Date.now() < until) await sleep(50);
      assert.deepEqual(released, [requests], "released at the first calm tick");
    } finally {
      await keeper.stop();
    }
  });
});
