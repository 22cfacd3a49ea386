import assert from "node:assert/strict";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import {
  inspectSnapshot,
  SEARCH_FORMAT_VERSION,
  SearchIndex,
  SearchRebuildError,
  SearchSnapshotCorruptError,
  SearchSnapshotError,
  SearchSnapshotMissingError,
  SearchSnapshotStaleError,
  SearchSnapshotVersionError,
  type SnapshotProblem,
} from "./mod.ts";
import { DatabaseSync } from "node:sqlite";
import type { TrackRecord } from "../library/types.ts";
import { ids, track, withTempDir } from "./testdata/helpers.ts";
import { prng, syntheticQueries, syntheticTracks } from "./testdata/synthetic.ts";

const PAGE = 4096;

/** Ways to damage an index file, with the problem `open` must report. */
const CORRUPTIONS: [string, SnapshotProblem, (b: Uint8Array) => Uint8Array][] = [
  ["empty file", "truncated", () => new Uint8Array(0)],
  ["truncated header", "truncated", (b) => b.slice(0, 40)],
  ["truncated body", "truncated", (b) => b.slice(0, PAGE * Math.floor(b.length / PAGE / 2))],
  ["last page missing", "truncated", (b) => b.slice(0, b.length - PAGE)],
  ["garbage", "garbage", (b) => {
    const r = prng(9);
    return b.map(() => Math.floor(r() * 256));
  }],
  ["trailing bytes", "garbage", (b) => new Uint8Array([...b, 10, 10])],
  ["another SQLite database", "garbage", (b) => setU32(b, 68, 0)],
  ["wrong version", "version", (b) => setU32(b, 60, 99)],
  ["zeroed", "garbage", (b) => new Uint8Array(b.length)],
];

function setU32(b: Uint8Array, at: number, value: number): Uint8Array {
  const c = b.slice();
  new DataView(c.buffer).setUint32(at, value);
  return c;
}

const GENERATION = 5;

/** A committed, closed index of `tracks`, the results of some queries, and the file bytes. */
async function snapshotOf(path: string, tracks: TrackRecord[]) {
  const index = SearchIndex.create(path);
  await index.indexAll(tracks);
  await index.commit(GENERATION);
  const queries = [...syntheticQueries(tracks, 40, 4), "the", "love"];
  const results = new Map(queries.map((q) => [q, index.search(q, 1000)]));
  index.close();
  return { queries, results, bytes: await Deno.readFile(path) };
}

/**
 * Damage that SQLite's own checks do not see: the index lost a document's row behind the
 * stamped count's back (as a torn page of the FTS tables would).
 */
function dropDocumentRow(path: string): void {
  const db = new DatabaseSync(path);
  try {
    db.exec("DELETE FROM docs WHERE rowid = (SELECT max(id) FROM docs_content)");
  } finally {
    db.close();
  }
}

