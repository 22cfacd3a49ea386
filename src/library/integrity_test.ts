import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Database, DatabaseCorruptedError, DatabaseWriteError, openLibraryDatabase } from "./db.ts";
import { checkSources, integrityProblems, trackProblems } from "./integrity.ts";
import type { TrackRecord } from "./types.ts";

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-integrity-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A checkpointed database of `n` tracks `Album/NNN Song.flac`, in rel_path order. */
function makeDb(path: string, n: number): void {
  const db = Database.open(path);
  const o = db.ensureOrigin("/music");
  db.applyBatch({
    files: Array.from({ length: n }, (_, i) => ({
      originId: o.id,
      relPath: `Album/${String(i).padStart(3, "0")} Song.flac`,
      ext: "flac",
      size: 1000 + i,
      mtimeMs: 1_700_000_000_000,
      tags: { title: `Song ${i}`, artist: "Artist" },
    })),
  });
  db.checkpoint();
  db.close();
}

/** Replace the first occurrence of `from` in the file's bytes by `to` (same length). */
function patchBytes(path: string, from: string, to: string, occurrence = 0): void {
  const bytes = Deno.readFileSync(path);
  const needle = new TextEncoder().encode(from);
  let found = -1;
  let seen = 0;
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    if (seen++ === occurrence) {
      found = i;
      break;
    }
  }
  assert.ok(found >= 0, `${from} is in the file`);
  bytes.set(new TextEncoder().encode(to), found);
  Deno.writeFileSync(path, bytes);
}

Deno.test("a path changed in the table only passes quick_check but not the integrity check", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    makeDb(path, 50);
    // The table row comes first in the file (page 2+), the index entry after it: change the
    // table's copy of track 7's path into track 8's, as a flipped bit can.
    const bytes = Deno.readFileSync(path);
    const text = new TextDecoder("latin1").decode(bytes);
    const occurrences = text.split("Album/007 Song.flac").length - 1;
    assert.equal(occurrences, 2, "the path is stored in the table and in the unique index");
    patchBytes(path, "Album/007 Song.flac", "Album/008 Song.flac", 0);
    const raw = new DatabaseSync(path, { readOnly: true });
    try {
      const quick = raw.prepare("PRAGMA quick_check").all().map((r) => Object.values(r)[0]);
      assert.deepEqual(quick, ["ok"], "quick_check does not see it (the issue's case)");
      assert.ok(integrityProblems(raw).length > 0, "the full check does");
    } finally {
      raw.close();
    }
    assert.throws(
      () => Database.openWithIntegrityCheck(path, { readOnly: true }),
      (e: unknown) =>
        e instanceof DatabaseCorruptedError && /integrity check failed/.test(e.message),
    );
    // The daemon's open sets it aside and starts over.
    const opened = openLibraryDatabase(path);
    try {
      assert.ok(opened.recovered);
      assert.equal(opened.fullRescan, true);
      assert.equal(opened.db.trackCount(), 0);
    } finally {
      opened.db.close();
    }
  });
});

Deno.test("references no constraint enforces are checked in SQL", async () => {
  await withDir((dir) => {
    // The tables without their foreign keys, as ours are.
    const conn = new DatabaseSync(`${dir}/raw.db`);
    try {
      conn.exec(`
        CREATE TABLE origins (id INTEGER PRIMARY KEY, path TEXT);
        CREATE TABLE files (id INTEGER PRIMARY KEY, origin_id INTEGER, rel_path TEXT);
        INSERT INTO origins VALUES (1, '/music'), (2, 'relative');
        INSERT INTO files VALUES (1, 1, 'A/01.mp3'), (3, 9, 'B/02.mp3');
      `);
      const problems = integrityProblems(conn);
      assert.ok(problems.some((p) => /track 3 belongs to origin 9/.test(p)), problems.join("\n"));
      assert.ok(problems.some((p) => /origin 2 has no absolute path/.test(p)));
      assert.ok(!problems.some((p) => /track 1/.test(p)), "a sound row is not reported");
      conn.exec("DELETE FROM files WHERE id = 3; DELETE FROM origins WHERE id = 2");
      assert.deepEqual(integrityProblems(conn), []);
    } finally {
      conn.close();
    }
  });
});

