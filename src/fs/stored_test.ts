import assert from "node:assert/strict";
import { Database } from "../library/db.ts";
import type { FileUpsert } from "../library/db.ts";
import type { PackedTreeRows } from "../library/tree_rows.ts";
import type { Tags } from "../library/types.ts";
import { INO, type Node, VirtualTree } from "./tree.ts";

/** Every entry below the four views: path -> "kind ino attrs". */
function listing(tree: VirtualTree, dirTimes = true): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (ino: number, path: string) => {
    for (const { name, node } of tree.children(ino) ?? []) {
      const a = tree.attr(node);
      const acc = tree.access(node);
      out.set(
        `${path}/${name}`,
        `${node.kind} ${node.ino} ${a.size} ${a.mode} ${a.nlink} ${
          node.kind === "dir" && !dirTimes ? "" : a.mtimeMs
        } ${acc.mode}`,
      );
      const again = tree.lookup(ino, name);
      assert.equal(again?.ino, node.ino, `lookup of ${path}/${name}`);
      assert.equal(tree.get(node.ino)?.kind, node.kind, `get of ${path}/${name}`);
      if (node.kind === "dir") walk(node.ino, `${path}/${name}`);
      if (node.kind === "track") {
        assert.equal(tree.sourcePath(node), `/music/${node.track.relPath}`);
      }
    }
  };
  for (const v of ["Artists", "Albums", "Genres", "Years"]) {
    const d = tree.lookup(INO.root, v)!;
    const a = tree.attr(d);
    out.set(`/${v}`, `dir ${d.ino} ${a.nlink}`);
    walk(d.ino, `/${v}`);
  }
  return out;
}

function file(relPath: string, tags: Tags): FileUpsert {
  const ext = relPath.slice(relPath.lastIndexOf(".") + 1);
  return { originId: 1, relPath, ext, size: relPath.length * 1000, mtimeMs: 1.7e12, tags };
}

/** A library with what real ones hold: discs, compilations, clashing titles, covers. */
function library(): FileUpsert[] {
  const out: FileUpsert[] = [];
  for (let d = 1; d <= 2; d++) {
    for (let n = 1; n <= 3; n++) {
      out.push(file(`Pink Floyd/The Wall/CD${d}/0${n} Song ${d}${n}.flac`, {
        artist: "Pink Floyd",
        album: "The Wall",
        title: `Song ${d}${n}`,
        track: n,
        disc: d,
        discTotal: 2,
        year: 1979,
        genre: "Rock",
        genres: ["Rock", "Progressive Rock"],
      }));
    }
  }
  for (let n = 1; n <= 4; n++) {
    out.push(file(`Compilations/Hits/${n}.mp3`, {
      artist: `Artist ${n}`,
      album: "Hits",
      albumArtist: "Various Artists",
      compilation: true,
      // Two tracks want the same name: one gets a suffix.
      title: n <= 2 ? "Same Title" : `Hit ${n}`,
      track: n <= 2 ? 1 : n,
      year: 2001 + (n % 2),
      genre: "Pop",
      picture: "image/jpeg",
    }));
  }
  out.push(file("loose/untagged.ogg", {}));
  out.push(file("Queen/News/01.flac", {
    albumArtist: "Queen",
    artist: "Queen",
    album: "News of the World",
    title: "We Will Rock You",
    track: 1,
    year: 1977,
    genre: "Rock",
  }));
  out.push(file("queen/news/02.flac", {
    albumArtist: "QUEEN",
    artist: "QUEEN",
    album: "News Of The World",
    title: "We Are The Champions",
    track: 2,
    year: 1977,
  }));
  return out;
}

