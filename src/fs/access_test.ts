import assert from "node:assert/strict";
import type { TrackRecord } from "../library/types.ts";
import { dirAccess, fileAccess } from "./access.ts";
import { escapeControl } from "./escape.ts";
import { INO, type Node, VirtualTree } from "./tree.ts";

const DAEMON = { uid: 0, gid: 0 };

Deno.test("access: a file keeps its source's owner, group and read/exec bits, never write", () => {
  assert.deepEqual(fileAccess(1000, 100, 0o644), { uid: 1000, gid: 100, mode: 0o444 });
  assert.deepEqual(fileAccess(1000, 100, 0o600), { uid: 1000, gid: 100, mode: 0o400 });
  assert.deepEqual(fileAccess(1000, 100, 0o6777), { uid: 1000, gid: 100, mode: 0o555 });
  assert.deepEqual(fileAccess(1000, 100, 0o200), { uid: 1000, gid: 100, mode: 0 });
});

Deno.test("access: a directory is open to everyone when one entry is", () => {
  const d = dirAccess([fileAccess(1000, 100, 0o600), fileAccess(1001, 101, 0o644)], DAEMON);
  assert.deepEqual(d, { uid: 0, gid: 0, mode: 0o555 });
});

Deno.test("access: a directory of private files belongs to their (most common) owner", () => {
  const d = dirAccess(
    [fileAccess(1000, 100, 0o600), fileAccess(1000, 100, 0o600), fileAccess(1001, 101, 0o600)],
    DAEMON,
  );
  assert.deepEqual(d, { uid: 1000, gid: 0, mode: 0o500 });
});

Deno.test("access: group-readable entries open the directory to that group", () => {
  const d = dirAccess([fileAccess(1000, 100, 0o640), fileAccess(1002, 100, 0o440)], DAEMON);
  assert.deepEqual(d, { uid: 1000, gid: 100, mode: 0o550 });
  // Readable by the group but not by the owner: the owner, a group member, cannot read it.
  const odd = dirAccess([fileAccess(1000, 100, 0o040)], DAEMON);
  assert.deepEqual(odd, { uid: 0, gid: 0, mode: 0o500 });
});

Deno.test("access: a directory nobody but root can read is 0500, the daemon's", () => {
  assert.deepEqual(dirAccess([], { uid: 7, gid: 8 }), { uid: 7, gid: 8, mode: 0o500 });
  assert.deepEqual(dirAccess([fileAccess(1000, 100, 0o000)], { uid: 7, gid: 8 }), {
    uid: 7,
    gid: 8,
    mode: 0o500,
  });
  // "Other" alone is not everyone: the owner and the group are refused by their own bits.
  assert.deepEqual(dirAccess([fileAccess(1000, 100, 0o004)], { uid: 7, gid: 8 }).mode, 0o500);
});

Deno.test("access: ties between owners go to the daemon's user, then the lowest uid", () => {
  const a = [fileAccess(1001, 1, 0o400), fileAccess(1000, 1, 0o400), fileAccess(7, 1, 0o400)];
  assert.equal(dirAccess(a, { uid: 7, gid: 8 }).uid, 7);
  assert.equal(dirAccess(a, { uid: 9, gid: 8 }).uid, 7);
  assert.equal(dirAccess(a.slice(0, 2), { uid: 9, gid: 8 }).uid, 1000);
});

// ---- the tree in permissions mode --------------------------------------------------------

function rec(id: number, relPath: string, extra: Partial<TrackRecord>): TrackRecord {
  return {
    id,
    originId: 1,
    relPath,
    ext: "mp3",
    size: 100,
    mtimeMs: 1_600_000_000_000,
    ...extra,
  };
}

const pub = rec(1, "Pub/a.mp3", {
  albumArtist: "Pub",
  album: "Open",
  title: "A",
  uid: 1000,
  gid: 100,
  mode: 0o644,
});
const priv = rec(2, "Priv/b.mp3", {
  albumArtist: "Priv",
  album: "Closed",
  title: "B",
  uid: 1000,
  gid: 100,
  mode: 0o600,
});

function build(share = false, tracks = [pub, priv]): VirtualTree {
  return new VirtualTree({
    origins: [{ id: 1, path: "/music" }],
    tracks,
    uid: 0,
    gid: 0,
    permissions: { shareSearch: share },
  });
}

function at(tree: VirtualTree, path: string): Node {
  let node: Node | undefined = tree.get(INO.root);
  for (const name of path.split("/").filter(Boolean)) node = tree.lookup(node!.ino, name);
  assert.ok(node, `${path} exists`);
  return node;
}

const modeOf = (tree: VirtualTree, path: string) => {
  const a = tree.attr(at(tree, path));
  return { uid: a.uid, gid: a.gid, mode: a.mode & 0o7777 };
};

