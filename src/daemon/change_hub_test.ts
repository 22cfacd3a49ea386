import assert from "node:assert/strict";
import { INO, TRACK_INO_BASE, VirtualTree } from "../fs/mod.ts";
import { emptyChange, type LibraryChange, type Problem, type TrackRecord } from "../library/mod.ts";
import { SearchIndex } from "../search/mod.ts";
import { ChangeHub, type KernelNotifier } from "./change_hub.ts";
import { ProbeFiles } from "./probe_files.ts";

const origins = [{ id: 1, path: "/music" }];

function rec(id: number, relPath: string, tags: Partial<TrackRecord> = {}): TrackRecord {
  return {
    id,
    originId: 1,
    relPath,
    ext: "flac",
    size: 1000 + id,
    mtimeMs: 1_600_000_000_000 + id,
    ...tags,
  };
}

function change(c: Partial<LibraryChange>): LibraryChange {
  return { ...emptyChange(2), ...c };
}

/** The FUSE session's notify calls, recorded (the one fake: no kernel in a unit test). */
class RecordingKernel implements KernelNotifier {
  calls: string[] = [];
  notifyInvalEntry(parent: number, name: string) {
    this.calls.push(`entry ${parent} ${name}`);
  }
  notifyDelete(parent: number, child: number, name: string) {
    this.calls.push(`delete ${parent} ${child} ${name}`);
  }
  notifyInvalInode(ino: number, off: number, len: number) {
    this.calls.push(`inode ${ino} ${off} ${len}`);
  }
}

function names(tree: VirtualTree, ino: number): string[] {
  return tree.children(ino)!.map((e) => e.name);
}

function setup(tracks: TrackRecord[], problems: Problem[] = []) {
  const tree = new VirtualTree({ origins, tracks, uid: 1000, gid: 1000 });
  const search = SearchIndex.create("unused-in-memory.db");
  for (const t of tracks) search.indexFile(t);
  const saved: unknown[] = [];
  const probes = new ProbeFiles(new Map(origins.map((o) => [o.id, o.path])));
  probes.seed(tracks);
  let problemsChangedCalls = 0;
  const hub = new ChangeHub({
    tree,
    search,
    names: { saveNames: (rows) => void saved.push(...rows) },
    problems: () => problems,
    probes,
    onProblemsChanged: () => problemsChangedCalls++,
  });
  const kernel = new RecordingKernel();
  hub.kernel = kernel;
  return { tree, search, saved, probes, hub, kernel, problemsChanged: () => problemsChangedCalls };
}

const abbey = rec(1, "Beatles/Abbey Road/01 Come Together.flac", {
  artist: "The Beatles",
  album: "Abbey Road",
  title: "Come Together",
  track: 1,
});
const kind = rec(2, "Radiohead/Kid A/01 Everything.flac", {
  artist: "Radiohead",
  album: "Kid A",
  title: "Everything In Its Right Place",
  track: 1,
});

/** Same tags as {@link abbey} in another folder: one name per album folder, so a suffix. */
const abbeyCopy = rec(3, "Beatles/Abbey Road (copy)/01 Come Together.flac", {
  artist: "The Beatles",
  album: "Abbey Road",
  title: "Come Together",
  track: 1,
});

Deno.test("change hub: an added track reaches the tree, search, the kernel and the probes", () => {
  const { tree, search, saved, probes, hub, kernel } = setup([abbey]);
  assert.deepEqual(names(tree, INO.artists), ["The Beatles"]);
  assert.deepEqual(search.search("everything").map((r) => r.id), []);

  hub.apply(change({ added: [kind, abbeyCopy] }));

  assert.deepEqual(names(tree, INO.artists), ["Radiohead", "The Beatles"]);
  assert.deepEqual(search.search("everything").map((r) => r.id), [2]);
  // /Artists lists a new entry: its listing (and dentry cache) must be dropped by the kernel.
  assert.ok(kernel.calls.includes(`inode ${INO.artists} 0 -1`), kernel.calls.join("\n"));
  assert.ok(saved.length > 0, "the suffixed name the tree gave the copy is stored");
  assert.equal(probes.get(1), "/music/Beatles/Abbey Road/01 Come Together.flac");
});

Deno.test("change hub: a removed track leaves tree and search, the kernel hears of the delete", () => {
  const { tree, search, probes, hub, kernel } = setup([abbey, kind]);
  const radiohead = tree.lookup(INO.artists, "Radiohead")!;
  hub.apply(change({ removed: [kind] }));
  assert.deepEqual(names(tree, INO.artists), ["The Beatles"]);
  assert.equal(tree.get(TRACK_INO_BASE + 2), undefined);
  assert.deepEqual(search.search("everything").map((r) => r.id), []);
  assert.ok(
    kernel.calls.some((c) => c.startsWith(`delete ${INO.artists} ${radiohead.ino} Radiohead`)),
    kernel.calls.join("\n"),
  );
  assert.equal(probes.get(1), "/music/Beatles/Abbey Road/01 Come Together.flac");

  hub.apply(change({ removed: [abbey] }));
  assert.equal(probes.get(1), undefined, "the probe file went with its track");
});

Deno.test("change hub: a changed track is re-indexed and its directories invalidated", () => {
  const { tree, search, hub, kernel } = setup([abbey]);
  hub.apply(change({ changed: [{ ...abbey, title: "Something", size: 5 }] }));
  assert.deepEqual(search.search("something").map((r) => r.id), [1]);
  const album = tree.lookup(tree.lookup(INO.artists, "The Beatles")!.ino, "Abbey Road")!;
  assert.ok(names(tree, album.ino).some((n) => n.includes("Something")));
  assert.ok(kernel.calls.length > 0);
});

Deno.test("change hub: a changed problem list is re-read and its listener told", () => {
  const problems: Problem[] = [];
  const { tree, hub, problemsChanged } = setup([abbey], problems);
  const before = tree.stats().problems;
  problems.push({ originId: 1, relPath: "bad.mp3", reason: "truncated MP3 frame" });
  hub.apply(change({ problemsChanged: true }));
  assert.equal(problemsChanged(), 1);
  assert.equal(tree.stats().problems, before + 1);
});

Deno.test("change hub: before the mount nothing is sent; removeTracks serves the source check", () => {
  const { tree, search, hub, kernel } = setup([abbey, kind]);
  hub.kernel = undefined;
  hub.removeTracks([kind]);
  assert.equal(tree.get(TRACK_INO_BASE + 2), undefined);
  assert.deepEqual(search.search("everything").map((r) => r.id), []);
  assert.deepEqual(kernel.calls, []);
});

Deno.test("change hub: names that cannot be stored are kept and stored with the next batch", () => {
  const tree = new VirtualTree({ origins, tracks: [abbey], uid: 1000, gid: 1000 });
  const stored: unknown[] = [];
  let fail = true;
  const hub = new ChangeHub({
    tree,
    search: SearchIndex.create("unused-in-memory.db"),
    names: {
      saveNames: (rows) => {
        if (fail) throw new Error("database or disk is full");
        stored.push(...rows);
      },
    },
    problems: () => [],
  });
  hub.apply(change({ added: [abbeyCopy] }));
  assert.deepEqual(stored, []);
  fail = false;
  hub.saveNames();
  assert.ok(stored.length > 0, "the rows of the failed store came with the retry");
});
