import assert from "node:assert/strict";
import { CasStore } from "../../cas/mod.ts";
import { acquireLock, lockPath } from "../../daemon/mod.ts";
import { Database, type FileUpsert } from "../../library/mod.ts";
import { inspectSnapshot, SearchIndex } from "../../search/mod.ts";
import { checkCommand, type CheckOptions } from "./check.ts";
import type { CommandIo } from "./common.ts";

function capture(): { io: CommandIo; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, out, err };
}

interface Dirs {
  stateDir: string;
  cacheDir: string;
}

async function withDirs(fn: (dirs: Dirs) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cli-check-" });
  try {
    await fn({ stateDir: `${dir}/state`, cacheDir: `${dir}/cache` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function upserts(originId: number, n: number): FileUpsert[] {
  return Array.from({ length: n }, (_, i) => ({
    originId,
    relPath: `a/${String(i).padStart(5, "0")} track with a longish name.mp3`,
    ext: "mp3",
    size: 1000 + i,
    mtimeMs: 1_700_000_000_000 + i,
    tags: { artist: `Artist ${i % 50}`, album: `Album ${i % 200}`, title: `Title ${i}` },
  }));
}

const TRACKS = 2000;
const CHUNKS = 20;

/** Stores as a cleanly stopped daemon leaves them; returns the chunk file paths. */
async function healthyStores({ stateDir, cacheDir }: Dirs): Promise<string[]> {
  await Deno.mkdir(stateDir, { recursive: true });
  const db = Database.open(`${stateDir}/library.db`);
  try {
    db.applyBatch({ files: upserts(db.ensureOrigin("/music").id, TRACKS) });
    const index = SearchIndex.create(`${stateDir}/search.db`, { generation: db.generation });
    await index.indexAll(db.allTracks());
    await index.commit();
    index.close();
    db.checkpoint();
  } finally {
    db.close();
  }
  const store = await CasStore.open({ dir: cacheDir, maxSize: 1 << 20 });
  const paths: string[] = [];
  try {
    for (let i = 0; i < CHUNKS; i++) {
      const hash = await store.put(new TextEncoder().encode(`chunk number ${i} `.repeat(50)));
      paths.push(`${cacheDir}/chunks/${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`);
    }
  } finally {
    await store.close();
  }
  return paths;
}

async function check(opts: CheckOptions) {
  const c = capture();
  const code = await checkCommand({ ...opts, io: c.io });
  return { code, ...c, line: (store: string) => c.out.find((l) => l.startsWith(`${store}  `)) };
}

/** Checks with --repair, then checks again: the second check must be clean. */
async function repairAndRecheck(dirs: Dirs, store: string) {
  const repaired = await check({ ...dirs, repair: true });
  assert.equal(repaired.code, 0, repaired.out.concat(repaired.err).join("\n"));
  assert.match(repaired.line(store) ?? "", /^\S.* +repaired \(/, repaired.out.join("\n"));
  const again = await check(dirs);
  assert.equal(again.code, 0, again.out.concat(again.err).join("\n"));
  for (const l of again.out) assert.match(l, / (ok|absent) /, again.out.join("\n"));
  return again;
}

function overwrite(path: string, at: number, bytes: Uint8Array): void {
  const f = Deno.openSync(path, { write: true });
  try {
    f.seekSync(at, Deno.SeekMode.Start);
    f.writeSync(bytes);
  } finally {
    f.close();
  }
}

Deno.test("check: healthy stores, one line each, exit 0", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const r = await check(dirs);
    assert.equal(r.code, 0, r.out.concat(r.err).join("\n"));
    assert.deepEqual(r.err, []);
    assert.equal(r.out.length, 4);
    assert.match(
      r.line("library.db")!,
      /ok \(2000 tracks, 1 libraries, generation \d+; 2000 sources not checked \(library root not there\)\)$/,
    );
    assert.match(r.line("search snapshot")!, /ok \(2000 documents, generation \d+\)$/);
    assert.match(r.line("chunk cache")!, /ok \(20 chunk files, .*, index matches\)$/);
    assert.match(r.line("lock")!, /ok \(no daemon running\)$/);
  });
});

Deno.test("check: stores never created are absent, not damaged", async () => {
  await withDirs(async (dirs) => {
    const r = await check(dirs);
    assert.equal(r.code, 0);
    assert.match(r.line("library.db")!, /absent \(never created\)$/);
    assert.match(r.line("search snapshot")!, /absent \(never created\)$/);
    assert.match(r.line("chunk cache")!, /absent \(never created\)$/);
    const repaired = await check({ ...dirs, repair: true });
    assert.equal(repaired.code, 0);
    await assert.rejects(Deno.stat(dirs.stateDir), Deno.errors.NotFound, "repair creates nothing");
  });
});

Deno.test("check: a damaged library.db is named; --repair sets it aside and starts fresh", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const path = `${dirs.stateDir}/library.db`;
    const page = 4096;
    overwrite(
      path,
      Math.floor(Deno.statSync(path).size / page / 2) * page,
      new Uint8Array(page).fill(0xff),
    );
    const r = await check(dirs);
    assert.equal(r.code, 1);
    assert.match(r.line("library.db")!, /damaged \(.+\)$/);
    assert.match(
      r.err.join("\n"),
      /^musicfs: library\.db needs repair \(run: musicfs check --repair\)$/,
    );

    await repairAndRecheck(dirs, "library.db");
    const aside = [...Deno.readDirSync(dirs.stateDir)].filter((e) =>
      e.name.startsWith("library.db.corrupt-")
    );
    assert.ok(aside.length >= 1, "the damaged file is kept aside");
  });
});