Deno.test("access tree: files and folders show what their sources allow", () => {
  const t = build();
  assert.deepEqual(modeOf(t, "/Artists/Pub/Open/A.mp3"), { uid: 1000, gid: 100, mode: 0o444 });
  assert.deepEqual(modeOf(t, "/Artists/Priv/Closed/B.mp3"), { uid: 1000, gid: 100, mode: 0o400 });
  assert.deepEqual(modeOf(t, "/Artists/Priv/Closed"), { uid: 1000, gid: 0, mode: 0o500 });
  assert.deepEqual(modeOf(t, "/Artists/Priv"), { uid: 1000, gid: 0, mode: 0o500 });
  assert.deepEqual(modeOf(t, "/Artists/Pub"), { uid: 0, gid: 0, mode: 0o555 });
  assert.deepEqual(modeOf(t, "/Artists"), { uid: 0, gid: 0, mode: 0o555 });
  assert.deepEqual(modeOf(t, "/"), { uid: 0, gid: 0, mode: 0o555 });
  assert.deepEqual(modeOf(t, "/.musicfs"), { uid: 0, gid: 0, mode: 0o700 });
  assert.deepEqual(modeOf(t, "/.search"), { uid: 0, gid: 0, mode: 0o700 });
  assert.equal(modeOf(t, "/.musicfs/problems.txt").mode, 0o400);
  assert.equal(modeOf(build(true), "/.search").mode, 0o511);
});

Deno.test("access tree: without permissions mode nothing changes", () => {
  const t = new VirtualTree({
    origins: [{ id: 1, path: "/music" }],
    tracks: [pub, priv],
    uid: 42,
    gid: 43,
  });
  assert.deepEqual(modeOf(t, "/Artists/Priv/Closed/B.mp3"), { uid: 42, gid: 43, mode: 0o444 });
  assert.deepEqual(modeOf(t, "/Artists/Priv"), { uid: 42, gid: 43, mode: 0o555 });
  assert.deepEqual(modeOf(t, "/.musicfs"), { uid: 42, gid: 43, mode: 0o555 });
});

Deno.test("access tree: a changed source mode reaches its folders and the kernel", () => {
  const t = build();
  assert.equal(modeOf(t, "/Artists/Priv").mode, 0o500);
  assert.equal(modeOf(t, "/Genres").mode, 0o555);
  const inv = t.apply({ changed: [{ ...priv, mode: 0o644 }] });
  assert.equal(modeOf(t, "/Artists/Priv/Closed/B.mp3").mode, 0o444);
  assert.equal(modeOf(t, "/Artists/Priv/Closed").mode, 0o555);
  assert.deepEqual(modeOf(t, "/Artists/Priv"), { uid: 0, gid: 0, mode: 0o555 });
  const inodes = new Set(inv.filter((i) => i.kind === "inode").map((i) => i.ino));
  assert.ok(inodes.has(at(t, "/Artists/Priv").ino), "the artist folder's attrs are dropped");
  assert.ok(inodes.has(at(t, "/Artists/Priv/Closed").ino));
  // Removing the only public track closes /Artists to others.
  t.apply({ removed: [pub], changed: [priv] });
  assert.deepEqual(modeOf(t, "/Artists"), { uid: 1000, gid: 0, mode: 0o500 });
  assert.equal(modeOf(t, "/").uid, 1000);
});

Deno.test("access tree: a query folder follows its results; links keep their own mode", () => {
  const t = build(true);
  const { node } = t.setSearchResults("closed", [2]);
  assert.deepEqual(t.access(node), { uid: 1000, gid: 0, mode: 0o500 });
  const link = t.children(node.ino)![0].node;
  assert.equal(t.attr(link).mode & 0o7777, 0o777);
  t.setSearchResults("all", [1, 2]);
  assert.equal(modeOf(t, "/.search/all").mode, 0o555);
  // The track behind a result opens up: the query folder follows.
  t.apply({ changed: [{ ...priv, mode: 0o644 }] });
  assert.equal(modeOf(t, "/.search/closed").mode, 0o555);
});

