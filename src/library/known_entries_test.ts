import assert from "node:assert/strict";
import { Database, type FileUpsert } from "./db.ts";
import { KnownEntries } from "./known_entries.ts";

function file(originId: number, relPath: string, size = 1): FileUpsert {
  return { originId, relPath, ext: "mp3", size, mtimeMs: 1.7e12, tags: { title: relPath } };
}

Deno.test("known entries: what the walk did not meet, over pages, within the scope only", () => {
  const db = Database.open(":memory:");
  try {
    const o = db.ensureOrigin("/music");
    const other = db.ensureOrigin("/other");
    // 4,500 files under "a" (three pages), neighbours of the scope's bounds, another origin.
    const inA = Array.from({ length: 4500 }, (_, i) => `a/${String(i).padStart(4, "0")} é.mp3`);
    const outside = ["a!x.mp3", "a0/x.mp3", "ab/x.mp3", "b/a/x.mp3", "a.mp3"];
    db.applyBatch({
      files: [...inA, ...outside].map((p) => file(o.id, p)).concat([file(other.id, "a/1.mp3")]),
    });
    const known = new KnownEntries(db, o.id, "a");
    assert.equal(known.any, true);
    // Half one by one, half as a walk batch's files (one query), with a path not stored.
    for (let i = 0; i < inA.length; i += 4) assert.equal(known.take(inA[i])?.kind, "track");
    const batch = inA.filter((_, i) => i % 4 === 2);
    const got = known.takeAll([...batch, "a/nope.mp3"]);
    assert.deepEqual(got.map((k) => k?.kind), [...batch.map(() => "track"), undefined]);
    assert.equal(known.take("a/new.mp3"), undefined);
    // A file added while the scan runs is its own, never "not met".
    db.applyBatch({ files: [file(o.id, "a/new.mp3")] });
    const unseen = [...known.unseen()];
    assert.deepEqual(unseen, inA.filter((_, i) => i % 2 === 1));
    assert.equal(db.knownCount(o.id, "a"), 4501);
    assert.equal(new KnownEntries(db, o.id, "zzz").any, false);
  } finally {
    db.close();
  }
});

Deno.test("known entries: a file scope, problems remembered by size, a track before a problem", () => {
  const db = Database.open(":memory:");
  try {
    const o = db.ensureOrigin("/music");
    db.applyBatch({
      files: [file(o.id, "x/one.mp3", 5), file(o.id, "x/two.mp3")],
      problems: [
        { originId: o.id, relPath: "x/bad.mp3", reason: "broken", size: 9, mtimeMs: 2 },
        { originId: o.id, relPath: "x/gone.mp3", reason: "broken", size: 3, mtimeMs: 2 },
        { originId: o.id, relPath: "x/locked", reason: "cannot read folder" },
      ],
    });
    const single = new KnownEntries(db, o.id, "x/one.mp3");
    assert.deepEqual([...single.unseen()], ["x/one.mp3"]);
    assert.equal(single.take("x/one.mp3")?.size, 5);
    assert.deepEqual([...single.unseen()], []);

    const known = new KnownEntries(db, o.id, "x");
    const [bad] = known.takeAll(["x/bad.mp3"]);
    assert.deepEqual(bad, { size: 9, mtimeMs: 2, kind: "problem" });
    known.take("x/one.mp3");
    // Walk problems (no size) are re-checked by the scanner on its own, not remembered here.
    assert.deepEqual([...known.unseen()], ["x/two.mp3", "x/gone.mp3"]);
  } finally {
    db.close();
  }
});