Deno.test("check: a stored path changed in place is never passed as ok", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const path = `${dirs.stateDir}/library.db`;
    const pristine = Deno.readFileSync(path);
    // Every copy of one path in the file (table row, unique index, stale free-page copies),
    // each changed in turn into another track's path, as a flipped bit can make it: the check
    // calls it damaged, or the change hit dead bytes and every path still reads as before.
    const from = new TextEncoder().encode("a/00007 track");
    const to = new TextEncoder().encode("a/00008 track");
    const hits: number[] = [];
    search: for (let i = 0; i + from.length <= pristine.length; i++) {
      for (let j = 0; j < from.length; j++) if (pristine[i + j] !== from[j]) continue search;
      hits.push(i);
    }
    assert.ok(hits.length >= 2, "the table row and the index entry at least");
    let damaged = 0;
    for (const at of hits) {
      const bytes = pristine.slice();
      bytes.set(to, at);
      Deno.writeFileSync(path, bytes);
      const r = await check(dirs);
      if (r.code === 1) {
        assert.match(r.line("library.db")!, /damaged \(integrity check failed: /);
        damaged++;
        continue;
      }
      const db = Database.open(path, { readOnly: true });
      try {
        const paths = db.allTracks().map((t) => t.relPath);
        assert.equal(new Set(paths).size, TRACKS, `copy at ${at}: passed with a duplicate path`);
        assert.ok(paths.some((p) => p.startsWith("a/00007 track")), `copy at ${at}: lost a track`);
      } finally {
        db.close();
      }
    }
    assert.ok(damaged >= 2, `${damaged} of ${hits.length} copies were live data`);
    Deno.writeFileSync(path, pristine);
  });
});

Deno.test("check: tracks whose source file is gone make library.db stale", async () => {
  await withDirs(async (dirs) => {
    const lib = `${dirs.stateDir}/../lib`;
    await Deno.mkdir(lib, { recursive: true });
    await Deno.mkdir(dirs.stateDir, { recursive: true });
    const db = Database.open(`${dirs.stateDir}/library.db`);
    try {
      const o = db.ensureOrigin(await Deno.realPath(lib));
      const files = upserts(o.id, 3);
      for (const f of files.slice(0, 2)) {
        await Deno.mkdir(`${lib}/a`, { recursive: true });
        await Deno.writeTextFile(`${lib}/${f.relPath}`, "x");
      }
      db.applyBatch({ files });
    } finally {
      db.close();
    }
    const r = await check(dirs);
    assert.match(
      r.line("library.db")!,
      /stale \(3 tracks, .*; 1 of 3 tracks name a source that is not there \(first: .*00002 track with a longish name\.mp3\); the next mount drops them\)$/,
    );
    await Deno.writeTextFile(`${lib}/${upserts(1, 3)[2].relPath}`, "x");
    const again = await check(dirs);
    assert.match(again.line("library.db")!, /ok \(3 tracks, .*; all 3 sources there\)$/);
  });
});

