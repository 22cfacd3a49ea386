import assert from "node:assert/strict";
import {
  Database,
  DatabaseCorruptedError,
  DatabaseWriteError,
  type FileUpsert,
  openLibraryDatabase,
  SCHEMA_VERSION,
} from "./db.ts";
import { type PackedTreeRows, TREE_ROW_WIDTH, type TreeRow, TreeRowKind } from "./tree_rows.ts";
import { DatabaseSync } from "node:sqlite";

function upserts(originId: number, n: number, prefix = "a"): FileUpsert[] {
  return Array.from({ length: n }, (_, i) => ({
    originId,
    relPath: `${prefix}/${String(i).padStart(5, "0")} track with a longish name.mp3`,
    ext: "mp3",
    size: 1000 + i,
    mtimeMs: 1_700_000_000_000 + i,
    tags: {
      artist: `Artist ${i % 50}`,
      album: `Album ${i % 200}`,
      title: `Title ${i}`,
      track: (i % 12) + 1,
      year: 1990 + (i % 30),
      genre: "Rock",
      compilation: i % 7 === 0,
    },
  }));
}

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-db-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Overwrite one whole page in the middle of the file with 0xFF. */
function damageMiddlePage(path: string): void {
  const size = Deno.statSync(path).size;
  const page = 4096;
  const at = Math.floor(size / page / 2) * page;
  const f = Deno.openSync(path, { write: true });
  try {
    f.seekSync(at, Deno.SeekMode.Start);
    f.writeSync(new Uint8Array(page).fill(0xff));
  } finally {
    f.close();
  }
}

function filledDatabase(path: string, n = 3000): void {
  const db = Database.open(path);
  const o = db.ensureOrigin("/music");
  db.applyBatch({ files: upserts(o.id, n) });
  db.checkpoint();
  db.close();
}

Deno.test("sqlite integrity check detects corruption", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    filledDatabase(path);
    // Sound before the damage, so the throw below is caused by it.
    Database.openWithIntegrityCheck(path).close();
    damageMiddlePage(path);
    assert.throws(() => Database.openWithIntegrityCheck(path), (e: unknown) => {
      assert.ok(e instanceof DatabaseCorruptedError, String(e));
      assert.equal(e.name, "DatabaseCorruptedError");
      assert.match(e.message, /^Cannot open database .*library\.db: /);
      return true;
    });
  });
});

Deno.test("integrity check rejects a file that is not a database", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    Deno.writeTextFileSync(path, "this is a text file, not SQLite\n".repeat(200));
    assert.throws(() => Database.openWithIntegrityCheck(path), (e: unknown) => {
      assert.ok(e instanceof DatabaseCorruptedError);
      assert.match(e.message, /file is not a database/);
      assert.ok(e.cause instanceof Error);
      return true;
    });
  });
});

Deno.test("openLibraryDatabase sets a corrupt database aside, keeping the newest 3", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    const first = openLibraryDatabase(path);
    assert.equal(first.fullRescan, true);
    assert.equal(first.recovered, undefined);
    first.db.ensureOrigin("/music");
    first.db.close();
    const again = openLibraryDatabase(path);
    assert.equal(again.fullRescan, false);
    again.db.close();

    const moved: string[] = [];
    for (let i = 0; i < 5; i++) {
      Deno.writeTextFileSync(path, `garbage ${i} `.repeat(500));
      const r = openLibraryDatabase(path);
      assert.ok(r.recovered, "a damaged database is reported");
      assert.equal(r.fullRescan, true);
      assert.match(r.recovered.movedTo, /library\.db\.corrupt-/);
      assert.equal(Deno.readTextFileSync(r.recovered.movedTo), `garbage ${i} `.repeat(500));
      moved.push(r.recovered.movedTo);
      // The fresh database works.
      assert.equal(r.db.trackCount(), 0);
      r.db.ensureOrigin("/music");
      r.db.close();
    }
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      n.includes(".corrupt-")
    );
    const kept = moved.slice(-3).map((p) => p.slice(dir.length + 1));
    assert.deepEqual(left.filter((n) => !/-(wal|shm)$/.test(n)).sort(), kept.sort());
  });
});

