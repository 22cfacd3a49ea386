import assert from "node:assert/strict";
import { type ControlHandlers, controlSocketPath, serveControl } from "../../daemon/mod.ts";
import { Database, type FileUpsert } from "../../library/mod.ts";
import { SearchIndex } from "../../search/mod.ts";
import type { CommandIo } from "./common.ts";
import { searchCommand, type SearchHit } from "./search.ts";

function capture(): { io: CommandIo; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l) => out.push(l), err: (l) => err.push(l) }, out, err };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-cli-search-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function track(relPath: string, tags: FileUpsert["tags"]): Omit<FileUpsert, "originId"> {
  return { relPath, ext: relPath.split(".").pop()!, size: 1000, mtimeMs: 1_700_000_000_000, tags };
}

/**
 * A state dir as a daemon leaves it: library.db with a few tracks (two of them wanting the same
 * file name, so one gets a collision suffix) and a committed search snapshot.
 */
async function mountedStateDir(dir: string): Promise<void> {
  const db = Database.open(`${dir}/library.db`);
  try {
    const origin = db.ensureOrigin("/music");
    const files = [
      track("jazz/kob/01.flac", {
        artist: "Miles Davis",
        album: "Kind of Blue",
        year: 1959,
        title: "So What",
        track: 1,
        genre: "Jazz",
      }),
      track("jazz/kob/02.flac", {
        artist: "Miles Davis",
        album: "Kind of Blue",
        year: 1959,
        title: "Freddie Freeloader",
        track: 2,
        genre: "Jazz",
      }),
      track("rock/a.mp3", { artist: "Band", album: "Twice", title: "Same Song", track: 3 }),
      track("rock/b.mp3", { artist: "Band", album: "Twice", title: "Same Song", track: 3 }),
    ];
    db.applyBatch({ files: files.map((f) => ({ ...f, originId: origin.id })) });
    const index = SearchIndex.create(`${dir}/search.db`, { generation: db.generation });
    await index.indexAll(db.allTracks());
    await index.commit();
    index.close();
    db.checkpoint();
  } finally {
    db.close();
  }
}

const SO_WHAT = "/Artists/Miles Davis/Kind of Blue (1959)/01 - So What.flac";

Deno.test("search without a daemon answers from the state dir with /Artists paths", async () => {
  await withDir(async (dir) => {
    await mountedStateDir(dir);
    const c = capture();
    assert.equal(await searchCommand({ stateDir: dir, query: "so what", io: c.io }), 0);
    assert.deepEqual(c.out, [SO_WHAT]);
    assert.deepEqual(c.err, []);

    const m = capture();
    const code = await searchCommand({
      stateDir: dir,
      query: "same song",
      mountpoint: "/home/me/MusicFS/",
      io: m.io,
    });
    assert.equal(code, 0);
    // The second file by source path is the one renamed, as in the mounted tree.
    assert.deepEqual(m.out.sort(), [
      "/home/me/MusicFS/Artists/Band/Twice/03 - Same Song (2).mp3",
      "/home/me/MusicFS/Artists/Band/Twice/03 - Same Song.mp3",
    ]);
  });
});

Deno.test("search with no match says so in one line on stderr, exit 0", async () => {
  await withDir(async (dir) => {
    await mountedStateDir(dir);
    const c = capture();
    assert.equal(await searchCommand({ stateDir: dir, query: "zzqqxx", io: c.io }), 0);
    assert.deepEqual(c.out, []);
    assert.deepEqual(c.err, ['musicfs: no tracks match "zzqqxx"']);
    const j = capture();
    assert.equal(await searchCommand({ stateDir: dir, query: "zzqqxx", json: true, io: j.io }), 0);
    assert.deepEqual(JSON.parse(j.out.join("\n")).results, []);
    assert.deepEqual(j.err, []);
  });
});

Deno.test("search --json gives the fields of each match", async () => {
  await withDir(async (dir) => {
    await mountedStateDir(dir);
    const c = capture();
    assert.equal(await searchCommand({ stateDir: dir, query: "freddie", json: true, io: c.io }), 0);
    const body = JSON.parse(c.out.join("\n"));
    assert.equal(body.source, "offline");
    assert.equal(body.mountpoint, null);
    assert.equal(body.results.length, 1);
    const hit = body.results[0] as SearchHit;
    assert.equal(hit.path, "/Artists/Miles Davis/Kind of Blue (1959)/02 - Freddie Freeloader.flac");
    assert.equal(hit.artist, "Miles Davis");
    assert.equal(hit.album, "Kind of Blue");
    assert.equal(hit.title, "Freddie Freeloader");
    assert.equal(hit.year, 1959);
    assert.equal(hit.genre, "Jazz");
    assert.equal(hit.ext, "flac");
    assert.ok(hit.score > 0);
  });
});