Deno.test("access tree: sources the records do not describe are stat'ed off the request path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-access-" });
  try {
    await Deno.mkdir(`${dir}/Old`);
    await Deno.writeTextFile(`${dir}/Old/c.mp3`, "x");
    await Deno.chmod(`${dir}/Old/c.mp3`, 0o640);
    await Deno.writeTextFile(`${dir}/Old/cover.jpg`, "x");
    await Deno.chmod(`${dir}/Old/cover.jpg`, 0o604);
    const old = rec(3, "Old/c.mp3", { albumArtist: "Old", album: "X", title: "C" });
    const gone = rec(4, "Gone/d.mp3", { albumArtist: "Gone", album: "Y", title: "D" });
    const t = new VirtualTree({
      origins: [{ id: 1, path: dir }],
      tracks: [old, gone],
      covers: [{ originId: 1, dir: "Old", relPath: "Old/cover.jpg", ext: "jpg", size: 1 }],
      uid: 7,
      gid: 8,
      permissions: {},
    });
    // Until stat'ed: the daemon user's alone, and covers never open a folder.
    assert.deepEqual(modeOf(t, "/Artists/Old/X/C.mp3"), { uid: 7, gid: 8, mode: 0o400 });
    assert.deepEqual(modeOf(t, "/Artists/Old/X/cover.jpg"), { uid: 7, gid: 8, mode: 0o400 });
    assert.deepEqual(modeOf(t, "/Artists/Old/X"), { uid: 7, gid: 8, mode: 0o500 });
    const inv = await t.resolveAccess();
    const st = await Deno.stat(`${dir}/Old/c.mp3`);
    assert.deepEqual(modeOf(t, "/Artists/Old/X/C.mp3"), {
      uid: st.uid!,
      gid: st.gid!,
      mode: 0o440,
    });
    assert.equal(modeOf(t, "/Artists/Old/X/cover.jpg").mode, 0o404);
    assert.deepEqual(modeOf(t, "/Artists/Old/X"), { uid: st.uid!, gid: st.gid!, mode: 0o550 });
    // A missing source stays private.
    assert.deepEqual(modeOf(t, "/Artists/Gone/Y/D.mp3"), { uid: 7, gid: 8, mode: 0o400 });
    const inodes = new Set(inv.map((i) => (i as { ino: number }).ino));
    assert.ok(inodes.has(at(t, "/Artists/Old/X/C.mp3").ino));
    assert.ok(inodes.has(at(t, "/Artists/Old/X/cover.jpg").ino));
    assert.ok(inodes.has(at(t, "/Artists/Old/X").ino), "the folder is invalidated too");
    assert.deepEqual(await t.resolveAccess(), [], "nothing left to learn");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("escapeControl: names cannot forge lines or drive the terminal", () => {
  assert.equal(escapeControl("plain é名"), "plain é名");
  assert.equal(escapeControl("a\nunreadable: /etc"), "a\\nunreadable: /etc");
  assert.equal(escapeControl("\x1b[31mred\r\t\\"), "\\x1b[31mred\\r\\t\\\\");
  assert.equal(escapeControl("x\u202ey\u0085"), "x\\u202ey\\x85");
});

Deno.test("problems.txt escapes control characters in names and reasons", () => {
  const t = new VirtualTree({
    origins: [{ id: 1, path: "/music" }],
    uid: 0,
    gid: 0,
    problems: [{ originId: 1, relPath: "evil\nunreadable: /fake: x.mp3", reason: "bad\x1b" }],
  });
  const text = new TextDecoder().decode(t.content(t.get(INO.problems) as never));
  const lines = text.trimEnd().split("\n");
  assert.equal(lines.length, 2, text);
  assert.equal(lines[1], "unreadable: /music/evil\\nunreadable: /fake: x.mp3: bad\\x1b");
});

Deno.test("access tree: with onAccessResolved the tree learns covers' access by itself", async () => {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-access-" });
  try {
    await Deno.mkdir(`${dir}/Pub`);
    await Deno.writeTextFile(`${dir}/Pub/cover.png`, "x");
    await Deno.chmod(`${dir}/Pub/cover.png`, 0o644);
    const got: number[] = [];
    const resolved = Promise.withResolvers<void>();
    const t = new VirtualTree({
      origins: [{ id: 1, path: dir }],
      tracks: [pub],
      uid: 7,
      gid: 8,
      permissions: {
        onAccessResolved: (inv) => {
          for (const i of inv) if (i.kind === "inode") got.push(i.ino);
          resolved.resolve();
        },
      },
    });
    t.apply({ covers: [{ originId: 1, dir: "Pub", relPath: "Pub/cover.png", ext: "png" }] });
    const cover = at(t, "/Artists/Pub/Open/cover.png");
    assert.equal(modeOf(t, "/Artists/Pub/Open/cover.png").mode, 0o400);
    await resolved.promise;
    assert.equal(modeOf(t, "/Artists/Pub/Open/cover.png").mode, 0o444);
    assert.ok(got.includes(cover.ino));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ops: the source xattr is answered to root and the source's owner only", async () => {
  const { MusicOps } = await import("./ops.ts");
  const ctx = (uid: number) => ({ uid, gid: uid, pid: 1, signal: new AbortController().signal });
  const t = build();
  const ops = new MusicOps({ tree: t });
  const ino = at(t, "/Artists/Priv/Closed/B.mp3").ino;
  const name = "user.musicfs.source";
  const dec = (b: Uint8Array | null) => b && new TextDecoder().decode(b);
  assert.equal(dec(await ops.getxattr(ino, name, ctx(0))), "/music/Priv/b.mp3");
  assert.equal(dec(await ops.getxattr(ino, name, ctx(1000))), "/music/Priv/b.mp3");
  assert.throws(
    () => ops.getxattr(ino, name, ctx(1001)),
    (e: { errno?: number }) => e.errno === 13,
  );
  assert.deepEqual(await ops.listxattr(ino, ctx(1001)), []);
  assert.deepEqual(await ops.listxattr(ino, ctx(1000)), [name]);
  // Without permissions mode only the mount's owner (or root) gets in anyway: it is answered.
  const plain = new VirtualTree({
    origins: [{ id: 1, path: "/music" }],
    tracks: [priv],
    uid: 42,
    gid: 42,
  });
  const pino = at(plain, "/Artists/Priv/Closed/B.mp3").ino;
  const pops = new MusicOps({ tree: plain });
  assert.equal(dec(await pops.getxattr(pino, name, ctx(42))), "/music/Priv/b.mp3");
});