function captureLogs(): { records: LogRecord[]; [Symbol.dispose](): void } {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { mem: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["musicfs", "search"], lowestLevel: "debug", sinks: ["mem"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  return { records, [Symbol.dispose]: () => resetSync() };
}

Deno.test("search corruption triggers rebuild", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.snapshot`;
    await snapshotOf(path, syntheticTracks(300, 1));
    dropDocumentRow(path);
    using logs = captureLogs();
    const index = await SearchIndex.openWithRecovery(path);
    assert.equal(index.size, 0, "no source: an empty index");
    assert.deepEqual(index.search("the"), []);
    index.indexFile(track(1, { title: "Works Again" }));
    assert.deepEqual(ids(index.search("works")), [1], "the empty index is usable");
    const warn = logs.records.find((r) => r.level === "warning");
    assert.ok(warn, "a WARN is logged");
    assert.equal(warn.properties.before, 300);
    assert.equal(warn.properties.after, 0);
    assert.equal(warn.properties.problem, "checksum");
    index.close();
    const reopened = await SearchIndex.open(path);
    assert.equal(reopened.size, 0, "the rebuilt (empty) index was committed");
    reopened.close();
  });
});

Deno.test("open throws a typed error for each kind of damage", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    await assert.rejects(SearchIndex.open(path), SearchSnapshotMissingError);
    const { bytes } = await snapshotOf(path, syntheticTracks(100, 2));
    for (const [name, problem, damage] of CORRUPTIONS) {
      await Deno.writeFile(path, damage(bytes));
      await assert.rejects(SearchIndex.open(path), (e: unknown) => {
        assert.ok(e instanceof SearchSnapshotError, name);
        assert.equal(e.problem, problem, name);
        assert.match(e.message, /^Cannot open search snapshot: /);
        if (problem === "version") assert.ok(e instanceof SearchSnapshotVersionError);
        else assert.ok(e instanceof SearchSnapshotCorruptError, name);
        return true;
      });
    }
    await Deno.writeFile(path, bytes);
    await assert.rejects(SearchIndex.open(path, { generation: 6 }), (e: unknown) => {
      assert.ok(e instanceof SearchSnapshotStaleError);
      assert.equal(e.found, GENERATION);
      assert.equal(e.expected, 6);
      return true;
    });
    const good = await SearchIndex.open(path, { generation: GENERATION });
    assert.equal(good.size, 100);
    good.close();
    assert.deepEqual(await inspectSnapshot(path), {
      version: SEARCH_FORMAT_VERSION,
      documentCount: 100,
      generation: GENERATION,
      bodySize: bytes.length,
    });
    dropDocumentRow(path);
    await assert.rejects(SearchIndex.open(path), (e: unknown) => {
      assert.ok(e instanceof SearchSnapshotCorruptError);
      assert.equal(e.problem, "checksum");
      assert.equal(e.documentCount, 100);
      return true;
    });
    // A page of garbage in the middle: the full check (musicfs check) finds any such page.
    const r = prng(3);
    const torn = bytes.slice();
    const page = Math.floor(bytes.length / PAGE / 2);
    for (let i = page * PAGE; i < (page + 1) * PAGE; i++) torn[i] = Math.floor(r() * 256);
    await Deno.writeFile(path, torn);
    await assert.rejects(inspectSnapshot(path), (e: unknown) => {
      assert.ok(e instanceof SearchSnapshotCorruptError, String(e));
      assert.ok(e.problem === "checksum" || e.problem === "garbage", e.problem);
      return true;
    });
  });
});

Deno.test("rebuild from source restores the same results as before corruption", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const tracks = syntheticTracks(1500, 3);
    const before = await snapshotOf(path, tracks);
    await Deno.writeFile(path, before.bytes.slice(0, 1000));
    const index = await SearchIndex.openWithRecovery(path, {
      rebuildFrom: () => tracks,
      generation: GENERATION,
    });
    assert.equal(index.size, 1500);
    for (const q of before.queries) {
      assert.deepEqual(index.search(q, 1000), before.results.get(q), `query ${q}`);
    }
    const reopened = await SearchIndex.open(path, { generation: GENERATION });
    for (const q of before.queries) {
      assert.deepEqual(reopened.search(q, 1000), before.results.get(q), `reopened, query ${q}`);
    }
  });
});

Deno.test("openWithRecovery recovers every kind of damage", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const tracks = syntheticTracks(400, 4);
    const good = await snapshotOf(path, tracks);
    const cases: [string, () => Promise<void>, number][] = [
      ["missing", () => Deno.remove(path), GENERATION],
      ...CORRUPTIONS.map(([name, , damage]): [string, () => Promise<void>, number] => [
        name,
        () => Deno.writeFile(path, damage(good.bytes)),
        GENERATION,
      ]),
      ["stale generation", () => Deno.writeFile(path, good.bytes), GENERATION + 1],
      ["a directory in its place", async () => {
        await Deno.remove(path);
        await Deno.mkdir(path);
      }, GENERATION],
    ];
    // An async source, as a database cursor would be.
    async function* source() {
      for (const t of tracks) yield t;
    }
    for (const [name, damage, generation] of cases) {
      await damage();
      using logs = captureLogs();
      const index = await SearchIndex.openWithRecovery(path, {
        rebuildFrom: source,
        generation,
      });
      assert.equal(index.size, 400, name);
      assert.equal(index.generation, generation, name);
      for (const q of good.queries.slice(0, 10)) {
        assert.deepEqual(ids(index.search(q, 1000)), ids(good.results.get(q)!), `${name}: ${q}`);
      }
      const warns = logs.records.filter((r) => r.level === "warning");
      assert.equal(warns.length, 1, name);
      assert.equal(warns[0].properties.after, 400, name);
      if (name === "a directory in its place") {
        // The rebuilt index could not replace a directory: it serves from memory, stays dirty.
        assert.equal(index.dirty, true);
        await Deno.remove(path);
        await index.commit();
      }
      const reopened = await SearchIndex.open(path, { generation });
      assert.equal(reopened.size, 400, `${name}: the rebuilt index was committed`);
      await Deno.writeFile(path, good.bytes);
    }
  });
});

Deno.test("openWithRecovery keeps a good snapshot and removes dead temp files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const good = await snapshotOf(path, syntheticTracks(200, 6));
    // A temp file of a process that no longer exists, and one of this (live) process.
    await Deno.writeFile(`${path}.tmp-999999999-1`, good.bytes.slice(0, 100));
    await Deno.writeFile(`${path}.tmp-${Deno.pid}-999`, good.bytes.slice(0, 100));
    using logs = captureLogs();
    let rebuilt = false;
    const index = await SearchIndex.openWithRecovery(path, {
      rebuildFrom: () => {
        rebuilt = true;
        return [];
      },
      generation: GENERATION,
    });
    assert.equal(rebuilt, false);
    assert.equal(index.size, 200);
    assert.equal(index.dirty, false);
    assert.equal(logs.records.filter((r) => r.level === "warning").length, 0);
    index.close();
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      !/-(wal|shm)$/.test(n)
    )
      .sort();
    assert.deepEqual(names, ["s", `s.tmp-${Deno.pid}-999`]);
  });
});

Deno.test("openWithRecovery reports a failing source", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      SearchIndex.openWithRecovery(`${dir}/s`, {
        rebuildFrom: () => {
          throw new Error("database is locked");
        },
      }),
      (e: unknown) => {
        assert.ok(e instanceof SearchRebuildError);
        assert.equal(e.message, "Cannot rebuild search index: database is locked");
        assert.equal((e.cause as Error).message, "database is locked");
        return true;
      },
    );
  });
});

Deno.test("read-only recovery rebuilds in memory and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const good = await snapshotOf(path, syntheticTracks(300, 8));
    const damaged = good.bytes.slice(0, 500);
    await Deno.writeFile(path, damaged);
    await Deno.writeFile(`${path}.tmp-999999999-1`, new Uint8Array(10));
    using _logs = captureLogs();
    const index = await SearchIndex.openWithRecovery(path, {
      rebuildFrom: () => syntheticTracks(300, 8),
      generation: GENERATION,
      readOnly: true,
    });
    assert.equal(index.readOnly, true);
    assert.equal(index.size, 300);
    for (const q of good.queries.slice(0, 5)) {
      assert.deepEqual(ids(index.search(q, 1000)), ids(good.results.get(q)!), q);
    }
    await assert.rejects(index.commit(), { name: "SearchCommitError" });
    assert.deepEqual(await Deno.readFile(path), damaged, "the snapshot is left alone");
    assert.equal([...Deno.readDirSync(dir)].length, 2, "temp files are left alone");
    await Deno.writeFile(path, good.bytes);
    const intact = await SearchIndex.openWithRecovery(path, { readOnly: true });
    assert.equal(intact.size, 300);
    assert.equal(intact.readOnly, true);
  });
});

Deno.test("damage only the full check sees is found in the background and rebuilt", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const tracks = syntheticTracks(3000, 12);
    const good = await snapshotOf(path, tracks);
    // A page whose garbage passes the checks made when opening, not the full one.
    let torn: Uint8Array | undefined;
    const r = prng(4);
    for (let page = 2; page < good.bytes.length / PAGE && !torn; page++) {
      const b = good.bytes.slice();
      for (let i = page * PAGE + 200; i < (page + 1) * PAGE - 200; i++) {
        b[i] = Math.floor(r() * 256);
      }
      await Deno.writeFile(path, b);
      try {
        (await SearchIndex.open(path)).close();
      } catch {
        continue;
      }
      if (await inspectSnapshot(path).then(() => false, () => true)) torn = b;
    }
    assert.ok(torn, "some page damage is only seen by the full check");
    await Deno.writeFile(path, torn);
    using logs = captureLogs();
    const index = await SearchIndex.openWithRecovery(path, {
      rebuildFrom: () => tracks,
      generation: GENERATION,
      verify: true,
    });
    // Changes made while the check runs wait for it, and survive the rebuild.
    index.indexFile(track(90_001, { title: "During The Check" }));
    await index.checked;
    const warn = logs.records.find((r) => r.level === "warning");
    assert.ok(warn, "a WARN is logged");
    assert.equal(warn.properties.before, 3000);
    assert.equal(warn.properties.after, 3001);
    assert.deepEqual(ids(index.search("during the check")), [90_001]);
    for (const q of good.queries.slice(0, 10)) {
      assert.deepEqual(ids(index.search(q, 1000)), ids(good.results.get(q)!), q);
    }
    await index.commit();
    index.close();
    const header = await inspectSnapshot(path, { generation: GENERATION });
    assert.equal(header.documentCount, 3001, "the rebuilt file passes the full check");
  });
});

Deno.test("an intact file passes the background check; held changes are applied", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    await snapshotOf(path, syntheticTracks(500, 13));
    using logs = captureLogs();
    const index = await SearchIndex.openWithRecovery(path, {
      rebuildFrom: () => {
        throw new Error("must not rebuild");
      },
      generation: GENERATION,
      verify: true,
    });
    index.indexFile(track(90_002, { title: "Held Back" }));
    await index.checked;
    assert.deepEqual(ids(index.search("held back")), [90_002]);
    assert.equal(index.size, 501);
    assert.equal(logs.records.filter((r) => r.level === "warning").length, 0);
    await index.commit();
    index.close();
    assert.equal((await inspectSnapshot(path)).documentCount, 501);
  });
});

Deno.test("stopping the background check lets the shutdown commit at once", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    await snapshotOf(path, syntheticTracks(500, 14));
    using logs = captureLogs();
    const index = await SearchIndex.openWithRecovery(path, {
      generation: GENERATION,
      verify: true,
    });
    index.indexFile(track(90_003, { title: "Last Words" }));
    index.stopChecking();
    await index.commit(GENERATION + 1);
    assert.equal(logs.records.filter((r) => r.level === "warning").length, 0, "no WARN");
    index.close();
    const reopened = await SearchIndex.open(path, { generation: GENERATION + 1 });
    assert.deepEqual(ids(reopened.search("last words")), [90_003]);
    assert.equal(reopened.size, 501);
    reopened.close();
  });
});

Deno.test("the stored word list is checked against the postings, and rebuilt when it differs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const tracks = syntheticTracks(400, 15);
    await snapshotOf(path, tracks);
    // Adds, replacements and removals keep the stored counts exact.
    const index = await SearchIndex.open(path, { generation: GENERATION });
    for (let id = 1; id <= 40; id++) index.remove(id);
    index.indexFile(track(41, { title: "Replaced Forty One", artist: "Nobody Else" }));
    index.indexFile(track(9_001, { title: "Brand New Wordz" }));
    await index.commit(GENERATION);
    index.close();
    assert.equal((await inspectSnapshot(path)).documentCount, 361, "the full check passes");

    const db = new DatabaseSync(path);
    db.exec("UPDATE words SET doc = doc + 5 WHERE term = 'wordz'");
    db.close();
    await assert.rejects(inspectSnapshot(path), /word list differs.*"wordz" in 6 documents/);
    using logs = captureLogs();
    const checked = await SearchIndex.openWithRecovery(path, {
      rebuildFrom: () => [...tracks.slice(41), track(41, { title: "Replaced Forty One" })],
      generation: GENERATION,
      verify: true,
    });
    await checked.checked;
    assert.ok(logs.records.some((r) => r.level === "warning"), "a WARN is logged");
    await checked.commit();
    checked.close();
    assert.equal((await inspectSnapshot(path)).documentCount, 360);
  });
});