Deno.test("applyBatch reports added, changed and removed tracks and bumps the generation", async () => {
  await withDir((dir) => {
    const db = Database.open(`${dir}/library.db`);
    try {
      const o = db.ensureOrigin("/music");
      const g0 = db.generation;
      const files = upserts(o.id, 3);
      const r1 = db.applyBatch({ files, scan: { originId: o.id, seen: 3, parsed: 3 } });
      assert.equal(r1.added.length, 3);
      assert.equal(r1.generation, db.generation);
      assert.ok(db.generation > g0);
      const id0 = r1.added[0].id;
      assert.deepEqual(db.getTrack(id0), r1.added[0]);
      assert.equal(db.getTrack(id0)?.compilation, true);
      assert.equal(db.getTrack(id0)?.albumArtist, undefined, "missing tags stay undefined");

      const r2 = db.applyBatch({ files: [{ ...files[0], size: 5, tags: { title: "New" } }] });
      assert.deepEqual(r2.added, []);
      assert.equal(r2.changed.length, 1);
      assert.equal(r2.changed[0].id, id0, "an updated file keeps its id");
      assert.equal(db.getTrack(id0)?.title, "New");
      assert.equal(db.getTrack(id0)?.artist, undefined, "stale tags do not survive an update");

      const r3 = db.applyBatch({
        problems: [{
          originId: o.id,
          relPath: files[1].relPath,
          reason: "broken",
          size: 1,
          mtimeMs: 2,
        }],
        remove: [{ originId: o.id, relPath: files[2].relPath }],
      });
      assert.deepEqual(
        r3.removed.map((t) => t.relPath).sort(),
        [files[1].relPath, files[2].relPath].sort(),
      );
      assert.equal(r3.problemsChanged, true);
      assert.equal(db.trackCount(), 1);
      assert.deepEqual(db.problems(), [{
        originId: o.id,
        relPath: files[1].relPath,
        reason: "broken",
      }]);
      assert.equal(db.knownProblems(o.id).get(files[1].relPath)?.kind, "problem");
      assert.deepEqual(db.knownFiles(o.id, [files[1].relPath]), [undefined]);

      // The broken file was fixed: it becomes a track again, with a new id (never a reused one).
      const r4 = db.applyBatch({ files: [files[1]] });
      assert.equal(r4.added.length, 1);
      assert.ok(r4.added[0].id > r1.added[2].id);
      assert.equal(r4.problemsChanged, true);
      assert.deepEqual(db.problems(), []);

      const cover = { originId: o.id, dir: "a", relPath: "a/cover.jpg", size: 9, mtimeMs: 1 };
      assert.deepEqual(db.applyBatch({ covers: [cover] }).covers, [{ ...cover, ext: "jpg" }]);
      assert.deepEqual(
        db.applyBatch({ covers: [cover] }).covers,
        [],
        "an unchanged cover is no change",
      );
      assert.deepEqual(db.covers(), [{ ...cover, ext: "jpg" }]);
      assert.deepEqual(
        db.applyBatch({ removeCovers: [{ originId: o.id, dir: "a" }] }).removedCovers,
        [
          { originId: o.id, dir: "a" },
        ],
      );
      assert.deepEqual(db.covers(), []);
    } finally {
      db.close();
    }
  });
});

Deno.test("track ids are never reused after removal", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    let db = Database.open(path);
    const o = db.ensureOrigin("/music");
    const [f] = upserts(o.id, 1);
    const first = db.applyBatch({ files: [f] }).added[0].id;
    db.applyBatch({ remove: [{ originId: o.id, relPath: f.relPath }] });
    db.close();
    db = Database.open(path);
    try {
      const second = db.applyBatch({ files: [f] }).added[0].id;
      assert.notEqual(second, first);
      assert.ok(second > first);
    } finally {
      db.close();
    }
  });
});

Deno.test("scan checkpoint: an unfinished scan is resumed with its counters", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    let db = Database.open(path);
    const o = db.ensureOrigin("/music");
    assert.deepEqual(db.beginScan(o.id), { resumed: false, committedBefore: 0 });
    db.applyBatch({ files: upserts(o.id, 4), scan: { originId: o.id, seen: 10, parsed: 4 } });
    db.close();
    db = Database.open(path);
    try {
      assert.deepEqual(db.beginScan(o.id), { resumed: true, committedBefore: 4 });
      const g = db.generation;
      db.applyBatch({ scan: { originId: o.id, seen: 11, parsed: 4 } });
      db.finishScan(o.id);
      assert.equal(db.generation, g, "scan bookkeeping is not a library change");
      const c = db.scanCheckpoint(o.id);
      assert.ok(c?.finishedMs !== undefined);
      assert.equal(c.resumes, 1);
      assert.deepEqual(db.beginScan(o.id), { resumed: false, committedBefore: 0 });
    } finally {
      db.close();
    }
  });
});

