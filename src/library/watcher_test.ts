import assert from "node:assert/strict";
import { Database } from "./db.ts";
import { ParserPool } from "./pool.ts";
import type { LibraryChange } from "./change.ts";
import { Scanner } from "./scanner.ts";
import { type FixtureTags, writeTrack } from "../../tests/fixtures/mod.ts";
import { Walker } from "./walker.ts";
import { LibraryWatcher, type WatchState } from "./watcher.ts";

// Shared for the file: `deno test` type-checks every worker it starts.
const pool = new ParserPool();
const walker = new Walker();

async function withLibrary(
  fn: (lib: string, db: Database, scanner: Scanner, changes: LibraryChange[]) => Promise<void>,
): Promise<void> {
  const lib = await Deno.makeTempDir({ prefix: "musicfs-lib-" });
  const state = await Deno.makeTempDir({ prefix: "musicfs-state-" });
  const db = Database.open(`${state}/library.db`);
  const changes: LibraryChange[] = [];
  const scanner = new Scanner(db, { pool, walker, onChange: (c) => changes.push(c) });
  try {
    await fn(await Deno.realPath(lib), db, scanner, changes);
  } finally {
    scanner.close();
    db.close();
    await Deno.remove(lib, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
}

async function writeMp3(path: string, tags: FixtureTags): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await writeTrack(path, "mp3-id3v24", tags);
}

/** Wait until `cond` holds, checking every 50 ms; fail after `ms` (generous: CI can be slow). */
async function waitFor(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const titles = (db: Database) => new Set(db.allTracks().map((t) => t.title));

Deno.test("watcher picks up added, changed and removed files and folders within seconds", async () => {
  await withLibrary(async (lib, db, scanner, changes) => {
    await writeMp3(`${lib}/A/Album/01.mp3`, { title: "one" });
    await writeMp3(`${lib}/A/Album/02.mp3`, { title: "two" });
    await writeMp3(`${lib}/B/Other/01.mp3`, { title: "other" });
    await scanner.scan([lib]);
    const ac = new AbortController();
    const states: WatchState[] = [];
    const watcher = new LibraryWatcher(scanner, db.origins(), {
      debounceMs: 100,
      onState: (s) => states.push(s),
    });
    const running = watcher.run(ac.signal);
    try {
      // The watch is set up in a worker: events count from when it says it is watching.
      await waitFor("the watch to start", () => states.some((s) => s.mode === "watching"));
      assert.equal(watcher.state.mode, "watching");
      const id2 = db.allTracks().find((t) => t.title === "two")!.id;

      await writeMp3(`${lib}/A/Album/03.mp3`, { title: "three" });
      await waitFor("an added file", () => titles(db).has("three"));
      assert.ok(changes.some((c) => c.added.some((t) => t.title === "three")));

      await writeMp3(`${lib}/A/Album/02.mp3`, { title: "two, retagged" });
      await waitFor("a changed file", () => db.getTrack(id2)?.title === "two, retagged");
      assert.ok(changes.some((c) => c.changed.some((t) => t.id === id2)));

      await Deno.remove(`${lib}/A/Album/01.mp3`);
      await waitFor("a removed file", () => !titles(db).has("one"));
      assert.ok(changes.some((c) => c.removed.some((t) => t.title === "one")));

      // A new folder whose files appear at once (before a watch on it could exist).
      await writeMp3(`${lib}/C/New Album/01.mp3`, { title: "new 1" });
      await writeMp3(`${lib}/C/New Album/02.mp3`, { title: "new 2" });
      await waitFor(
        "files in a new folder",
        () => titles(db).has("new 1") && titles(db).has("new 2"),
      );

      await Deno.rename(`${lib}/B`, `${lib}/B renamed`);
      await waitFor(
        "a renamed folder",
        () =>
          db.allTracks().some((t) => t.relPath === "B renamed/Other/01.mp3") &&
          !db.allTracks().some((t) => t.relPath.startsWith("B/")),
      );

      await Deno.writeTextFile(`${lib}/A/Album/cover.jpg`, "jpeg");
      await waitFor(
        "a new cover",
        () => db.covers().some((c) => c.relPath === "A/Album/cover.jpg"),
      );

      await Deno.remove(`${lib}/C`, { recursive: true });
      await waitFor("a removed folder", () => !titles(db).has("new 1") && !titles(db).has("new 2"));

      // Hidden files never enter the library.
      await writeMp3(`${lib}/A/.hidden.mp3`, { title: "hidden" });
      await writeMp3(`${lib}/A/Album/04.mp3`, { title: "four" });
      await waitFor("a file after a hidden one", () => titles(db).has("four"));
      assert.ok(!titles(db).has("hidden"));

      assert.deepEqual(
        db.allTracks().map((t) => t.relPath).sort(),
        ["A/Album/02.mp3", "A/Album/03.mp3", "A/Album/04.mp3", "B renamed/Other/01.mp3"],
      );
      assert.deepEqual(states.map((s) => s.mode), ["watching"]);
    } finally {
      ac.abort();
      await running;
    }
  });
});

Deno.test("watcher that cannot watch falls back to polling, says why, and rejects when polling fails", async () => {
  await withLibrary(async (lib, db, scanner) => {
    await writeMp3(`${lib}/music/01.mp3`, { title: "one" });
    await scanner.scan([`${lib}/music`]);
    const origin = db.origins()[0];
    // A root that does not exist cannot be watched; the rescan that follows cannot scan it.
    await Deno.rename(`${lib}/music`, `${lib}/moved`);
    const states: WatchState[] = [];
    const watcher = new LibraryWatcher(scanner, [origin], {
      pollMs: 50,
      onState: (s) => states.push(s),
    });
    const ac = new AbortController();
    try {
      await assert.rejects(() => watcher.run(ac.signal), /music/);
      assert.equal(watcher.state.mode, "polling");
      assert.match(watcher.state.reason ?? "", /^cannot watch: /);
      assert.deepEqual(states.map((s) => s.mode), ["polling"]);
      assert.equal(db.trackCount(), 1, "a failed rescan removes nothing");
    } finally {
      ac.abort();
    }
  });
});

Deno.test("polling mode picks up changes with periodic rescans", async () => {
  await withLibrary(async (lib, db, scanner) => {
    await writeMp3(`${lib}/01.mp3`, { title: "one" });
    await scanner.scan([lib]);
    const watcher = new LibraryWatcher(scanner, db.origins(), {
      pollMs: 100,
      pollReason: "network filesystem",
    });
    const ac = new AbortController();
    const running = watcher.run(ac.signal);
    try {
      assert.deepEqual(watcher.state.mode, "polling");
      assert.equal(watcher.state.reason, "network filesystem");
      await writeMp3(`${lib}/02.mp3`, { title: "two" });
      await Deno.remove(`${lib}/01.mp3`);
      await waitFor("a polled change", () => titles(db).has("two") && !titles(db).has("one"));
    } finally {
      ac.abort();
      await running;
    }
  });
});

Deno.test("watcher: a '...' folder counts, hidden ones do not, a symlinked folder added shows up, and what inotify cannot see arrives with the periodic revalidation", async () => {
  await withLibrary(async (lib, db, scanner) => {
    await writeMp3(`${lib}/A/01.mp3`, { title: "one" });
    await scanner.scan([lib]);
    const outside = await Deno.makeTempDir({ prefix: "musicfs-outside-" });
    const ac = new AbortController();
    const watcher = new LibraryWatcher(scanner, db.origins(), {
      debounceMs: 100,
      revalidateMs: 1500,
    });
    const running = watcher.run(ac.signal);
    try {
      await writeMp3(`${lib}/...And You/01.mp3`, { title: "dots" });
      await writeMp3(`${lib}/.git/01.mp3`, { title: "hidden" });
      await waitFor("a '...' folder", () => titles(db).has("dots"));

      await writeMp3(`${outside}/Linked/01.mp3`, { title: "linked" });
      await Deno.symlink(`${outside}/Linked`, `${lib}/Linked`);
      await waitFor("a symlinked folder", () => titles(db).has("linked"));

      // Inside the link's target nothing is watched: the revalidation finds it.
      await writeMp3(`${outside}/Linked/02.mp3`, { title: "behind the link" });
      await waitFor("the periodic revalidation", () => titles(db).has("behind the link"));
      assert.ok(!titles(db).has("hidden"));
      assert.match(
        db.problems().find((p) => p.relPath === "")?.reason ?? "",
        /^1 hidden folder skipped/,
      );
    } finally {
      ac.abort();
      await running;
      await Deno.remove(outside, { recursive: true });
    }
  });
});