Deno.test("stored tree: the rows serve exactly what the tree in memory serves, before and after changes", async () => {
  const dir = await Deno.makeTempDir();
  const db = Database.open(`${dir}/library.db`);
  try {
    const origin = db.ensureOrigin("/music");
    assert.equal(origin.id, 1);
    db.applyBatch({
      files: library(),
      covers: [
        {
          originId: 1,
          dir: "Pink Floyd/The Wall",
          relPath: "Pink Floyd/The Wall/folder.jpg",
          size: 5,
          mtimeMs: 1.6e12,
        },
        {
          originId: 1,
          dir: "Queen/News",
          relPath: "Queen/News/cover.png",
          size: 7,
          mtimeMs: 1.6e12,
        },
      ],
    });
    const origins = db.origins();
    const content = () => ({
      tracks: db.allTracks(),
      covers: db.covers(),
      names: db.names(),
      playlists: db.playlists(),
    });
    const tree = new VirtualTree({ origins, uid: 1000, gid: 1000, ...content() });
    const stamp = () => ({ generation: db.generation, layout: "", stats: "{}" });
    // Stored as a dump stores them: packed, a few rows a part (parts end mid-directory).
    const cursor = tree.rowCursor();
    const part: PackedTreeRows = { values: [], count: 0 };
    let parts = 0;
    let dumped = 0;
    for (let done = false; !done; parts++) {
      done = cursor.fill(part, 3);
      dumped += part.count;
      const last = done ? stamp() : undefined;
      const names = parts === 0 ? tree.takeNameChanges() : [];
      db.saveTree(
        { clear: parts === 0, upserts: [], packed: part, deletes: [], stamp: last },
        names,
      );
    }
    assert.equal(dumped, [...tree.allRows()].length);
    assert.ok(parts > 10);
    const stored = () =>
      new VirtualTree({
        origins,
        uid: 1000,
        gid: 1000,
        stored: { source: db, stats: tree.stats() },
      });

    const want = listing(tree);
    assert.ok(
      want.has("/Artists/Pink Floyd/The Wall (1979)/cover.jpg"),
      [...want.keys()].join("\n"),
    );
    assert.ok([...want.keys()].some((k) => k.includes("Same Title (2)")));
    const first = stored();
    assert.equal(first.loaded, false);
    assert.deepEqual(listing(first), want);

    // Changes reach the rows as deltas: retitle, remove, add a rival, a new cover.
    tree.recordRows(true);
    const tracks = db.allTracks();
    const wall = tracks.find((t) => t.relPath.endsWith("01 Song 11.flac"))!;
    const change = db.applyBatch({
      files: [
        file(wall.relPath, { ...wall, title: "In the Flesh?" }),
        file("Compilations/Hits/5.mp3", {
          artist: "Artist 5",
          album: "Hits",
          albumArtist: "Various Artists",
          compilation: true,
          title: "Same Title",
          track: 1,
          year: 2001,
        }),
      ],
      remove: [{ originId: 1, relPath: "queen/news/02.flac" }],
      covers: [{
        originId: 1,
        dir: "Compilations/Hits",
        relPath: "Compilations/Hits/front.jpg",
        size: 9,
        mtimeMs: 1.6e12,
      }, {
        // The same image, rewritten: its size changes under every name it has.
        originId: 1,
        dir: "Pink Floyd/The Wall",
        relPath: "Pink Floyd/The Wall/folder.jpg",
        size: 50,
        mtimeMs: 1.7e12,
      }],
    });
    tree.apply(change);
    const rows = tree.takeRows();
    assert.ok(rows.upserts.length > 0 && rows.deletes.length > 0);
    db.saveTree({ ...rows, stamp: stamp() }, tree.takeNameChanges());
    assert.ok(rows.attrs.length > 0);
    const after = listing(tree);
    assert.notDeepEqual(after, want);
    assert.match(after.get("/Albums/The Wall (1979) - Pink Floyd/cover.jpg")!, /^cover \d+ 50 /);
    assert.deepEqual(listing(stored()), after);

    // A restart builds the same tree from the library (names stay put; folder times are the
    // build's).
    assert.deepEqual(
      listing(new VirtualTree({ origins, uid: 1000, gid: 1000, ...content() }), false),
      listing(tree, false),
    );

    // load(): the tree takes over; what the kernel was given and now differs is invalidated.
    const served = stored();
    listing(served);
    const same = await served.load(content());
    assert.equal(same.differences, 0);
    assert.equal(served.loaded, true);
    await served.whenLoaded;
    assert.deepEqual(listing(served, false), listing(tree, false));

    const stale = stored();
    listing(stale);
    db.saveTree({ upserts: [], deletes: [[INO.artists, "Pink Floyd"]] });
    assert.equal(db.treeStamp(), undefined, "a part without a stamp unstamps the rows");
    const { differences, invalidations } = await stale.load(content());
    assert.ok(differences >= 1);
    assert.ok(invalidations.some((i) => i.kind === "entry" && i.name === "Pink Floyd"));
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stored tree: search folders wait for the tree; status counts come from the stamp", async () => {
  const dir = await Deno.makeTempDir();
  const db = Database.open(`${dir}/library.db`);
  try {
    db.ensureOrigin("/music");
    db.applyBatch({ files: library() });
    const origins = db.origins();
    const built = new VirtualTree({ origins, uid: 0, gid: 0, tracks: db.allTracks() });
    db.saveTree({ clear: true, upserts: [...built.allRows()], deletes: [] });
    const tree = new VirtualTree({
      origins,
      uid: 0,
      gid: 0,
      stored: { source: db, stats: built.stats() },
    });
    assert.equal(tree.stats().tracks, built.stats().tracks);
    assert.throws(() => tree.apply({}), /before the tree is built/);
    let loaded = false;
    tree.whenLoaded.then(() => (loaded = true));
    await Promise.resolve();
    assert.equal(loaded, false);
    await tree.load({ tracks: db.allTracks() });
    await tree.whenLoaded;
    const hit = db.allTracks()[0];
    const { node } = tree.setSearchResults("q", [hit.id]);
    assert.equal((tree.children(node.ino) ?? []).length, 1);
    const n: Node | undefined = tree.get(node.ino);
    assert.equal(n?.kind, "dir");
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