Deno.test("a database from a newer schema is refused, not downgraded", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    const raw = new DatabaseSync(path);
    raw.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    assert.throws(() => Database.open(path), /newer than this musicfs/);
  });
});

Deno.test("a write to a read-only database fails with a clear error", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    filledDatabase(path, 10);
    const db = Database.open(path, { readOnly: true });
    try {
      assert.equal(db.trackCount(), 10);
      assert.throws(() => db.ensureOrigin("/other"), (e: unknown) => {
        assert.ok(e instanceof DatabaseWriteError);
        assert.equal(e.kind, "readonly");
        assert.match(e.message, /^Cannot write to database: /);
        return true;
      });
    } finally {
      db.close();
    }
  });
});

function mountTmpfs(dir: string, size: string): boolean {
  const r = new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
    stderr: "null",
  })
    .outputSync();
  return r.success;
}

function unmount(dir: string): void {
  new Deno.Command("umount", { args: [dir], stderr: "null" }).outputSync();
}

Deno.test({
  name: "a full disk fails the batch cleanly and loses nothing committed",
  // Needs root to mount a small tmpfs.
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withDir((dir) => {
      assert.ok(mountTmpfs(dir, "2m"), "mount tmpfs");
      try {
        const path = `${dir}/library.db`;
        const db = Database.open(path);
        const o = db.ensureOrigin("/music");
        db.applyBatch({ files: upserts(o.id, 200, "kept") });
        const filler = Deno.openSync(`${dir}/filler`, { write: true, create: true });
        try {
          const chunk = new Uint8Array(64 * 1024);
          try {
            for (;;) filler.writeSync(chunk);
          } catch (e) {
            assert.ok(e instanceof Error && /No space left|ENOSPC/i.test(e.message), String(e));
          }
        } finally {
          filler.close();
        }
        const before = db.generation;
        assert.throws(() => db.applyBatch({ files: upserts(o.id, 5000, "lost") }), (e: unknown) => {
          assert.ok(e instanceof DatabaseWriteError, String(e));
          assert.ok(e.kind === "full" || e.kind === "io", e.kind);
          assert.match(e.message, /^Cannot write to database: /);
          return true;
        });
        assert.equal(db.trackCount(), 200);
        assert.equal(db.generation, before);
        Deno.removeSync(`${dir}/filler`);
        // With room again the same connection carries on.
        db.applyBatch({ files: upserts(o.id, 50, "later") });
        assert.equal(db.trackCount(), 250);
        db.close();
        const reopened = Database.openWithIntegrityCheck(path);
        try {
          assert.equal(reopened.trackCount(), 250);
          assert.deepEqual(reopened.quickCheck(), []);
        } finally {
          reopened.close();
        }
      } finally {
        unmount(dir);
      }
    });
  },
});

Deno.test("schema 3: stored names survive a reopen and go with their file", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    let db = Database.open(path);
    const o = db.ensureOrigin("/music");
    const res = db.applyBatch({ files: upserts(o.id, 3) });
    const [a, b] = res.added;
    db.saveNames([
      { fileId: a.id, dir: 77, name: "01 - Same.mp3" },
      { fileId: b.id, dir: 77, name: "01 - Same (2).mp3" },
      { fileId: b.id, dir: 78, name: "x" },
      // A file that does not exist gets no row.
      { fileId: 999_999, dir: 77, name: "ghost" },
    ]);
    const gen = db.generation;
    db.saveNames([{ fileId: b.id, dir: 78, name: null }]);
    assert.equal(db.generation, gen, "names are not a library change");
    db.close();
    db = Database.open(path);
    assert.deepEqual(db.names().sort((x, y) => x.fileId - y.fileId), [
      { fileId: a.id, dir: 77, name: "01 - Same.mp3" },
      { fileId: b.id, dir: 77, name: "01 - Same (2).mp3" },
    ]);
    // A removed source frees its names (a trigger, in the same transaction as the removal).
    db.applyBatch({ remove: [{ originId: o.id, relPath: a.relPath }] });
    assert.deepEqual(db.names(), [{ fileId: b.id, dir: 77, name: "01 - Same (2).mp3" }]);
    db.removeOrigin(o.id);
    assert.deepEqual(db.names(), []);
    db.close();
  });
});