Deno.test("check: a damaged search snapshot is named; --repair rebuilds it from library.db", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const path = `${dirs.stateDir}/search.db`;
    // Garbage over the page of the stamped values (the first table's root page).
    overwrite(path, 4096, new Uint8Array(4096).fill(0xa5));
    const r = await check(dirs);
    assert.equal(r.code, 1);
    assert.match(r.line("search snapshot")!, /damaged \(checksum: .+\)$/);
    assert.match(r.line("library.db")!, / ok /);

    const again = await repairAndRecheck(dirs, "search snapshot");
    assert.match(again.line("search snapshot")!, /ok \(2000 documents/);
    assert.equal((await inspectSnapshot(path)).documentCount, TRACKS);
  });
});

Deno.test("check: a snapshot behind library.db (a kill -9) is stale, no fault: exit 0", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const db = Database.open(`${dirs.stateDir}/library.db`);
    db.ensureOrigin("/more music");
    db.close();
    const r = await check(dirs);
    assert.equal(r.code, 0, r.err.join("\n"));
    assert.deepEqual(r.err, []);
    assert.match(
      r.line("search snapshot")!,
      /stale \(generation \d+, library\.db is at \d+; will be rebuilt at start\)$/,
    );
    await repairAndRecheck(dirs, "search snapshot");
  });
});

Deno.test("check: a damaged LMDB index is named; --repair rebuilds it from the chunk files", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const mdb = `${dirs.cacheDir}/index/data.mdb`;
    overwrite(mdb, 0, new Uint8Array(4096));
    const r = await check(dirs);
    assert.equal(r.code, 1);
    assert.match(r.line("chunk cache")!, /damaged \(index damaged: .+\)$/);

    const again = await repairAndRecheck(dirs, "chunk cache");
    assert.match(again.line("chunk cache")!, /ok \(20 chunk files/);
  });
});

Deno.test("check: a chunk file whose content does not match its hash is named and dropped", async () => {
  await withDirs(async (dirs) => {
    const chunks = await healthyStores(dirs);
    overwrite(chunks[3], 10, new TextEncoder().encode("BITROT"));
    const r = await check(dirs);
    assert.equal(r.code, 1);
    assert.match(r.line("chunk cache")!, /damaged \(1 chunk files do not match their hash; /);

    const again = await repairAndRecheck(dirs, "chunk cache");
    assert.match(again.line("chunk cache")!, /ok \(19 chunk files/);
    await assert.rejects(Deno.stat(chunks[3]), Deno.errors.NotFound);
  });
});

Deno.test("check: a stale lock of a dead pid is reported; --repair removes it", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    await Deno.writeTextFile(lockPath(dirs.stateDir), `${dead.pid}\n1\n`);
    const r = await check(dirs);
    // The next mount takes a dead pid's lock over: reported, but no fault.
    assert.equal(r.code, 0);
    assert.match(
      r.line("lock")!,
      new RegExp(`stale \\(left by pid ${dead.pid} in .*, which is gone`),
    );

    await repairAndRecheck(dirs, "lock");
    await assert.rejects(Deno.stat(lockPath(dirs.stateDir)), Deno.errors.NotFound);
  });
});

Deno.test("check: --repair is refused while a daemon holds the lock, naming its pid", async () => {
  await withDirs(async (dirs) => {
    await healthyStores(dirs);
    const path = `${dirs.stateDir}/search.db`;
    // Garbage over the page of the stamped values (the first table's root page).
    overwrite(path, 4096, new Uint8Array(4096).fill(0xa5));
    const lock = await acquireLock(dirs.stateDir, { name: "musicfs" });
    try {
      const refused = await check({ ...dirs, repair: true });
      assert.equal(refused.code, 1);
      assert.deepEqual(refused.out, []);
      assert.deepEqual(refused.err, [
        `musicfs: cannot repair while musicfs is running (pid ${Deno.pid}) (stop it first: musicfs unmount)`,
      ]);
      // Without --repair the check still runs next to the daemon.
      const r = await check(dirs);
      assert.equal(r.code, 1);
      assert.match(
        r.line("lock")!,
        new RegExp(`ok \\(held by the running daemon, pid ${Deno.pid};`),
      );
      assert.match(r.line("search snapshot")!, /damaged/, "nothing was repaired");
    } finally {
      await lock.release();
    }
  });
});
