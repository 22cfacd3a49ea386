import assert from "node:assert/strict";
import MiniSearch from "minisearch";
import { SearchIndex } from "./search_index.ts";
import { SEARCH_FORMAT_VERSION } from "./store.ts";
import { queryTerms } from "./query.ts";
import { BOOSTS, FIELDS, toDocument } from "./text.ts";
import { ids, track, withTempDir } from "./testdata/helpers.ts";
import { syntheticQueries, syntheticTracks } from "./testdata/synthetic.ts";
import { DatabaseSync } from "node:sqlite";

function library(): SearchIndex {
  const index = SearchIndex.create("/nonexistent/search.snapshot");
  const tracks = [
    track(1, { title: "Help!", artist: "The Beatles", album: "Help!", genre: "Rock", year: 1965 }),
    track(2, { title: "Come Together", artist: "The Beatles", album: "Abbey Road", year: 1969 }),
    track(3, { title: "Something", artist: "The Beatles", album: "Abbey Road", year: 1969 }),
    track(4, { title: "Enter Sandman", artist: "Metallica", album: "Metallica", year: 1991 }),
    track(5, { title: "Halo", artist: "Beyoncé", album: "I Am... Sasha Fierce", year: 2008 }),
    track(6, { title: "Thunderstruck", artist: "AC/DC", album: "The Razors Edge", year: 1990 }),
    track(7, { title: "Sweet Child O' Mine", artist: "Guns N' Roses", genre: "Hard Rock" }),
    track(8, { title: "群青日和", artist: "東京事変", album: "教育" }),
    track(9, { title: "Rock Lobster", artist: "The B-52's", genre: "New Wave", year: 1978 }),
    track(10, { title: "Paranoid", artist: "Black Sabbath", genre: "Rock", year: 1970 }),
    { ...track(11), relPath: "Misc/07 - Obscure Recording.mp3", ext: "mp3" },
    { ...track(12, { title: "Untitled", artist: "Nobody" }), relPath: "x/bootleg-live.flac" },
    track(13, { title: "Glad", artist: "Various", albumArtist: "Compilation Crew" }),
  ];
  for (const t of tracks) index.indexFile(t);
  return index;
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

Deno.test("search finds words, prefixes and typos", () => {
  const index = library();
  assert.deepEqual(sorted(ids(index.search("beatles"))), [1, 2, 3]);
  assert.deepEqual(sorted(ids(index.search("beat"))), [1, 2, 3], "prefix");
  assert.deepEqual(sorted(ids(index.search("Be"))), [1, 2, 3, 5], "two-letter prefix");
  assert.deepEqual(sorted(ids(index.search("beetles"))), [1, 2, 3], "one typo");
  assert.deepEqual(ids(index.search("metalica sandmann")), [4], "typos in two words");
  assert.deepEqual(ids(index.search("lve")), [], "short words get no typo allowance");
  assert.deepEqual(sorted(ids(index.search("abbey road"))), [2, 3], "every word must match");
  assert.deepEqual(ids(index.search("beatles metallica")), []);
  assert.deepEqual(ids(index.search("beyonce")), [5], "accents folded");
  assert.deepEqual(ids(index.search("BEYONCÉ")), [5]);
  assert.deepEqual(ids(index.search("東京事変")), [8]);
  assert.deepEqual(ids(index.search("東京")), [8], "prefix of a CJK word");
  assert.deepEqual(sorted(ids(index.search("1969"))), [2, 3], "years match exactly");
  assert.deepEqual(sorted(ids(index.search("197"))), [9, 10], "year prefix");
  assert.deepEqual(ids(index.search("obscure recording")), [11], "file name of untagged file");
  assert.deepEqual(ids(index.search("bootleg")), [12], "file name of tagged file");
  assert.deepEqual(ids(index.search("compilation crew")), [13], "album artist");
  assert.deepEqual(ids(index.search("guns n roses")), [7]);
  assert.deepEqual(ids(index.search("sweet child o mine")), [7]);
});

Deno.test("search ranks title and artist above album above genre", () => {
  const index = SearchIndex.create("/nonexistent");
  index.indexFile(track(1, { title: "Song", genre: "Jazz" }));
  index.indexFile(track(2, { title: "Jazz", genre: "Pop" }));
  index.indexFile(track(3, { title: "Other", album: "Jazz" }));
  index.indexFile(track(4, { title: "Tune", artist: "Jazz" }));
  // BM25 gives a word found in every track no weight at all: a library has other tracks.
  for (let i = 5; i < 25; i++) index.indexFile(track(i, { title: `Filler ${i}`, genre: "Pop" }));
  const order = ids(index.search("jazz"));
  assert.equal(order.length, 4);
  assert.ok(order.indexOf(2) < order.indexOf(3), "title above album");
  assert.ok(order.indexOf(4) < order.indexOf(3), "artist above album");
  assert.ok(order.indexOf(3) < order.indexOf(1), "album above genre");
  const [exact, prefix] = [index.search("jazz")[0].score, index.search("jaz")[0].score];
  assert.ok(exact > prefix, "an exact word scores above a prefix");
});

Deno.test("search limit bounds and orders the results", () => {
  const index = SearchIndex.create("/nonexistent");
  for (let i = 1; i <= 50; i++) index.indexFile(track(i, { title: `Same ${i}` }));
  assert.equal(index.search("same", 10).length, 10);
  assert.equal(index.search("same", 0).length, 0);
  assert.equal(index.search("same", -3).length, 0);
  assert.equal(index.search("same", Number.NaN).length, 0);
  assert.equal(index.search("same", Infinity).length, 50);
  assert.equal(index.search("same", 2.7).length, 2);
  const all = index.search("same", 1000);
  for (let i = 1; i < all.length; i++) {
    const [a, b] = [all[i - 1], all[i]];
    assert.ok(a.score > b.score || (a.score === b.score && a.id < b.id), "best first, then id");
  }
  assert.deepEqual(index.search("same", 5), all.slice(0, 5), "a limit keeps the best");
});

Deno.test("search gives a clear answer to nasty queries", () => {
  const index = library();
  index.indexFile(track(20, { title: "__proto__ constructor", artist: "toString" }));
  const nasty = [
    "",
    "   ",
    "/",
    "//",
    "../../etc/passwd",
    '"',
    "'",
    "\"'`",
    "\0",
    "\uD800",
    "\uDC00abc",
    "🎵🎶",
    "(.*)[",
    "%s%n%x",
    "a".repeat(10 * 1024),
    "word ".repeat(2048),
    "ü".repeat(6000),
    "\u0301".repeat(100),
    "hasOwnProperty",
    "NaN Infinity undefined null",
  ];
  for (const q of nasty) {
    const results = index.search(q, 1000);
    assert.ok(Array.isArray(results), `query ${JSON.stringify(q.slice(0, 20))}`);
    for (const r of results) assert.ok(Number.isFinite(r.score) && Number.isInteger(r.id));
  }
  assert.deepEqual(ids(index.search("AC/DC")), [6], "a slash separates words");
  assert.deepEqual(ids(index.search('"thunderstruck"')), [6], "quotes are ignored");
  assert.deepEqual(ids(index.search("__proto__")), [20]);
  assert.deepEqual(ids(index.search("constructor")), [20]);
  assert.deepEqual(ids(index.search("tostring")), [20]);
  assert.deepEqual(ids(index.search("/")), []);
  assert.deepEqual(ids(index.search("")), []);
  const long = "thunderstruck " + "x".repeat(10 * 1024);
  assert.deepEqual(ids(index.search(long)), [], "every word counts, even a long one");
  assert.deepEqual(ids(index.search("thunderstruck " + "/".repeat(10 * 1024))), [6]);
  assert.ok(queryTerms("a ".repeat(5000) + "b c d e f g h i j k l m n").length <= 12);
  assert.ok(new TextEncoder().encode(queryTerms("€".repeat(5000)).join("")).length <= 1024);
});

Deno.test("indexFile replaces and remove deletes", () => {
  const index = library();
  const size = index.size;
  index.indexFile(track(4, { title: "Nothing Else Matters", artist: "Metallica" }));
  assert.equal(index.size, size);
  assert.deepEqual(ids(index.search("sandman")), []);
  assert.deepEqual(ids(index.search("nothing else matters")), [4]);
  index.remove(4);
  assert.equal(index.size, size - 1);
  assert.equal(index.has(4), false);
  assert.deepEqual(ids(index.search("metallica")), []);
  index.remove(4);
  index.remove(12345);
  assert.equal(index.size, size - 1);
});

Deno.test("search agrees with minisearch's own AND search", () => {
  const tracks = syntheticTracks(3000, 7);
  const index = SearchIndex.create("/nonexistent");
  const ms = new MiniSearch({
    fields: [...FIELDS],
    storeFields: [],
    tokenize: (s: string) => s.split(" "),
    processTerm: (t: string) => t || null,
  });
  for (const t of tracks) {
    index.indexFile(t);
    ms.add(toDocument(t));
  }
  let nonEmpty = 0;
  for (const q of [...syntheticQueries(tracks, 150, 3), "the", "lo", "love the", "19"]) {
    const mine = index.search(q, Infinity);
    const theirs = ms.search(queryTerms(q).join(" "), {
      combineWith: "AND",
      prefix: (t: string) => t.length >= 2,
      fuzzy: (t: string) => (t.length >= 4 && !/^\d+$/.test(t) ? 0.2 : false),
      maxFuzzy: 2,
      boost: BOOSTS,
    });
    assert.deepEqual(sorted(ids(mine)), sorted(ids(theirs)), `query ${q}`);
    // Scores are FTS5's BM25, not minisearch's BM25+: only the matches are compared.
    if (mine.length > 0) nonEmpty++;
  }
  assert.ok(nonEmpty > 100, "the comparison covers real matches");
});

Deno.test("commit and open round-trip the index", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/search.snapshot`;
    const index = library();
    const fresh = SearchIndex.create(path);
    assert.equal(fresh.dirty, true, "a new index has no snapshot yet");
    for (const t of syntheticTracks(500, 3)) fresh.indexFile({ ...t, id: t.id + 100 });
    fresh.indexFile(track(1, { title: "__proto__", artist: "hasOwnProperty" }));
    fresh.remove(105);
    fresh.indexFile(track(106, { title: "Replaced Title" }));
    const result = await fresh.commit(42);
    assert.equal(result.written, true);
    assert.equal(result.documentCount, 500);
    assert.equal(fresh.dirty, false);
    assert.equal(fresh.generation, 42);
    const again = await fresh.commit();
    assert.equal(again.written, false, "nothing changed, nothing written");
    const reopened = await SearchIndex.open(path);
    assert.equal(reopened.size, 500);
    assert.equal(reopened.generation, 42);
    assert.equal(reopened.dirty, false);
    assert.equal(reopened.has(105), false);
    assert.deepEqual(ids(reopened.search("__proto__")), [1]);
    assert.deepEqual(ids(reopened.search("replaced title")), [106]);
    for (const q of syntheticQueries(syntheticTracks(500, 3), 60, 9)) {
      // Scores may differ a little: the live index still counts discarded postings in idf.
      const [a, b] = [reopened.search(q, Infinity), fresh.search(q, Infinity)];
      assert.deepEqual(sorted(ids(a)), sorted(ids(b)), `query ${q}`);
    }
    assert.ok(index.size > 0);
    assert.equal((await reopened.commit(43)).written, true, "a new generation is written");
    assert.equal((await SearchIndex.open(path)).generation, 43);
  });
});

Deno.test("the index file is SQLite FTS5, stamped with its generation", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const index = library();
    const indexAtPath = SearchIndex.create(path);
    for (let i = 1; i <= 13; i++) if (index.has(i)) indexAtPath.indexFile(track(i));
    await indexAtPath.commit(7);
    indexAtPath.close();
    const bytes = await Deno.readFile(path);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 15)), "SQLite format 3");
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      const meta = Object.fromEntries(
        (db.prepare("SELECT key, value FROM meta").all() as { key: string; value: number }[])
          .map((r) => [r.key, r.value]),
      );
      assert.deepEqual([meta.documents, meta.format, meta.generation], [
        13,
        SEARCH_FORMAT_VERSION,
        7,
      ]);
      const hits = db.prepare("SELECT rowid FROM docs WHERE docs MATCH 'track' ORDER BY rowid")
        .all().map((r) => r.rowid);
      assert.deepEqual(hits, [...Array(13).keys()].map((i) => i + 1));
    } finally {
      db.close();
    }
  });
});

Deno.test("changes after a commit wait for the next one", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const index = SearchIndex.create(path);
    for (const t of syntheticTracks(2000, 5)) index.indexFile(t);
    index.indexFile(track(5000, { title: "Doomed Song" }));
    await index.commit(1);
    index.indexFile(track(5001, { title: "Latecomer" }));
    index.remove(5000);
    assert.deepEqual(ids(index.search("doomed")), [], "a removal is seen at once");
    assert.deepEqual(ids(index.search("latecomer")), [5001], "an addition is seen at once");
    assert.equal(index.has(5001), true);
    assert.equal(index.has(5000), false);
    assert.equal(index.dirty, true, "the changes are not committed");
    const snap1 = await SearchIndex.open(path, { readOnly: true });
    assert.deepEqual(ids(snap1.search("doomed")), [5000]);
    assert.deepEqual(ids(snap1.search("latecomer")), []);
    snap1.close();
    await index.commit(2);
    assert.equal(index.dirty, false);
    const snap2 = await SearchIndex.open(path, { readOnly: true });
    assert.deepEqual(ids(snap2.search("doomed")), []);
    assert.deepEqual(ids(snap2.search("latecomer")), [5001]);
    assert.equal(snap2.size, 2001);
    snap2.close();
    index.close();
  });
});

Deno.test("concurrent commits run one after the other", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s`;
    const index = SearchIndex.create(path);
    for (const t of syntheticTracks(1000, 5)) index.indexFile(t);
    const a = index.commit(1);
    const b = index.commit(2);
    index.indexFile(track(9999, { title: "Between" }));
    const c = index.commit(3);
    const results = await Promise.all([a, b, c]);
    assert.deepEqual(results.map((r) => r.generation), [1, 2, 3]);
    const reopened = await SearchIndex.open(path);
    assert.equal(reopened.generation, 3);
    assert.deepEqual(ids(reopened.search("between")), [9999]);
    const leftovers = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== "s");
    assert.deepEqual(leftovers.filter((n) => !/^s-(wal|shm)$/.test(n)), [], "no temp files");
  });
});

