import assert from "node:assert/strict";
import { Database, DatabaseWriteError } from "./db.ts";
import { ParserPool } from "./pool.ts";
import type { LibraryChange } from "./change.ts";
import { EmptyRootError, Scanner, type ScannerOptions } from "./scanner.ts";
import { Walker } from "./walker.ts";
import { type FixtureTags, makeLibrary, writeTrack } from "../../tests/fixtures/mod.ts";
import type { Tags } from "./types.ts";

// One pool and walker for the whole file: `deno test` type-checks every worker it starts (1-2 s
// each), so starting them per test would dominate the run. Live workers do not hold the runner.
const pool = new ParserPool();
const walker = new Walker();
function scannerFor(db: Database, options: ScannerOptions = {}): Scanner {
  return new Scanner(db, { pool, walker, ...options });
}

async function withDirs(fn: (lib: string, state: string) => Promise<void>): Promise<void> {
  const lib = await Deno.makeTempDir({ prefix: "musicfs-lib-" });
  const state = await Deno.makeTempDir({ prefix: "musicfs-state-" });
  try {
    await fn(lib, state);
  } finally {
    await Deno.remove(lib, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
}

/** The tags the library should read from a fixture written with `tags`. */
function expectedTags(tags: FixtureTags): Tags {
  const out: Tags = {};
  for (const [k, v] of Object.entries(tags)) {
    // Tag text comes out NFC-normalised (rule 2 of issue 10).
    const t = typeof v === "string" ? v.trim().normalize("NFC") : v;
    if (t !== undefined && t !== "") (out as Record<string, unknown>)[k] = t;
  }
  return out;
}

async function writeMp3(path: string, tags: FixtureTags): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await writeTrack(path, "mp3-id3v24", tags);
}

/** `n` distinct MP3s in albums of 10: `Artist i/Album j/NN.mp3`; returns their relative paths. */
async function writeAlbums(root: string, n: number, prefix = "Artist"): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const rel = `${prefix} ${Math.floor(i / 100)}/Album ${Math.floor(i / 10)}/${
      String(i % 10).padStart(2, "0")
    }.mp3`;
    await writeMp3(`${root}/${rel}`, {
      title: `Song ${i}`,
      artist: `${prefix} ${Math.floor(i / 100)}`,
      album: `Album ${Math.floor(i / 10)}`,
      track: (i % 10) + 1,
      year: 2000 + (i % 20),
    });
    paths.push(rel);
  }
  return paths;
}

function collect(): { changes: LibraryChange[]; onChange: (c: LibraryChange) => void } {
  const changes: LibraryChange[] = [];
  return { changes, onChange: (c) => changes.push(c) };
}