Deno.test("trackProblems: a source twice, paths that leave their root, bad sizes", () => {
  const t = (id: number, relPath: string, extra: Partial<TrackRecord> = {}): TrackRecord => ({
    id,
    originId: 1,
    relPath,
    ext: "mp3",
    size: 10,
    mtimeMs: 5,
    ...extra,
  });
  const problems = trackProblems([
    t(1, "A/01.mp3"),
    t(2, "A/01.mp3"),
    t(3, "B/02.mp3", { originId: 9 }),
    t(4, "../escape.mp3"),
    t(5, "/abs.mp3"),
    t(6, "C//x.mp3"),
    t(7, "C/03.mp3", { size: -4 }),
    t(8, "D/04.mp3", { ext: "MP3" }),
    t(9, "E/05.mp3"),
  ], new Set([1]));
  assert.equal(problems.length, 7, problems.join("\n"));
  assert.match(problems[0], /"A\/01.mp3" is listed more than once/);
  assert.match(problems[1], /track 3 belongs to origin 9/);
  for (const id of [4, 5, 6]) {
    assert.ok(problems.some((p) => p.startsWith(`track ${id} has a malformed path`)));
  }
  for (const id of [7, 8]) {
    assert.ok(problems.some((p) => p.startsWith(`track ${id} is malformed`)));
  }
  assert.deepEqual(trackProblems([t(1, "A/01.mp3"), t(9, "E/05.mp3")], new Set([1])), []);
});

Deno.test("a sound database passes, and its integrityCheck() says so", async () => {
  await withDir((dir) => {
    makeDb(`${dir}/library.db`, 20);
    const db = Database.openWithIntegrityCheck(`${dir}/library.db`);
    try {
      assert.deepEqual(db.integrityCheck(), []);
    } finally {
      db.close();
    }
  });
});

Deno.test("checkSources finds tracks whose file is gone or is no regular file", async () => {
  await withDir(async (dir) => {
    const root = `${dir}/lib`;
    await Deno.mkdir(`${root}/A/dir.mp3`, { recursive: true });
    await Deno.writeTextFile(`${root}/A/ok.mp3`, "x");
    await Deno.writeTextFile(`${root}/A/file`, "x");
    const track = (id: number, relPath: string, originId = 1): TrackRecord => ({
      id,
      originId,
      relPath,
      ext: "mp3",
      size: 1,
      mtimeMs: 0,
    });
    const tracks = [
      track(1, "A/ok.mp3"),
      track(2, "A/gone.mp3"),
      track(3, "A/dir.mp3"),
      track(4, "A/file/under-a-file.mp3"),
      track(5, "x.mp3", 2),
      track(6, "y.mp3", 3),
    ];
    const origins = new Map([[1, root], [2, `${dir}/no-such-root`]]);
    const r = await checkSources(tracks, origins, { concurrency: 2 });
    assert.deepEqual(r.missing.map((t) => t.id).sort(), [2, 3, 4]);
    assert.equal(r.checked, 4);
    assert.equal(r.skipped, 1, "a root that is not there is skipped, not judged");
    assert.deepEqual(r.unreachable, [2]);
  });
});

Deno.test("a frozen database reads, refuses writes, and unfreezes in place", async () => {
  await withDir((dir) => {
    const path = `${dir}/library.db`;
    makeDb(path, 5);
    const db = Database.openFrozen(path);
    try {
      assert.equal(db.frozen, true);
      assert.equal(db.allTracks().length, 5);
      assert.throws(
        () => db.ensureOrigin("/elsewhere"),
        (e: unknown) => e instanceof DatabaseWriteError && e.kind === "readonly",
      );
      assert.deepEqual(db.checkpoint(), { busy: false, walPages: 0, checkpointedPages: 0 });
      assert.equal(db.unfreeze(), true);
      assert.equal(db.frozen, false);
      assert.ok(db.ensureOrigin("/elsewhere").id > 0, "writes work on the same object");
      assert.equal(db.allTracks().length, 5);
    } finally {
      db.close();
    }
  });
});
