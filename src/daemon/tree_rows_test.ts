import assert from "node:assert/strict";
import { Database, type TreeRow, TreeRowKind } from "../library/mod.ts";
import { TreeRowsKeeper } from "./tree_rows.ts";

type Rows = { upserts: TreeRow[]; deletes: [number, string][] };

/** The part of a tree the keeper uses, handing out the rows a test queues. */
function fakeTree(queued: Rows[]) {
  return {
    loaded: true,
    idleMs: 0,
    takeRows: (): Rows => queued.shift() ?? { upserts: [], deletes: [] },
    allRows: function* (): Generator<TreeRow> {},
    stats: () => ({}),
    recordRows: (_on: boolean) => {},
    unload: () => {},
  };
}

function rows(n: number, from = 0): Rows {
  const upserts: TreeRow[] = [];
  for (let i = from; i < from + n; i++) {
    upserts.push({
      parent: 1000 + (i % 7),
      name: `entry ${i}`,
      ino: 5000 + i,
      kind: TreeRowKind.dir,
      ref: 0,
      path: null,
      size: null,
      mtimeMs: 1,
      nlink: 2,
    });
  }
  return { upserts, deletes: [] };
}

Deno.test("tree rows: a scan's bulk batch is not stored row by row; small batches and idle ones are", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-tree-rows-" });
  const db = Database.open(`${dir}/library.db`);
  try {
    const queued: Rows[] = [];
    let scanning = true;
    const keeper = new TreeRowsKeeper({
      db,
      tree: fakeTree(queued) as unknown as ConstructorParameters<
        typeof TreeRowsKeeper
      >[0]["tree"],
      shape: "test",
      valid: db.generation,
      idle: () => !scanning,
    });
    try {
      // A watcher-sized batch during a scan: stored at once.
      queued.push(rows(10));
      keeper.saveNames([]);
      assert.equal(keeper.valid, true);
      assert.ok(db.treeEntry(1000, "entry 0"), "small batch stored");
      // A first scan's batch: not stored; the rows stop being a picture of the tree.
      queued.push(rows(5000, 10));
      keeper.saveNames([]);
      assert.equal(keeper.valid, false);
      assert.equal(db.treeEntry(1000 + (20 % 7), "entry 20"), undefined, "bulk batch not stored");
      // Idle: the same amount is an ordinary batch (nothing to defer to).
      const idleKeeper = new TreeRowsKeeper({
        db,
        tree: fakeTree([rows(5000, 10)]) as unknown as ConstructorParameters<
          typeof TreeRowsKeeper
        >[0]["tree"],
        shape: "test",
        valid: db.generation,
        idle: () => true,
      });
      scanning = false;
      idleKeeper.saveNames([]);
      assert.equal(idleKeeper.valid, true);
      assert.ok(db.treeEntry(1000 + (20 % 7), "entry 20"), "stored when no scan runs");
      await idleKeeper.stop();
    } finally {
      await keeper.stop();
    }
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