Deno.test("scan of a library with broken files records each problem and keeps every good file", async () => {
  await withDirs(async (lib, state) => {
    const fx = await makeLibrary(lib, {
      tracks: 90,
      broken: 10,
      covers: true,
      extras: true,
      seed: 3,
    });
    const db = Database.open(`${state}/library.db`);
    const { changes, onChange } = collect();
    const scanner = scannerFor(db, { onChange, batchSize: 16 });
    try {
      const [r] = await scanner.scan([lib]);
      assert.equal(r.seen, fx.good.length + fx.broken.length, "hidden files are not even seen");
      assert.equal(r.parsed, r.seen);
      assert.equal(r.added, fx.good.length);
      const tracks = new Map(db.allTracks().map((t) => [t.relPath, t]));
      assert.deepEqual([...tracks.keys()].sort(), fx.good.map((g) => g.relPath).sort());
      for (const g of fx.good) {
        const t = tracks.get(g.relPath)!;
        assert.equal(t.ext, g.ext);
        assert.equal(t.size, g.size);
        for (const k of Object.keys(expectedTags(g.tags)) as (keyof Tags)[]) {
          assert.deepEqual(t[k], expectedTags(g.tags)[k], `${g.relPath} (${g.format}): ${k}`);
        }
        for (const k of ["artist", "album", "title", "track", "year", "genre"] as const) {
          if (expectedTags(g.tags)[k] === undefined) {
            assert.equal(t[k], undefined, `${g.relPath}: no ${k}`);
          }
        }
      }

      const problems = db.problems();
      const broken = new Set(fx.broken.map((b) => b.relPath));
      assert.deepEqual(
        problems.filter((p) => broken.has(p.relPath)).map((p) => p.relPath).sort(),
        [...broken].sort(),
      );
      for (const p of problems) assert.ok(p.reason.length > 0, `${p.relPath} has a reason`);
      // Everything else listed is a symlink loop, skipped without hanging, and the count of
      // hidden folders (at the root's own path).
      assert.deepEqual(
        problems.filter((p) => !broken.has(p.relPath) && p.relPath !== "").map((p) => p.relPath)
          .sort(),
        [...fx.symlinks].sort(),
      );
      assert.match(problems.find((p) => p.relPath === "")!.reason, /^1 hidden folder skipped/);

      assert.deepEqual(db.covers().map((c) => c.relPath).sort(), [...fx.covers].sort());

      // Every committed track reached the listener exactly once.
      const added = changes.flatMap((c) => c.added.map((t) => t.relPath));
      assert.deepEqual(added.sort(), fx.good.map((g) => g.relPath).sort());
      assert.ok(changes.length > 1, "committed in several batches");
      assert.ok(changes.some((c) => c.problemsChanged));
      assert.deepEqual(
        changes.flatMap((c) => c.covers.map((x) => x.relPath)).sort(),
        [...fx.covers].sort(),
      );
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("incremental rescan re-reads only changed and new files", async () => {
  await withDirs(async (lib, state) => {
    const paths = await writeAlbums(lib, 40);
    await Deno.writeTextFile(`${lib}/broken.mp3`, "not audio at all");
    const db = Database.open(`${state}/library.db`);
    const { changes, onChange } = collect();
    const scanner = scannerFor(db, { onChange });
    try {
      await scanner.scan([lib]);
      const before = new Map(db.allTracks().map((t) => [t.relPath, t]));
      changes.length = 0;

      const generation = db.generation;
      const again = await scanner.scan([lib]);
      assert.equal(db.generation, generation, "a rescan that finds nothing changes nothing");
      assert.equal(again[0].parsed, 0, "nothing changed, nothing read (the broken file neither)");
      assert.equal(again[0].unchanged, 41);
      assert.equal(changes.length, 0);

      await writeMp3(`${lib}/${paths[5]}`, { title: "Retitled", artist: "Someone Else" });
      await writeMp3(`${lib}/${paths[6]}`, { title: "Also changed" });
      // Same size, different mtime: still a change.
      const t7 = Deno.statSync(`${lib}/${paths[7]}`).mtime!;
      Deno.utimeSync(`${lib}/${paths[7]}`, t7, new Date(t7.getTime() + 5000));
      await writeMp3(`${lib}/New/new.mp3`, { title: "New" });

      const [r] = await scanner.scan([lib]);
      assert.equal(r.parsed, 4);
      assert.equal(r.unchanged, 38);
      assert.equal(r.changed, 3);
      assert.equal(r.added, 1);
      assert.equal(r.removed, 0);
      const changed = changes.flatMap((c) => c.changed);
      assert.deepEqual(changed.map((t) => t.relPath).sort(), [paths[5], paths[6], paths[7]].sort());
      for (const t of changed) {
        assert.equal(t.id, before.get(t.relPath)!.id, "a changed file keeps its id");
      }
      const t5 = db.getTrack(before.get(paths[5])!.id)!;
      assert.equal(t5.title, "Retitled");
      assert.equal(t5.album, undefined, "tags gone from the file are gone from the database");
      assert.deepEqual(changes.flatMap((c) => c.added).map((t) => t.title), ["New"]);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("files and folders removed from the source are removed from the library", async () => {
  await withDirs(async (lib, state) => {
    const paths = await writeAlbums(lib, 30);
    await Deno.writeTextFile(`${lib}/Artist 0/Album 1/cover.jpg`, "img");
    const db = Database.open(`${state}/library.db`);
    const { changes, onChange } = collect();
    const scanner = scannerFor(db, { onChange });
    try {
      await scanner.scan([lib]);
      assert.equal(db.trackCount(), 30);
      assert.equal(db.covers().length, 1);
      const ids = new Map(db.allTracks().map((t) => [t.relPath, t.id]));
      changes.length = 0;
      await Deno.remove(`${lib}/${paths[0]}`);
      await Deno.remove(`${lib}/Artist 0/Album 1`, { recursive: true });
      const [r] = await scanner.scan([lib]);
      assert.equal(r.removed, 11);
      assert.equal(r.parsed, 0);
      assert.equal(db.trackCount(), 19);
      assert.deepEqual(db.covers(), []);
      const removed = changes.flatMap((c) => c.removed);
      assert.deepEqual(
        removed.map((t) => t.id).sort((a, b) => a - b),
        [paths[0], ...paths.slice(10, 20)].map((p) => ids.get(p)!).sort((a, b) => a - b),
      );
      assert.ok(removed.every((t) => t.title !== undefined), "removed records carry their tags");
      assert.deepEqual(changes.flatMap((c) => c.removedCovers), [{
        originId: db.origins()[0].id,
        dir: "Artist 0/Album 1",
      }]);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("a library root that vanished fails the scan and removes nothing", async () => {
  await withDirs(async (lib, state) => {
    await writeAlbums(`${lib}/music`, 5);
    const db = Database.open(`${state}/library.db`);
    const scanner = scannerFor(db);
    try {
      const [first] = await scanner.scan([`${lib}/music`]);
      const origin = db.origins().find((o) => o.id === first.originId)!;
      await Deno.rename(`${lib}/music`, `${lib}/elsewhere`);
      await assert.rejects(() => scanner.scanOrigin(origin), /music/);
      assert.equal(db.trackCount(), 5);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("a library root left empty (unmounted share) keeps its tracks; deleting some still removes them", async () => {
  await withDirs(async (lib, state) => {
    const written = await writeAlbums(`${lib}/music`, 5);
    const db = Database.open(`${state}/library.db`);
    const scanner = scannerFor(db);
    try {
      const [first] = await scanner.scan([`${lib}/music`]);
      const origin = db.origins().find((o) => o.id === first.originId)!;
      // The share goes away: its mountpoint stays, empty.
      await Deno.rename(`${lib}/music`, `${lib}/away`);
      // Only a hidden folder left in it (a desktop's trash): still empty.
      await Deno.mkdir(`${lib}/music/.Trash-1000`, { recursive: true });
      await assert.rejects(() => scanner.scanOrigin(origin), EmptyRootError);
      assert.equal(db.trackCount(), 5);
      // It comes back with one track fewer: that one really is gone.
      await Deno.remove(`${lib}/music`, { recursive: true });
      await Deno.rename(`${lib}/away`, `${lib}/music`);
      await Deno.remove(`${lib}/music/${written[0]}`);
      await scanner.scanOrigin(origin);
      assert.equal(db.trackCount(), 4);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("a scan aborted by its signal resumes without re-reading what it committed", async () => {
  await withDirs(async (lib, state) => {
    const total = 300;
    await writeAlbums(lib, total);
    const db = Database.open(`${state}/library.db`);
    const ac = new AbortController();
    let batches = 0;
    const scanner = scannerFor(db, {
      batchSize: 20,
      onChange: () => {
        if (++batches === 3) ac.abort(new Error("stop here"));
      },
    });
    try {
      await assert.rejects(() => scanner.scan([lib], { signal: ac.signal }), /stop here/);
      const committed = db.trackCount();
      assert.ok(committed >= 60 && committed < total, `committed ${committed}`);
      const origin = db.origins()[0];
      assert.equal(
        db.scanCheckpoint(origin.id)?.finishedMs,
        undefined,
        "the checkpoint says unfinished",
      );
      assert.equal(db.scanCheckpoint(origin.id)?.committed, committed);

      const [r] = await scanner.scan([lib]);
      assert.equal(r.resumed, true);
      assert.equal(r.committedBefore, committed);
      assert.equal(
        r.parsed,
        total - committed,
        "files committed before the abort are not read again",
      );
      assert.equal(db.trackCount(), total);
      assert.notEqual(db.scanCheckpoint(origin.id)?.finishedMs, undefined);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("a scan killed with SIGKILL resumes from its checkpoint and completes", async () => {
  await withDirs(async (lib, state) => {
    const total = 1200;
    await writeAlbums(lib, total);
    const dbPath = `${state}/library.db`;
    const child = `${state}/scan_child.ts`;
    // Slow each commit a little so the kill lands mid-scan, after some batches.
    await Deno.writeTextFile(
      child,
      `import { Database, Scanner } from ${
        JSON.stringify(new URL("./mod.ts", import.meta.url).href)
      };
const db = Database.open(Deno.args[0]);
const scanner = new Scanner(db, { batchSize: 25, onChange: (c) => {
  const until = Date.now() + 30; while (Date.now() < until) { /* busy */ }
  console.log("committed " + db.trackCount());
} });
await scanner.scan([Deno.args[1]]);
console.log("finished");
`,
    );
    const proc = new Deno.Command(Deno.execPath(), {
      // The child script lives outside the project: point it at the project's config and
      // node_modules.
      args: [
        "run",
        "-A",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        child,
        dbPath,
        lib,
      ],
      cwd: new URL("../..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!/committed (\d{3,})/.test(seen)) {
      const { value, done } = await reader.read();
      assert.ok(!done, `child ended before committing 100 files: ${seen}`);
      seen += value;
    }
    proc.kill("SIGKILL");
    const status = await proc.status;
    assert.equal(status.signal, "SIGKILL");
    await reader.cancel();
    assert.ok(!seen.includes("finished"));

    const db = Database.openWithIntegrityCheck(dbPath);
    const scanner = scannerFor(db);
    try {
      const committed = db.trackCount();
      assert.ok(committed >= 100 && committed < total, `committed ${committed}`);
      const [r] = await scanner.scan([lib]);
      assert.equal(r.resumed, true);
      assert.equal(r.parsed, total - committed, "nothing committed before the kill is read again");
      assert.equal(db.trackCount(), total);
      assert.deepEqual(db.problems(), []);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test({
  name: "a full disk fails the scan with a clear error and a later scan completes it",
  // Needs root to mount a small tmpfs for the database.
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withDirs(async (lib, state) => {
      const total = 400;
      await writeAlbums(lib, total);
      const mount = new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", state],
      }).outputSync();
      assert.ok(mount.success, "mount tmpfs");
      try {
        const db = Database.open(`${state}/library.db`);
        const scanner = scannerFor(db, { batchSize: 50 });
        try {
          // Leave room for the empty database and a few batches only.
          const filler = Deno.openSync(`${state}/filler`, { write: true, create: true });
          const free = 1024 * 1024 - Deno.statSync(`${state}/library.db`).size - 160 * 1024;
          filler.writeSync(new Uint8Array(Math.max(0, free)));
          filler.close();
          await assert.rejects(() => scanner.scan([lib]), (e: unknown) => {
            assert.ok(e instanceof DatabaseWriteError, String(e));
            assert.match(e.message, /^Cannot write to database: /);
            return true;
          });
          const committed = db.trackCount();
          assert.ok(committed < total);
          Deno.removeSync(`${state}/filler`);
          const [r] = await scanner.scan([lib]);
          assert.equal(r.parsed, total - committed);
          assert.equal(db.trackCount(), total);
          assert.deepEqual(db.quickCheck(), []);
        } finally {
          scanner.close();
          db.close();
        }
      } finally {
        new Deno.Command("umount", { args: [state] }).outputSync();
      }
    });
  },
});

Deno.test("an edit keeping size and mtime (ctime moves) and a same-size file renamed over (new inode) are re-read", async () => {
  await withDirs(async (lib, state) => {
    await writeMp3(`${lib}/A/a.mp3`, { title: "Title A", artist: "X" });
    await writeMp3(`${lib}/A/b.mp3`, { title: "Title B", artist: "X" });
    const db = Database.open(`${state}/library.db`);
    const scanner = scannerFor(db);
    try {
      await scanner.scan([lib]);
      // Deno's stat gives the ctime in whole seconds.
      await new Promise((r) => setTimeout(r, 1100));
      const a = `${lib}/A/a.mp3`;
      const st = Deno.statSync(a);
      const bytes = Deno.readFileSync(a);
      const at = new TextDecoder("latin1").decode(bytes).indexOf("Title A");
      assert.ok(at > 0, "the title is stored as text");
      bytes[at + 6] = "Z".charCodeAt(0);
      Deno.writeFileSync(a, bytes);
      Deno.utimeSync(a, st.atime!, st.mtime!);
      const b = `${lib}/A/b.mp3`;
      const sb = Deno.statSync(b);
      Deno.copyFileSync(b, `${b}.tmp`);
      Deno.utimeSync(`${b}.tmp`, sb.atime!, sb.mtime!);
      Deno.renameSync(`${b}.tmp`, b);
      assert.equal(Deno.statSync(a).size, st.size);
      assert.equal(Deno.statSync(a).mtime!.getTime(), st.mtime!.getTime());

      const [r] = await scanner.scan([lib]);
      assert.equal(r.parsed, 2, "both files are read again");
      const titles = db.allTracks().map((t) => t.title).sort();
      assert.deepEqual(titles, ["Title B", "Title Z"]);
      const [again] = await scanner.scan([lib]);
      assert.equal(again.parsed, 0, "and then they count as unchanged");
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("a scan says where its time went: walk, parse, SQLite writes and the listener", async () => {
  await withDirs(async (lib, state) => {
    await writeAlbums(lib, 30);
    const db = Database.open(`${state}/library.db`);
    let heard = 0;
    const scanner = scannerFor(db, {
      batchSize: 10,
      onChange: () => {
        heard++;
        // A slow listener shows up in the listener figure, not in the SQLite one.
        const until = performance.now() + 20;
        while (performance.now() < until) { /* busy */ }
      },
    });
    try {
      const [r] = await scanner.scan([lib]);
      const s = r.stages;
      assert.equal(r.parsed, 30);
      assert.ok(s.walkBatches >= 1, "walk batches counted");
      assert.equal(s.commits, heard, "one commit per change heard");
      assert.ok(s.commits >= 3, `commits of 10: ${s.commits}`);
      assert.ok(s.listenerMs >= 20 * heard - 1, `listener ${s.listenerMs} ms for ${heard} calls`);
      assert.ok(s.parseMs > 0, "the workers' reading time is reported");
      assert.equal(s.workers, pool.size);
      assert.ok(s.walkMs <= r.ms && s.parseTailMs <= r.ms);
    } finally {
      scanner.close();
      db.close();
    }
  });
});

Deno.test("playlists are found by the walk, read, changed and removed with the scan", async () => {
  await withDirs(async (lib, state) => {
    await writeMp3(`${lib}/A/01.mp3`, { title: "One", artist: "A", album: "L", track: 1 });
    await writeMp3(`${lib}/A/02.mp3`, { title: "Two", artist: "A", album: "L", track: 2 });
    await Deno.mkdir(`${lib}/Lists`);
    await Deno.writeTextFile(
      `${lib}/Lists/mix.m3u8`,
      "#EXTM3U\n../A/02.mp3\n../A/01.mp3\nnope.mp3\n",
    );
    await Deno.writeTextFile(`${lib}/top.M3U`, "A\\01.mp3\n");
    await Deno.writeTextFile(`${lib}/.hidden.m3u`, "A/01.mp3\n");
    const db = Database.open(`${state}/library.db`);
    const { changes, onChange } = collect();
    const scanner = scannerFor(db, { onChange });
    try {
      await scanner.scan([lib]);
      const root = Deno.realPathSync(lib);
      assert.deepEqual(db.playlists().map((p) => [p.relPath, p.entries]), [
        ["Lists/mix.m3u8", [`${root}/A/02.mp3`, `${root}/A/01.mp3`, `${root}/Lists/nope.mp3`]],
        ["top.M3U", [`${root}/A/01.mp3`]],
      ]);
      assert.equal(changes.flatMap((c) => c.playlists ?? []).length, 2);
      // Unchanged: not read again.
      changes.length = 0;
      await scanner.scan([lib]);
      assert.equal(changes.flatMap((c) => c.playlists ?? []).length, 0);
      // Changed and removed, through a full scan and through the watcher's path rescan.
      await Deno.writeTextFile(`${lib}/Lists/mix.m3u8`, "../A/01.mp3\n");
      await Deno.remove(`${lib}/top.M3U`);
      const origin = db.origins()[0];
      await scanner.rescanPaths(origin, ["Lists/mix.m3u8", "top.M3U"]);
      assert.deepEqual(db.playlists().map((p) => [p.relPath, p.entries]), [
        ["Lists/mix.m3u8", [`${root}/A/01.mp3`]],
      ]);
      assert.deepEqual(
        changes.flatMap((c) => c.removedPlaylists ?? []).map((r) => r.relPath),
        ["top.M3U"],
      );
    } finally {
      scanner.close();
      db.close();
    }
  });
});
