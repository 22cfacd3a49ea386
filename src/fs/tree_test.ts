import assert from "node:assert/strict";
import type { TrackRecord } from "../library/types.ts";
import { LayoutError } from "./layout.ts";
import {
  type CoverImage,
  INO,
  type Invalidation,
  type Node,
  TRACK_INO_BASE,
  type TreeOptions,
  VirtualTree,
} from "./tree.ts";

const origins = [{ id: 1, path: "/music" }, { id: 2, path: "/nas/music/" }];

function rec(id: number, relPath: string, tags: Partial<TrackRecord> = {}): TrackRecord {
  const ext = relPath.slice(relPath.lastIndexOf(".") + 1);
  return {
    id,
    originId: 1,
    relPath,
    ext,
    size: 1000 + id,
    mtimeMs: 1_600_000_000_000 + id,
    ...tags,
  };
}

/** Removed tracks as the library reports them (the tree goes by their ids). */
function removedRecs(...ids: number[]): TrackRecord[] {
  return ids.map((id) => rec(id, `gone/${id}.mp3`));
}

function build(tracks: TrackRecord[], opts: Partial<TreeOptions> = {}): VirtualTree {
  return new VirtualTree({ origins, tracks, uid: 1234, gid: 5678, ...opts });
}

function at(tree: VirtualTree, path: string): Node | undefined {
  let node: Node | undefined = tree.get(INO.root);
  for (const name of path.split("/").filter(Boolean)) {
    if (!node) return undefined;
    node = tree.lookup(node.ino, name);
  }
  return node;
}

function names(tree: VirtualTree, path: string): string[] {
  const dir = at(tree, path);
  assert.ok(dir, `${path} exists`);
  return tree.children(dir.ino)!.map((e) => e.name);
}