Deno.test("a failed commit keeps the old index and the index dirty", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sub/s`;
    const index = SearchIndex.create(path);
    index.indexFile(track(1, { title: "Kept" }));
    // The first commit writes the file: its directory is missing.
    await assert.rejects(index.commit(1), { name: "SearchCommitError" });
    assert.equal(index.dirty, true);
    assert.equal(index.generation, 0);
    assert.deepEqual(ids(index.search("kept")), [1], "still searchable from memory");
    index.close();
  });
});

Deno.test({
  name: "a full disk fails the commit; the next one after space is freed holds every change",
  // Needs root to mount a small tmpfs.
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withTempDir(async (dir) => {
      const sub = `${dir}/sub`;
      await Deno.mkdir(sub);
      const mount = new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", sub],
      })
        .outputSync();
      assert.ok(mount.success, "mount tmpfs");
      try {
        const path = `${sub}/s`;
        const index = SearchIndex.create(path);
        index.indexFile(track(1, { title: "Kept" }));
        await index.commit(1);
        // Fill what is left of the disk.
        const filler = Deno.openSync(`${sub}/filler`, { write: true, create: true });
        try {
          for (;;) filler.writeSync(new Uint8Array(4096));
        } catch { /* full */ }
        filler.close();
        const tracks = syntheticTracks(3000, 21).map((t) => ({ ...t, id: t.id + 10 }));
        for (const t of tracks) index.indexFile(t);
        await assert.rejects(index.commit(2), { name: "SearchCommitError" });
        assert.equal(index.dirty, true);
        assert.equal(index.generation, 1);
        assert.deepEqual(ids(index.search("kept")), [1]);
        const before = await SearchIndex.open(path, { readOnly: true });
        assert.equal(before.generation, 1, "the last commit is intact");
        assert.equal(before.size, 1);
        before.close();
        Deno.removeSync(`${sub}/filler`);
        await index.commit(2);
        assert.equal(index.dirty, false);
        assert.equal(index.size, 3001);
        index.close();
        const after = await SearchIndex.open(path, { generation: 2 });
        assert.equal(after.size, 3001, "every change made while the disk was full");
        assert.deepEqual(ids(after.search(tracks[0].title!, 3000)).includes(tracks[0].id), true);
        after.close();
      } finally {
        new Deno.Command("umount", { args: [sub] }).outputSync();
      }
    });
  },
});