Deno.test("search offline follows a custom /Artists layout", async () => {
  await withDir(async (dir) => {
    await mountedStateDir(dir);
    const c = capture();
    const code = await searchCommand({
      stateDir: dir,
      query: "so what",
      layout: "{genre}/{artist}/{title}",
      io: c.io,
    });
    assert.equal(code, 0);
    assert.deepEqual(c.out, ["/Artists/Jazz/Miles Davis/So What.flac"]);

    const bad = capture();
    assert.equal(
      await searchCommand({ stateDir: dir, query: "x", layout: "{nope}", io: bad.io }),
      2,
    );
    assert.match(bad.err[0], /^musicfs: Unknown layout field: \{nope\}.* \(fix the --layout/);
  });
});

Deno.test("search offline still answers with a corrupted snapshot, without writing", async () => {
  await withDir(async (dir) => {
    await mountedStateDir(dir);
    const path = `${dir}/search.db`;
    const bytes = await Deno.readFile(path);
    // Garbage over the page of the stamped values (the first table's root page).
    bytes.fill(0xa5, 4096, 8192);
    await Deno.writeFile(path, bytes);
    const c = capture();
    assert.equal(await searchCommand({ stateDir: dir, query: "so what", io: c.io }), 0);
    assert.deepEqual(c.out, [SO_WHAT]);
    assert.deepEqual(await Deno.readFile(path), bytes, "a read-only search leaves it as it was");
  });
});

Deno.test("search in a state dir that was never mounted says so", async () => {
  await withDir(async (dir) => {
    const c = capture();
    assert.equal(await searchCommand({ stateDir: `${dir}/state`, query: "anything", io: c.io }), 1);
    assert.deepEqual(c.out, []);
    assert.equal(c.err.length, 1);
    assert.match(
      c.err[0],
      /^musicfs: musicfs is not running and .*\/state holds no library \(mount one first: musicfs mount <library>\)$/,
    );
  });
});

Deno.test("search rejects an empty query and a bad limit as usage errors", async () => {
  await withDir(async (dir) => {
    const c = capture();
    assert.equal(await searchCommand({ stateDir: dir, query: "  ", io: c.io }), 2);
    assert.equal(await searchCommand({ stateDir: dir, query: "x", limit: 0, io: c.io }), 2);
    assert.match(c.err[1], /^musicfs: invalid --limit 0 \(use a whole number from 1 to 1000\)$/);
  });
});

Deno.test("search asks the running daemon first and prefixes its mountpoint", async () => {
  await withDir(async (dir) => {
    const asked: [string, number][] = [];
    const handlers: ControlHandlers = {
      status: () => ({ pid: Deno.pid, mountpoint: "/srv/music" }),
      search: (q, limit) => {
        asked.push([q, limit]);
        return Promise.resolve({
          results: [{
            id: 7,
            score: 3.5,
            path: "/Artists/A/B (2001)/01 - C.flac",
            artist: "A",
            albumArtist: "A",
            album: "B",
            title: "C",
            year: 2001,
            genre: "Pop",
            ext: "flac",
          }],
        });
      },
      rescan: () => Promise.resolve({ started: true }),
      shutdown: () => Promise.resolve(),
    };
    const server = await serveControl({ socketPath: controlSocketPath(dir), handlers });
    try {
      const c = capture();
      assert.equal(await searchCommand({ stateDir: dir, query: " c ", limit: 5, io: c.io }), 0);
      assert.deepEqual(asked, [["c", 5]]);
      assert.deepEqual(c.out, ["/srv/music/Artists/A/B (2001)/01 - C.flac"]);

      const j = capture();
      assert.equal(await searchCommand({ stateDir: dir, query: "c", json: true, io: j.io }), 0);
      const body = JSON.parse(j.out.join("\n"));
      assert.equal(body.source, "daemon");
      assert.equal(body.mountpoint, "/srv/music");
      assert.equal(body.results[0].id, 7);
      assert.equal(asked[1][1], 20, "the default limit");
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("search falls back to the state dir when the daemon does not answer in time", async () => {
  await withDir(async (dir) => {
    await mountedStateDir(dir);
    await Deno.writeTextFile(`${dir}/mountpoint`, "/home/me/MusicFS");
    const controller = new AbortController();
    // Slower than the client's bound (but not forever: the server's shutdown waits for it).
    const hang = () =>
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("late")), 1500));
    const handlers: ControlHandlers = {
      status: hang,
      search: hang,
      rescan: hang,
      shutdown: hang,
    };
    const socketPath = `${dir}/control.sock`;
    const server = await serveControl({ socketPath, handlers, signal: controller.signal });
    try {
      const c = capture();
      const code = await searchCommand({
        stateDir: dir,
        socketPath,
        requestTimeoutMs: 300,
        query: "so what",
        json: true,
        io: c.io,
      });
      assert.equal(code, 0, c.err.join("\n"));
      const answer = JSON.parse(c.out.join("\n"));
      assert.equal(answer.source, "offline");
      assert.deepEqual(answer.results.map((h: SearchHit) => h.path), [SO_WHAT]);
      assert.equal(c.err.length, 1);
      assert.match(
        c.err[0],
        /^musicfs: the daemon did not answer GET \/search within 0\.3 s; answering from the state dir instead$/,
      );
    } finally {
      controller.abort();
      await server.finished.catch(() => {});
    }
  });
});