/** Every path of the tree with what it leads to: `kind ino [track id]`. */
function snapshot(tree: VirtualTree): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (ino: number, path: string) => {
    for (const { name, node } of tree.children(ino)!) {
      const p = `${path}/${name}`;
      const extra = node.kind === "track"
        ? ` #${node.track.id}`
        : node.kind === "symlink"
        ? ` -> ${node.target}`
        : "";
      out.set(p, `${node.kind} ${node.ino}${extra}`);
      if (node.kind === "dir") walk(node.ino, p);
    }
  };
  walk(INO.root, "");
  return out;
}

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(xs: T[], rnd: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** A messy library: shared titles, missing tags, multi-disc albums, two origins. */
function randomLibrary(n: number, seed: number): TrackRecord[] {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const out: TrackRecord[] = [];
  for (let id = 1; id <= n; id++) {
    const artist = pick(["A", "B", "C/D", "Ärger", undefined]);
    const album = pick(["One", "Two", "Three", undefined]);
    out.push({
      ...rec(id, `${pick(["x", "y", "z"])}/${id}.${pick(["mp3", "flac"])}`, {
        artist,
        albumArtist: rnd() < 0.2 ? "Various Artists" : undefined,
        album,
        title: pick(["Intro", "Song", "Outro", undefined]),
        track: rnd() < 0.9 ? 1 + Math.floor(rnd() * 3) : undefined,
        disc: rnd() < 0.3 ? 1 + Math.floor(rnd() * 2) : undefined,
        year: pick([1990, 2000, undefined]),
        genre: pick(["Rock", "Jazz", undefined]),
      }),
      originId: pick([1, 2]),
    });
  }
  return out;
}

Deno.test("every track appears once under each of the four views", () => {
  const tree = build([
    rec(1, "ac/01.flac", {
      artist: "AC/DC",
      album: "Back in Black",
      title: "Hells Bells",
      track: 1,
      year: 1980,
      genre: "Rock",
    }),
  ]);
  assert.deepEqual(names(tree, "/"), [
    ".musicfs",
    ".search",
    "Albums",
    "Artists",
    "Genres",
    "Playlists",
    "Years",
  ]);
  const ino = TRACK_INO_BASE + 1;
  for (
    const p of [
      "/Artists/AC_DC/Back in Black (1980)/01 - Hells Bells.flac",
      "/Albums/Back in Black (1980) - AC_DC/01 - Hells Bells.flac",
      "/Genres/Rock/AC_DC/Back in Black (1980)/01 - Hells Bells.flac",
      "/Years/1980/AC_DC - Back in Black/01 - Hells Bells.flac",
    ]
  ) {
    const n = at(tree, p);
    assert.equal(n?.kind, "track", p);
    assert.equal(n.ino, ino);
  }
  assert.equal(
    tree.sourcePath(at(tree, "/Years/1980/AC_DC - Back in Black/01 - Hells Bells.flac") as never),
    "/music/ac/01.flac",
  );
  assert.deepEqual(names(tree, "/.search"), []);
  assert.deepEqual(names(tree, "/.musicfs"), ["problems.txt", "status.json"]);
  assert.equal(tree.pathOf(ino), "/Artists/AC_DC/Back in Black (1980)/01 - Hells Bells.flac");
});

Deno.test("missing tags fall back per SPEC in every view", () => {
  const tree = build([rec(1, "loose/some file.mp3")]);
  for (
    const p of [
      "/Artists/Unknown Artist/Unknown Album/some file.mp3",
      "/Albums/Unknown Album - Unknown Artist/some file.mp3",
      "/Genres/Unknown Genre/Unknown Artist/Unknown Album/some file.mp3",
      "/Years/Unknown Year/Unknown Artist - Unknown Album/some file.mp3",
    ]
  ) assert.equal(at(tree, p)?.kind, "track", p);
  const onlyArtist = build([rec(1, "a.mp3", { artist: "Solo", title: "T", track: 2 })]);
  assert.ok(at(onlyArtist, "/Artists/Solo/Unknown Album/02 - T.mp3"));
});

Deno.test("multi-disc albums get a D- prefix, single-disc albums do not", () => {
  const tree = build([
    rec(1, "m/1.flac", {
      albumArtist: "X",
      album: "Multi",
      title: "A",
      track: 1,
      disc: 1,
      discTotal: 2,
    }),
    rec(2, "m/2.flac", { albumArtist: "X", album: "Multi", title: "B", track: 1, disc: 1 }),
    rec(3, "s/1.flac", {
      albumArtist: "X",
      album: "Single",
      title: "C",
      track: 1,
      disc: 1,
      discTotal: 1,
    }),
    rec(4, "d/1.flac", { albumArtist: "X", album: "Seen", title: "D", track: 1, disc: 1 }),
    rec(5, "d/2.flac", { albumArtist: "X", album: "Seen", title: "E", track: 1, disc: 2 }),
    rec(6, "d/3.flac", { albumArtist: "X", album: "Seen", title: "F" }),
  ]);
  assert.deepEqual(names(tree, "/Artists/X/Multi"), ["1-01 - A.flac", "1-01 - B.flac"]);
  assert.deepEqual(names(tree, "/Artists/X/Single"), ["01 - C.flac"]);
  assert.deepEqual(names(tree, "/Albums/Seen - X"), ["1-01 - D.flac", "2-01 - E.flac", "F.flac"]);
});

Deno.test("a compilation (album artist Various Artists) stays one album", () => {
  const tracks = ["P", "Q", "R"].map((artist, i) =>
    rec(i + 1, `comp/${i}.mp3`, {
      artist,
      albumArtist: "Various Artists",
      album: "Hits",
      title: `Song ${artist}`,
      track: i + 1,
      year: 2001,
      compilation: true,
    })
  );
  const tree = build(tracks);
  assert.deepEqual(names(tree, "/Artists"), ["Various Artists"]);
  assert.deepEqual(names(tree, "/Artists/Various Artists/Hits (2001)"), [
    "01 - Song P.mp3",
    "02 - Song Q.mp3",
    "03 - Song R.mp3",
  ]);
  assert.deepEqual(names(tree, "/Albums"), ["Hits (2001) - Various Artists"]);
});

Deno.test("colliding names get suffixes by source path whatever the input order, listed in problems.txt", () => {
  const tracks = [
    rec(1, "b/x.mp3", { albumArtist: "A", album: "L", title: "Same", track: 1 }),
    rec(2, "a/x.mp3", { albumArtist: "A", album: "L", title: "Same", track: 1 }),
    rec(3, "c/x.mp3", { albumArtist: "A", album: "L", title: "Same", track: 1 }),
  ];
  for (const order of [tracks, [...tracks].reverse(), [tracks[1], tracks[2], tracks[0]]]) {
    const tree = build(order);
    const dir = "/Artists/A/L";
    assert.deepEqual(names(tree, dir), ["01 - Same (2).mp3", "01 - Same (3).mp3", "01 - Same.mp3"]);
    assert.equal((at(tree, `${dir}/01 - Same.mp3`) as { track: TrackRecord }).track.id, 2);
    assert.equal((at(tree, `${dir}/01 - Same (2).mp3`) as { track: TrackRecord }).track.id, 1);
    assert.equal((at(tree, `${dir}/01 - Same (3).mp3`) as { track: TrackRecord }).track.id, 3);
    const text = new TextDecoder().decode(tree.content(tree.get(INO.problems) as never));
    assert.match(
      text,
      /renamed: \/Artists\/A\/L\/01 - Same \(2\)\.mp3 \(name taken: 01 - Same\.mp3; source: \/music\/b\/x\.mp3\)/,
    );
    assert.equal(tree.collisions().length, 8, "2 in each of the 4 views");
  }
});

Deno.test("inode numbers are stable across two builds in different orders", () => {
  const lib = randomLibrary(600, 7);
  const covers: CoverImage[] = [{
    originId: 1,
    dir: "x",
    relPath: "x/cover.jpg",
    ext: "jpg",
    size: 10,
  }];
  const a = snapshot(build(lib, { covers }));
  const b = snapshot(build(shuffle(lib, mulberry32(99)), { covers }));
  assert.deepEqual(b, a);
  assert.ok(a.size > 2000);
  // Distinct objects have distinct numbers; a track keeps one number in all its places.
  const owner = new Map<number, string>();
  for (const [path, what] of a) {
    const [kind, ino, id] = what.split(" ");
    const key = kind === "dir" ? path : kind === "track" ? id : kind;
    if (kind === "cover") continue;
    const prev = owner.get(Number(ino));
    assert.ok(prev === undefined || prev === key, `${ino} held by ${prev} and ${key}`);
    owner.set(Number(ino), key);
    if (kind === "track") assert.equal(Number(ino), TRACK_INO_BASE + Number(id.slice(1)));
  }
});

Deno.test("attributes: modes, owner, link counts, source size and mtime", () => {
  const tree = build([
    rec(1, "a/1.flac", { albumArtist: "A", album: "L", title: "T", track: 1 }),
    rec(2, "a/2.flac", { albumArtist: "A", album: "M", title: "T", track: 1 }),
  ]);
  const file = tree.attr(at(tree, "/Artists/A/L/01 - T.flac")!);
  assert.deepEqual(
    { ...file },
    {
      ino: TRACK_INO_BASE + 1,
      uid: 1234,
      gid: 5678,
      size: 1001,
      mode: 0o100444,
      nlink: 4,
      mtimeMs: 1_600_000_000_001,
      ctimeMs: 1_600_000_000_001,
    },
  );
  const dir = tree.attr(at(tree, "/Artists/A")!);
  assert.equal(dir.mode, 0o40555);
  assert.equal(dir.nlink, 4, "2 + two album subdirectories");
  assert.equal(dir.uid, 1234);
  assert.equal(tree.attr(at(tree, "/Artists/A/L")!).nlink, 2);
  assert.equal(tree.attr(tree.get(INO.root)!).nlink, 2 + 7);
  const status = tree.get(INO.status)!;
  assert.equal(tree.attr(status).mode, 0o100444);
  assert.equal(tree.attr(status).size, tree.content(status as never).length);
});

Deno.test("children are sorted and agree with lookup", () => {
  const lib = randomLibrary(300, 3);
  const tree = build(lib);
  for (const [path, what] of snapshot(tree)) {
    if (!what.startsWith("dir")) continue;
    const list = tree.children(Number(what.split(" ")[1]))!;
    const sorted = [...list].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    assert.deepEqual(list.map((e) => e.name), sorted.map((e) => e.name), path);
    for (const e of list) assert.equal(tree.lookup(Number(what.split(" ")[1]), e.name), e.node);
  }
  assert.equal(tree.children(TRACK_INO_BASE + 1), undefined, "a file has no children");
  assert.equal(tree.lookup(INO.artists, "nobody"), undefined);
});

Deno.test("covers show in the album folders of every view, first source folder by path", () => {
  const tracks = [
    rec(1, "alb/1.flac", {
      albumArtist: "A",
      album: "L",
      title: "T",
      track: 1,
      genre: "G",
      year: 2000,
    }),
    rec(2, "alb/cd2/2.flac", {
      albumArtist: "A",
      album: "L",
      title: "U",
      track: 2,
      genre: "G",
      year: 2000,
    }),
    rec(3, "other/3.flac", { albumArtist: "B", album: "N", title: "V", track: 1 }),
  ];
  const covers: CoverImage[] = [
    { originId: 1, dir: "alb/cd2", relPath: "alb/cd2/front.png", ext: "png", size: 7, mtimeMs: 5 },
    { originId: 1, dir: "alb", relPath: "alb/folder.jpg", ext: "jpg", size: 9, mtimeMs: 6 },
    { originId: 1, dir: "alb", relPath: "alb/cover.jpg", ext: "jpg", size: 8, mtimeMs: 6 },
  ];
  const tree = build(tracks, { covers });
  const dirs = [
    "/Artists/A/L (2000)",
    "/Albums/L (2000) - A",
    "/Genres/G/A/L (2000)",
    "/Years/2000/A - L",
  ];
  const inos = new Set<number>();
  for (const d of dirs) {
    assert.deepEqual(names(tree, d), ["01 - T.flac", "02 - U.flac", "cover.jpg"], d);
    const c = at(tree, `${d}/cover.jpg`)!;
    assert.equal(c.kind, "cover");
    assert.equal(tree.sourcePath(c as never), "/music/alb/cover.jpg");
    assert.equal(tree.attr(c).size, 8);
    inos.add(c.ino);
  }
  assert.equal(inos.size, 1);
  assert.equal(tree.attr(at(tree, `${dirs[0]}/cover.jpg`)!).nlink, 4);
  assert.deepEqual(names(tree, "/Artists/B/N"), ["01 - V.flac"]);
  assert.deepEqual(names(tree, "/Artists/A"), ["L (2000)"]);
});

function kinds(inv: Invalidation[]): string[] {
  return inv.map((i) =>
    i.kind === "inode"
      ? `inode ${i.ino}`
      : i.kind === "entry"
      ? `entry ${i.parent} ${i.name}`
      : `delete ${i.parent} ${i.child} ${i.name}`
  ).sort();
}

Deno.test("apply(add) shows new tracks and invalidates only names that appeared", () => {
  const tree = build([
    rec(1, "a/1.mp3", {
      albumArtist: "A",
      album: "L",
      title: "T",
      track: 1,
      year: 2000,
      genre: "G",
    }),
  ]);
  const alb = at(tree, "/Artists/A/L (2000)")!.ino;
  const artist = at(tree, "/Artists/A")!.ino;
  const inv = tree.apply({
    added: [
      rec(2, "a/2.mp3", {
        albumArtist: "A",
        album: "L",
        title: "U",
        track: 2,
        year: 2000,
        genre: "G",
      }),
      rec(3, "b/1.mp3", {
        albumArtist: "A",
        album: "New",
        title: "V",
        track: 1,
        year: 2000,
        genre: "G",
      }),
    ],
  });
  const got = kinds(inv);
  assert.ok(got.includes(`entry ${alb} 02 - U.mp3`));
  assert.ok(got.includes(`entry ${artist} New (2000)`));
  assert.ok(got.includes(`inode ${artist}`), "its nlink changed");
  assert.ok(got.includes(`entry ${INO.albums} New (2000) - A`));
  const fresh = at(tree, "/Artists/A/New (2000)")!.ino;
  assert.ok(
    !got.some((s) => s.startsWith(`entry ${fresh} `)),
    "nothing to drop in a new directory",
  );
  assert.ok(!got.some((s) => s.startsWith("delete")));
  assert.equal(at(tree, "/Years/2000/A - New/01 - V.mp3")?.ino, TRACK_INO_BASE + 3);
  assert.equal(tree.attr(at(tree, "/Artists/A")!).nlink, 4);
});

Deno.test("apply(change) renames with entry invalidations and refreshes the track's inode", () => {
  const t = rec(1, "a/1.mp3", { albumArtist: "A", album: "L", title: "Old", track: 1 });
  const keep = rec(2, "a/2.mp3", { albumArtist: "A", album: "L", title: "Other", track: 2 });
  const tree = build([t, keep]);
  const alb = at(tree, "/Artists/A/L")!.ino;
  const inv = tree.apply({ changed: [{ ...t, title: "New", size: 5 }] });
  const got = kinds(inv);
  assert.ok(got.includes(`entry ${alb} 01 - Old.mp3`));
  assert.ok(got.includes(`entry ${alb} 01 - New.mp3`));
  assert.ok(got.includes(`inode ${TRACK_INO_BASE + 1}`));
  // The track lives on under another name: no `delete`, which would zero its link count.
  assert.ok(!got.some((s) => s.startsWith("delete")));
  assert.equal(at(tree, "/Artists/A/L/01 - Old.mp3"), undefined);
  const n = at(tree, "/Genres/Unknown Genre/A/L/01 - New.mp3")!;
  assert.equal(tree.attr(n).size, 5);
  assert.equal(n.ino, TRACK_INO_BASE + 1);
});

Deno.test("apply(remove) deletes names and prunes directories left empty", () => {
  const tree = build([
    rec(1, "a/1.mp3", {
      albumArtist: "Gone",
      album: "L",
      title: "T",
      track: 1,
      year: 1970,
      genre: "G",
    }),
    rec(2, "b/1.mp3", {
      albumArtist: "Stay",
      album: "M",
      title: "U",
      track: 1,
      year: 1980,
      genre: "G",
    }),
  ], { covers: [{ originId: 1, dir: "a", relPath: "a/cover.jpg", ext: "jpg", size: 1 }] });
  const gone = at(tree, "/Artists/Gone")!.ino;
  const album = at(tree, "/Artists/Gone/L (1970)")!.ino;
  const cover = at(tree, "/Artists/Gone/L (1970)/cover.jpg")!.ino;
  const genre = at(tree, "/Genres/G")!.ino;
  const inv = tree.apply({ removed: removedRecs(1, 999) });
  const got = kinds(inv);
  for (
    const want of [
      `delete ${album} ${TRACK_INO_BASE + 1} 01 - T.mp3`,
      `delete ${gone} ${album} L (1970)`,
      `delete ${INO.artists} ${gone} Gone`,
      `inode ${INO.artists}`,
      `inode ${genre}`,
    ]
  ) assert.ok(got.includes(want), `${want} in ${got.join("\n")}`);
  // The cover stays known (its folder still has it) but is in no album folder any more.
  assert.ok(got.includes(`entry ${album} cover.jpg`));
  assert.deepEqual(names(tree, "/Artists"), ["Stay"]);
  assert.deepEqual(names(tree, "/Years"), ["1980"]);
  assert.deepEqual(names(tree, "/Genres/G"), ["Stay"]);
  assert.deepEqual(names(tree, "/Albums"), ["M (1980) - Stay"]);
  assert.equal(tree.get(album), undefined);
  assert.equal(tree.get(TRACK_INO_BASE + 1), undefined);
  assert.equal(tree.attr(tree.get(INO.artists)!).nlink, 3);
  assert.equal(tree.get(cover)?.kind, "cover");
  // Empty views stay.
  tree.apply({ removed: removedRecs(2) });
  assert.deepEqual(names(tree, "/"), [
    ".musicfs",
    ".search",
    "Albums",
    "Artists",
    "Genres",
    "Playlists",
    "Years",
  ]);
  assert.deepEqual(names(tree, "/Artists"), []);
});

Deno.test("apply: a track on disc 2 renames the rest of its album", () => {
  const one = rec(1, "a/1.mp3", { albumArtist: "A", album: "L", title: "T", track: 1, disc: 1 });
  const tree = build([one]);
  tree.apply({
    added: [rec(2, "a/2.mp3", { albumArtist: "A", album: "L", title: "U", track: 1, disc: 2 })],
  });
  assert.deepEqual(names(tree, "/Artists/A/L"), ["1-01 - T.mp3", "2-01 - U.mp3"]);
  const inv = tree.apply({ removed: removedRecs(2) });
  assert.deepEqual(names(tree, "/Artists/A/L"), ["01 - T.mp3"]);
  assert.ok(kinds(inv).includes(`entry ${at(tree, "/Artists/A/L")!.ino} 1-01 - T.mp3`));
});

Deno.test("apply: a removed source frees its name; the other keeps its own, a newcomer takes the free one", () => {
  const tracks = [
    rec(1, "a/x.mp3", { albumArtist: "A", album: "L", title: "S", track: 1 }),
    rec(2, "b/x.mp3", { albumArtist: "A", album: "L", title: "S", track: 1 }),
  ];
  const tree = build(tracks);
  assert.deepEqual(names(tree, "/Artists/A/L"), ["01 - S (2).mp3", "01 - S.mp3"]);
  tree.apply({ removed: removedRecs(1) });
  // Names stay put: "(2)" keeps serving b/x.mp3 for as long as it exists.
  assert.deepEqual(names(tree, "/Artists/A/L"), ["01 - S (2).mp3"]);
  assert.equal(at(tree, "/Artists/A/L/01 - S (2).mp3")!.ino, TRACK_INO_BASE + 2);
  const text = new TextDecoder().decode(tree.content(tree.get(INO.problems) as never));
  assert.match(text, /^renamed: \/Artists\/A\/L\/01 - S \(2\)\.mp3 \(name was taken/m);
  // A newcomer that sorts first takes the freed plain name, not b's.
  tree.apply({
    added: [rec(3, "0/x.mp3", { albumArtist: "A", album: "L", title: "S", track: 1 })],
  });
  assert.equal(at(tree, "/Artists/A/L/01 - S.mp3")!.ino, TRACK_INO_BASE + 3);
  assert.equal(at(tree, "/Artists/A/L/01 - S (2).mp3")!.ino, TRACK_INO_BASE + 2);
});

Deno.test("names stay put: a newcomer that sorts first takes the next free suffix, across restarts", () => {
  const t = (id: number, path: string) =>
    rec(id, path, { albumArtist: "A", album: "L", title: "Same", track: 1, genre: "G" });
  const tree = build([t(5, "m/x.mp3")]);
  const dir = "/Artists/A/L";
  tree.takeNameChanges();
  // Added while mounted: the old file keeps "01 - Same.mp3" although "a/..." sorts first.
  tree.apply({ added: [t(6, "a/x.mp3")] });
  assert.equal(at(tree, `${dir}/01 - Same.mp3`)!.ino, TRACK_INO_BASE + 5);
  assert.equal(at(tree, `${dir}/01 - Same (2).mp3`)!.ino, TRACK_INO_BASE + 6);
  const changes = tree.takeNameChanges();
  // Every contested name is recorded, in each of the four views.
  assert.equal(changes.length, 8);
  assert.ok(changes.every((c) => c.name !== null));
  // A restart from the stored rows gives the same names, whatever the input order.
  const rows = tree.nameRows();
  for (const order of [[t(5, "m/x.mp3"), t(6, "a/x.mp3")], [t(6, "a/x.mp3"), t(5, "m/x.mp3")]]) {
    const again = build(order, { names: rows });
    assert.deepEqual(snapshot(again), snapshot(tree));
    assert.deepEqual(again.takeNameChanges(), []);
  }
  // Without the rows, source-path order decides (a fresh library).
  const fresh = build([t(5, "m/x.mp3"), t(6, "a/x.mp3")]);
  assert.equal(at(fresh, `${dir}/01 - Same.mp3`)!.ino, TRACK_INO_BASE + 6);
  // A third one, added while another is re-read (tags unchanged), takes (3).
  tree.apply({ added: [t(7, "0/x.mp3")], changed: [{ ...t(6, "a/x.mp3"), size: 99 }] });
  assert.deepEqual(
    tree.children(at(tree, dir)!.ino)!.map((e) => `${e.name} ${e.node.ino - TRACK_INO_BASE}`),
    ["01 - Same (2).mp3 6", "01 - Same (3).mp3 7", "01 - Same.mp3 5"],
  );
  // Removal frees rows: the db drops them with the file; the tree forgets them too.
  tree.apply({ removed: removedRecs(5, 7) });
  assert.deepEqual(names(tree, dir), ["01 - Same (2).mp3"]);
  assert.ok(tree.nameRows().every((r) => r.fileId === 6));
  // A row that no longer fits (the title changed) is ignored.
  const retitled = build([{ ...t(6, "a/x.mp3"), title: "Other" }], { names: tree.nameRows() });
  assert.deepEqual(names(retitled, dir), ["01 - Other.mp3"]);
  assert.ok(retitled.takeNameChanges().every((c) => c.name === null));
});

Deno.test("apply converges to the tree a fresh build of the same library gives", () => {
  const rnd = mulberry32(42);
  let lib = new Map(randomLibrary(400, 11).map((t) => [t.id, t]));
  const covers = new Map<string, CoverImage>();
  const tree = build([...lib.values()]);
  let nextId = 1000;
  for (let round = 0; round < 25; round++) {
    const more = randomLibrary(30, round + 100);
    const added = more.slice(0, 10).map((t) => ({ ...t, id: nextId++ }));
    const ids = [...lib.keys()];
    const removed = shuffle(ids, rnd).slice(0, 8);
    const changed = shuffle(ids.filter((id) => !removed.includes(id)), rnd).slice(0, 8)
      .map((id, i) => ({
        ...more[10 + i],
        id,
        relPath: lib.get(id)!.relPath,
        originId: lib.get(id)!.originId,
      }));
    const cover: CoverImage = {
      originId: 1 + (round % 2),
      dir: ["x", "y", "z"][round % 3],
      relPath: `${["x", "y", "z"][round % 3]}/c${round % 4}.jpg`,
      ext: round % 2 ? "jpg" : "png",
      size: round,
    };
    const removedCovers = round % 5 === 4 ? [{ originId: 1, dir: "x" }] : [];
    tree.apply({
      added,
      removed: removed.map((id) => lib.get(id)!),
      changed,
      covers: [cover],
      removedCovers,
    });
    for (const id of removed) lib.delete(id);
    for (const t of [...added, ...changed]) lib.set(t.id, t);
    covers.set(`${cover.originId}:${cover.dir}`, cover);
    for (const r of removedCovers) covers.delete(`${r.originId}:${r.dir}`);
    lib = new Map([...lib].sort((a, b) => a[0] - b[0]));
  }
  // A restart: the stored names make the same tree.
  const fresh = build([...lib.values()], {
    covers: [...covers.values()],
    names: tree.nameRows(),
  });
  assert.deepEqual(snapshot(tree), snapshot(fresh));
  assert.deepEqual(tree.stats(), fresh.stats());
  assert.deepEqual(tree.collisions(), fresh.collisions());
});

Deno.test("apply: a cover that appears or goes away shows in its album folders", () => {
  const tree = build([rec(1, "a/1.mp3", { albumArtist: "A", album: "L", title: "T", track: 1 })]);
  const dir = at(tree, "/Albums/L - A")!.ino;
  const inv = tree.apply({
    covers: [{ originId: 1, dir: "a", relPath: "a/Folder.JPG", ext: "jpg", size: 3 }],
  });
  assert.ok(kinds(inv).includes(`entry ${dir} cover.jpg`));
  assert.equal(tree.attr(at(tree, "/Albums/L - A/cover.jpg")!).size, 3);
  const c = at(tree, "/Albums/L - A/cover.jpg")!.ino;
  const inv2 = tree.apply({ removedCovers: [{ originId: 1, dir: "a/" }] });
  assert.ok(kinds(inv2).includes(`delete ${dir} ${c} cover.jpg`));
  assert.deepEqual(names(tree, "/Albums/L - A"), ["01 - T.mp3"]);
});

Deno.test("problems.txt lists unreadable files; a new problem list invalidates it", () => {
  const tree = build([], { problems: [{ originId: 2, relPath: "bad.mp3", reason: "truncated" }] });
  const read = () => new TextDecoder().decode(tree.content(tree.get(INO.problems) as never));
  assert.match(read(), /^unreadable: \/nas\/music\/bad\.mp3: truncated$/m);
  const inv = tree.apply({}, []);
  assert.deepEqual(inv, [{ kind: "inode", ino: INO.problems }]);
  assert.doesNotMatch(read(), /unreadable:/);
  assert.deepEqual(tree.problems(), []);
});

Deno.test("status.json comes from the callback, or the tree's counts", () => {
  const own = build([], { status: () => '{"ok":true}' });
  assert.equal(new TextDecoder().decode(own.content(own.get(INO.status) as never)), '{"ok":true}');
  const tree = build(randomLibrary(20, 1));
  const json = JSON.parse(new TextDecoder().decode(tree.content(tree.get(INO.status) as never)));
  assert.equal(json.tracks, 20);
  assert.equal(json.tracks, tree.stats().tracks);
});

Deno.test("a custom layout shapes /Artists only; a bad one is a LayoutError", () => {
  const tracks = [
    rec(1, "a/1.ogg", {
      artist: "P",
      albumArtist: "A",
      album: "L",
      title: "T",
      track: 3,
      genre: "G",
    }),
  ];
  const tree = build(tracks, { layout: "{genre}/{artist} - {title}" });
  assert.deepEqual(names(tree, "/Artists/G"), ["P - T.ogg"]);
  assert.deepEqual(names(tree, "/Albums/L - A"), ["03 - T.ogg"]);
  assert.equal(at(tree, "/Artists/G/P - T.ogg")!.ino, TRACK_INO_BASE + 1);
  tree.apply({ changed: [{ ...tracks[0], artist: "Q" }] });
  assert.deepEqual(names(tree, "/Artists/G"), ["Q - T.ogg"]);
  assert.throws(() => build(tracks, { layout: "{nope}" }), LayoutError);
});

Deno.test("search results are symlinks to the track's /Artists path", () => {
  const tree = build([
    rec(1, "a/1.mp3", { artist: "P", albumArtist: "A", album: "L", title: "T", track: 1 }),
    rec(2, "b/1.mp3", { artist: "P", albumArtist: "B", album: "M", title: "T", track: 1 }),
  ]);
  const { node, invalidations } = tree.setSearchResults("t", [2, 1, 77]);
  assert.deepEqual(invalidations.filter((i) => i.kind === "entry"), [{
    kind: "entry",
    parent: INO.search,
    name: "t",
  }]);
  assert.equal(at(tree, "/.search/t")?.ino, node.ino);
  assert.deepEqual(names(tree, "/.search/t"), ["P - T (2).mp3", "P - T.mp3"]);
  const link = at(tree, "/.search/t/P - T.mp3")!;
  assert.equal(link.kind, "symlink");
  assert.equal(link.kind === "symlink" && link.target, "../../Artists/A/L/01 - T.mp3");
  assert.equal(tree.attr(link).mode, 0o120777);
  const again = tree.setSearchResults("t", [1]);
  assert.deepEqual(names(tree, "/.search/t"), ["P - T.mp3"]);
  assert.ok(again.invalidations.some((i) => i.kind === "delete" && i.name === "P - T (2).mp3"));
  tree.removeSearch("t");
  assert.deepEqual(names(tree, "/.search"), []);
});

Deno.test("one folder per artist, album and genre whatever the case or normalisation", () => {
  const nfc = "Bj\u00f6rk";
  const nfd = "Bjo\u0308rk";
  const tree = build([
    rec(1, "1.mp3", { albumArtist: nfc, album: "Post", title: "a", track: 1, genre: "Rock" }),
    rec(2, "2.mp3", { albumArtist: nfd, album: "post", title: "b", track: 2, genre: "rock" }),
    rec(3, "3.mp3", {
      albumArtist: "bj\u00f6rk",
      album: "Post",
      title: "c",
      track: 3,
      genre: "ROCK",
    }),
    rec(4, "4.mp3", { artist: "The Beatles", album: "Help", title: "d", genre: "Pop" }),
    rec(5, "5.mp3", { artist: "the beatles", album: "Help", title: "e", genre: "pop" }),
  ]);
  // Björk: NFC and NFD count as one spelling (2 tracks) against "björk" (1).
  assert.deepEqual(names(tree, "/Artists"), ["Björk", "The Beatles"]);
  assert.equal(names(tree, "/Artists")[0], nfc, "shown in NFC");
  assert.deepEqual(names(tree, "/Artists/Björk"), ["Post"]);
  assert.deepEqual(names(tree, "/Artists/Björk/Post"), ["01 - a.mp3", "02 - b.mp3", "03 - c.mp3"]);
  // A tie goes to a leading capital, then fewer capitals: "Rock" over "ROCK" and "rock".
  assert.deepEqual(names(tree, "/Genres"), ["Pop", "Rock"]);
  assert.deepEqual(names(tree, "/Albums"), ["Help - The Beatles", "Post - Björk"]);
  // Spellings count separately ("Rock" 1, "rock" 1, "ROCK" 1): two more "rock" make it the
  // folder's name, and the folder moves as one.
  const inv = tree.apply({
    added: [
      rec(6, "6.mp3", { albumArtist: nfc, album: "Post", title: "f", track: 4, genre: "rock" }),
      rec(7, "7.mp3", { albumArtist: nfc, album: "Post", title: "g", track: 5, genre: "rock" }),
    ],
  });
  assert.deepEqual(names(tree, "/Genres"), ["Pop", "rock"]);
  assert.equal(names(tree, "/Genres/rock/Björk/Post").length, 5);
  assert.ok(inv.some((i) => i.kind === "delete" && i.name === "Rock"));
});

Deno.test("an album is (album artist, album): per-track years and genres do not split it", () => {
  const t = (id: number, year: number | undefined, genre: string) =>
    rec(id, `x/${id}.flac`, {
      albumArtist: "A",
      album: "L",
      title: `t${id}`,
      track: id,
      year,
      genre,
    });
  const tree = build([
    t(1, 2001, "Rock"),
    t(2, 1999, "Jazz"),
    t(3, 2001, "Rock"),
    t(4, undefined, "Rock"),
  ]);
  assert.deepEqual(names(tree, "/Artists/A"), ["L (2001)"]);
  assert.deepEqual(names(tree, "/Years"), ["2001"]);
  assert.deepEqual(names(tree, "/Albums"), ["L (2001) - A"]);
  assert.equal(names(tree, "/Artists/A/L (2001)").length, 4);
  assert.deepEqual(names(tree, "/Genres/Jazz/A"), ["L (2001)"]);
  assert.equal(tree.stats().albums, 1);
  // A tie between years: the earliest.
  const tie = build([t(1, 2001, "Rock"), t(2, 1999, "Rock")]);
  assert.deepEqual(names(tie, "/Artists/A"), ["L (1999)"]);
  // Live: the year follows the majority, the album moves as one.
  tie.apply({ added: [t(3, 2001, "Rock")] });
  assert.deepEqual(names(tie, "/Artists/A"), ["L (2001)"]);
  assert.deepEqual(names(tie, "/Years"), ["2001"]);
});

Deno.test("a track with several genres is under each, as one inode", () => {
  const tree = build([
    rec(1, "x/1.opus", {
      albumArtist: "A",
      album: "L",
      title: "T",
      track: 1,
      genre: "Rock",
      genres: ["Rock", "Pop", "rock", " "],
    }),
    rec(2, "x/2.opus", { albumArtist: "A", album: "L", title: "U", track: 2, genre: "Jazz; Funk" }),
  ]);
  assert.deepEqual(names(tree, "/Genres"), ["Funk", "Jazz", "Pop", "Rock"]);
  const a = at(tree, "/Genres/Rock/A/L/01 - T.opus")!;
  const b = at(tree, "/Genres/Pop/A/L/01 - T.opus")!;
  assert.equal(a.ino, TRACK_INO_BASE + 1);
  assert.equal(b.ino, a.ino);
  assert.equal(tree.attr(a).nlink, 5, "Artists, Albums, Years and two genres");
  assert.equal(at(tree, "/Genres/Funk/A/L/02 - U.opus")!.ino, TRACK_INO_BASE + 2);
  tree.apply({
    changed: [rec(1, "x/1.opus", { albumArtist: "A", album: "L", title: "T", track: 1 })],
  });
  assert.deepEqual(names(tree, "/Genres"), ["Funk", "Jazz", "Unknown Genre"]);
});

Deno.test("sort-name layout fields group and fall back", () => {
  const tree = build([
    rec(1, "1.mp3", { albumArtist: "The Beatles", albumArtistSort: "Beatles, The", title: "a" }),
    rec(2, "2.mp3", { albumArtist: "The Beatles", albumArtistSort: "beatles, the", title: "b" }),
    rec(3, "3.mp3", { artist: "Nico", title: "c" }),
  ], { layout: "{albumartistsort}/{title}" });
  assert.deepEqual(names(tree, "/Artists"), ["Beatles, The", "Nico"]);
  assert.deepEqual(names(tree, "/Artists/Beatles, The"), ["a.mp3", "b.mp3"]);
});

Deno.test("covers: the folder's image, else the parent of a disc folder, else the embedded picture", () => {
  const tracks = [
    rec(1, "Box/CD1/01.flac", { albumArtist: "A", album: "Box", title: "a", track: 1, disc: 1 }),
    rec(2, "Box/CD2/01.flac", { albumArtist: "A", album: "Box", title: "b", track: 1, disc: 2 }),
    rec(3, "Emb/01.mp3", { albumArtist: "A", album: "Emb", title: "c", picture: "image/png" }),
    rec(4, "Emb/02.mp3", { albumArtist: "A", album: "Emb", title: "d", picture: "image/png" }),
    rec(5, "Own/Disc 1/01.mp3", {
      albumArtist: "A",
      album: "Own",
      title: "e",
      picture: "image/jpeg",
    }),
  ];
  const covers: CoverImage[] = [
    { originId: 1, dir: "Box", relPath: "Box/AlbumArt_{X}_Large.jpg", ext: "jpg", size: 7 },
    { originId: 1, dir: "Own/Disc 1", relPath: "Own/Disc 1/folder.png", ext: "png", size: 8 },
    { originId: 1, dir: "Own", relPath: "Own/cover.jpg", ext: "jpg", size: 9 },
  ];
  const tree = build(tracks, { covers });
  const box = at(tree, "/Artists/A/Box/cover.jpg")!;
  assert.equal(box.kind === "cover" && tree.sourcePath(box), "/music/Box/AlbumArt_{X}_Large.jpg");
  assert.equal(box.kind === "cover" && box.embedded, false);
  // The disc folder's own image wins over its parent's.
  const own = at(tree, "/Artists/A/Own/cover.png")!;
  assert.equal(own.kind === "cover" && tree.sourcePath(own), "/music/Own/Disc 1/folder.png");
  // No image: the first track's embedded picture, as cover.<ext of its type>.
  const emb = at(tree, "/Artists/A/Emb/cover.png")!;
  assert.equal(emb.kind, "cover");
  assert.ok(emb.kind === "cover" && emb.embedded);
  assert.equal(emb.kind === "cover" && tree.sourcePath(emb), "/music/Emb/01.mp3");
  assert.equal(tree.attr(emb).size, 0, "unknown until extracted");
  tree.setCoverSize(emb as never, 1234);
  assert.equal(tree.attr(emb).size, 1234);
  assert.equal(at(tree, "/Albums/Emb - A/cover.png")!.ino, emb.ino);
  // The track holding it goes: the next track's picture takes over (a new object).
  tree.apply({ removed: removedRecs(3) });
  const next = at(tree, "/Artists/A/Emb/cover.png")!;
  assert.equal(next.kind === "cover" && tree.sourcePath(next), "/music/Emb/02.mp3");
  // An image appears in the folder: it wins over the embedded picture.
  tree.apply({
    covers: [{ originId: 1, dir: "Emb", relPath: "Emb/front.jpg", ext: "jpg", size: 3 }],
  });
  assert.deepEqual(names(tree, "/Artists/A/Emb"), ["cover.jpg", "d.mp3"]);
});

Deno.test("playlists: entries rewritten to the mount, in order, following renames; missing ones listed", () => {
  const tracks = [
    rec(1, "x/1.mp3", { albumArtist: "A", album: "L", title: "One", track: 1, duration: 61.4 }),
    rec(2, "x/2.mp3", { albumArtist: "A", album: "L", title: "Two", track: 2 }),
  ];
  const playlists = [{
    originId: 1,
    relPath: "lists/Road Trip.m3u",
    size: 10,
    mtimeMs: 1,
    entries: ["/music/x/2.mp3", "/music/gone.mp3", "/music/x/1.mp3"],
  }, {
    originId: 2,
    relPath: ".hidden/Road Trip.M3U8",
    size: 10,
    mtimeMs: 1,
    entries: [],
  }];
  const tree = build(tracks, { playlists });
  assert.deepEqual(names(tree, "/Playlists"), ["Road Trip (2).m3u8", "Road Trip.m3u8"]);
  const pl = at(tree, "/Playlists/Road Trip.m3u8")!;
  const text = () => new TextDecoder().decode(tree.content(pl as never));
  assert.equal(
    text(),
    "#EXTM3U\n#EXTINF:-1,A - Two\n../Artists/A/L/02 - Two.mp3\n#EXTINF:61,A - One\n../Artists/A/L/01 - One.mp3\n",
  );
  assert.equal(tree.attr(pl).size, new TextEncoder().encode(text()).length);
  const problems = () => new TextDecoder().decode(tree.content(tree.get(INO.problems) as never));
  assert.match(
    problems(),
    /^playlist entry not found: \/music\/lists\/Road Trip\.m3u: \/music\/gone\.mp3$/m,
  );
  assert.equal(tree.stats().missingPlaylistEntries, 1);
  // A rename in the tree: the playlist follows, and its inode is invalidated.
  const inv = tree.apply({ changed: [{ ...tracks[1], title: "Deux" }] });
  assert.ok(inv.some((i) => i.kind === "inode" && i.ino === pl.ino));
  assert.match(text(), /\.\.\/Artists\/A\/L\/02 - Deux\.mp3\n#EXTINF:61/);
  // The missing track appears: it joins the playlist and leaves problems.txt.
  tree.apply({
    added: [rec(3, "gone.mp3", { albumArtist: "A", album: "L", title: "Back", track: 3 })],
  });
  assert.match(
    text(),
    /02 - Deux\.mp3\n#EXTINF:-1,A - Back\n\.\.\/Artists\/A\/L\/03 - Back\.mp3\n/,
  );
  assert.doesNotMatch(problems(), /playlist entry not found/);
  tree.apply({ removedPlaylists: [{ originId: 2, relPath: ".hidden/Road Trip.M3U8" }] });
  assert.deepEqual(names(tree, "/Playlists"), ["Road Trip.m3u8"]);
});

Deno.test("no visible name starts with a dot; long names keep year and extension", () => {
  const long = "Very Long Album Name ".repeat(15);
  const tree = build([
    rec(1, "1.mp3", {
      artist: "...And You Will Know Us",
      album: long,
      title: "...Baby",
      year: 1999,
    }),
  ]);
  assert.deepEqual(names(tree, "/Artists"), ["_..And You Will Know Us"]);
  const [album] = names(tree, "/Artists/_..And You Will Know Us");
  assert.ok(album.endsWith(" (1999)"), album);
  assert.ok(new TextEncoder().encode(album).length <= 255);
  const [albums] = names(tree, "/Albums");
  assert.ok(albums.endsWith(" (1999) - _..And You Will Know Us") || albums.includes(" (1999) - "));
  assert.deepEqual(
    names(tree, `/Artists/_..And You Will Know Us/${album}`),
    ["_..Baby.mp3"],
  );
  const all = [...snapshot(tree).keys()];
  for (const p of all) {
    const parts = p.split("/").slice(1);
    for (const c of parts) {
      if (c === ".search" || c === ".musicfs") continue;
      assert.ok(!c.startsWith("."), p);
    }
  }
});

Deno.test("names stay put when the holder is re-read in the batch that brings a rival", () => {
  const t = (id: number, path: string, size = 1) => ({
    ...rec(id, path, { albumArtist: "A", album: "L", title: "Same", track: 1 }),
    size,
  });
  const tree = build([t(5, "m/x.mp3")]);
  tree.apply({ changed: [t(5, "m/x.mp3", 2)], added: [t(6, "a/x.mp3")] });
  assert.equal(at(tree, "/Artists/A/L/01 - Same.mp3")!.ino, TRACK_INO_BASE + 5);
  assert.equal(at(tree, "/Artists/A/L/01 - Same (2).mp3")!.ino, TRACK_INO_BASE + 6);
  // Both arrive in one batch: source-path order.
  const both = build([]);
  both.apply({ added: [t(5, "m/x.mp3"), t(6, "a/x.mp3")] });
  assert.equal(at(both, "/Artists/A/L/01 - Same.mp3")!.ino, TRACK_INO_BASE + 6);
});

Deno.test("names stay put when their album folder is renamed (a new majority year)", () => {
  const t = (id: number, path: string, year: number) =>
    rec(id, path, { albumArtist: "A", album: "L", title: "Same", track: 1, year });
  const tree = build([t(5, "m/x.mp3", 2000)]);
  tree.apply({ added: [t(6, "a/x.mp3", 2000)] });
  assert.equal(at(tree, "/Artists/A/L (2000)/01 - Same (2).mp3")!.ino, TRACK_INO_BASE + 6);
  // Two more tracks of 1990: the album becomes "L (1990)", both files keep their names.
  tree.apply({
    added: [
      rec(7, "m/y.mp3", { albumArtist: "A", album: "L", title: "Other", track: 2, year: 1990 }),
      rec(8, "m/z.mp3", { albumArtist: "A", album: "L", title: "Third", track: 3, year: 1990 }),
    ],
  });
  assert.deepEqual(names(tree, "/Artists/A"), ["L (1990)"]);
  assert.equal(at(tree, "/Artists/A/L (1990)/01 - Same.mp3")!.ino, TRACK_INO_BASE + 5);
  assert.equal(at(tree, "/Artists/A/L (1990)/01 - Same (2).mp3")!.ino, TRACK_INO_BASE + 6);
  // And a restart from the stored rows agrees.
  const lib = [t(5, "m/x.mp3", 2000), t(6, "a/x.mp3", 2000)].concat([
    rec(7, "m/y.mp3", { albumArtist: "A", album: "L", title: "Other", track: 2, year: 1990 }),
    rec(8, "m/z.mp3", { albumArtist: "A", album: "L", title: "Third", track: 3, year: 1990 }),
  ]);
  assert.deepEqual(snapshot(build(lib, { names: tree.nameRows() })), snapshot(tree));
});