Deno.test("schema 3: playlists are stored, changed only when they differ, removed", async () => {
  await withDir((dir) => {
    const db = Database.open(`${dir}/library.db`);
    const o = db.ensureOrigin("/music");
    const p = {
      originId: o.id,
      relPath: "l/a.m3u",
      size: 5,
      mtimeMs: 9,
      entries: ["/music/x.mp3"],
    };
    assert.equal(db.applyBatch({ playlists: [p] }).playlists.length, 1);
    assert.equal(db.applyBatch({ playlists: [p] }).playlists.length, 0, "unchanged");
    assert.deepEqual(db.playlists(), [p]);
    assert.deepEqual(db.knownPlaylists(o.id, "l"), new Map([["l/a.m3u", { size: 5, mtimeMs: 9 }]]));
    const empty = { ...p, relPath: "b.m3u8", entries: [] };
    db.applyBatch({ playlists: [empty] });
    assert.deepEqual(db.playlists()[0].entries, []);
    const r = db.applyBatch({ removePlaylists: [{ originId: o.id, relPath: "l/a.m3u" }] });
    assert.deepEqual(r.removedPlaylists, [{ originId: o.id, relPath: "l/a.m3u" }]);
    assert.deepEqual(db.playlists().map((x) => x.relPath), ["b.m3u8"]);
    db.close();
  });
});

Deno.test("a schema-2 database migrates to the current schema keeping its tracks", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    const db = Database.open(path);
    const o = db.ensureOrigin("/music");
    db.applyBatch({ files: upserts(o.id, 2) });
    db.close();
    const raw = new DatabaseSync(path);
    raw.exec("DROP TRIGGER files_free_names; DROP TABLE names; DROP TABLE playlists");
    raw.exec("DROP TABLE tree_entries; DROP TABLE tree_meta");
    raw.exec("PRAGMA user_version = 2");
    raw.close();
    const again = Database.open(path);
    assert.equal(again.allTracks().length, 2);
    assert.deepEqual(again.names(), []);
    assert.deepEqual(again.playlists(), []);
    assert.equal(again.treeStamp(), undefined);
    assert.deepEqual(again.treeChildren(2), []);
    again.close();
    const check = new DatabaseSync(path);
    assert.equal(
      (check.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      SCHEMA_VERSION,
    );
    check.close();
  });
});

Deno.test("tree rows: rows and packed rows, many to a statement, replace by (parent, name); a dump clears first", async () => {
  await withDir((dir) => {
    const db = Database.open(`${dir}/library.db`);
    try {
      const row = (parent: number, i: number, size = i): TreeRow => ({
        parent,
        name: `${String(i).padStart(3, "0")} é.mp3`,
        ino: 2 ** 52 + i,
        kind: TreeRowKind.track,
        ref: i,
        path: null,
        size,
        mtimeMs: 1.7e12 + i,
        nlink: 4,
      });
      // 250 rows one by one; 230 packed: two statements of 100, then 30 one by one.
      const upserts = Array.from({ length: 250 }, (_, i) => row(10, i));
      const packed: PackedTreeRows = { values: [], count: 230 };
      for (let i = 0; i < 230; i++) {
        const r = row(11, i);
        packed.values.push(r.parent, r.name, r.ino, r.kind, r.ref, r.path, r.size, r.mtimeMs, 4);
      }
      packed.values.push(...Array(TREE_ROW_WIDTH).fill(0)); // past count: ignored
      const stamp = { generation: db.generation, layout: "x", stats: "{}" };
      db.saveTree({ clear: true, upserts, packed, deletes: [], stamp });
      assert.equal(db.treeChildren(10).length, 250);
      assert.deepEqual(
        db.treeChildren(11).sort((a, b) => a.ref - b.ref),
        Array.from({ length: 230 }, (_, i) => row(11, i)),
      );
      assert.deepEqual(db.treeEntryOf(2 ** 52 + 229), row(10, 229));
      assert.equal(db.treeChildren(0).length, 0);
      // The same keys again replace, in both forms.
      db.saveTree({
        upserts: Array.from({ length: 120 }, (_, i) => row(10, i, 7)),
        deletes: [[11, "000 é.mp3"]],
      });
      const ten = db.treeChildren(10);
      assert.equal(ten.length, 250);
      assert.equal(ten.filter((r) => r.size === 7).length, 120);
      assert.equal(db.treeChildren(11).length, 229);
      assert.equal(db.treeStamp(), undefined); // a part without a stamp unstamps
      db.saveTree({ clear: true, upserts: [row(12, 1)], deletes: [] });
      assert.equal(db.treeChildren(10).length, 0);
      assert.equal(db.treeChildren(12).length, 1);
    } finally {
      db.close();
    }
  });
});
