import assert from "node:assert/strict";
import { MusicOps } from "./ops.ts";
import { INO, VirtualTree } from "./tree.ts";
import type { RequestContext } from "../fuse/mod.ts";

const ctx: RequestContext = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal };

function embeddedTree(): VirtualTree {
  return new VirtualTree({
    origins: [{ id: 1, path: "/music" }],
    tracks: [{
      id: 1,
      originId: 1,
      relPath: "A/01.mp3",
      ext: "mp3",
      size: 10,
      mtimeMs: 1,
      albumArtist: "A",
      album: "L",
      title: "T",
      track: 1,
      picture: "image/png",
    }],
    uid: 0,
    gid: 0,
  });
}

Deno.test("an embedded cover is read on first look, sized exactly, and served per open", async () => {
  const tree = embeddedTree();
  const picture = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
  let reads = 0;
  const ops = new MusicOps({
    tree,
    readPicture: (path) => {
      reads++;
      assert.equal(path, "/music/A/01.mp3");
      return Promise.resolve(picture);
    },
  });
  const artist = await ops.lookup(INO.artists, "A");
  const album = await ops.lookup(artist!.attr.ino, "L");
  // Two concurrent lookups read the picture once.
  const [a, b] = await Promise.all([
    ops.lookup(album!.attr.ino, "cover.png"),
    ops.lookup(album!.attr.ino, "cover.png"),
  ]);
  assert.equal(a!.attr.size, picture.length);
  assert.equal(b!.attr.size, picture.length);
  assert.equal(reads, 1);
  const listed = await ops.readdir(album!.attr.ino);
  assert.equal(listed.find((e) => e.name === "cover.png")!.attr.size, picture.length);
  const fh = (await ops.open(a!.attr.ino, 0, ctx)).fh!;
  assert.equal(reads, 2, "read again at open (nothing kept in between)");
  const dst = new Uint8Array(64);
  const n = await ops.read(a!.attr.ino, fh, 0, dst);
  assert.deepEqual(dst.subarray(0, n), picture);
  await ops.release(a!.attr.ino, fh);
  // Its xattr names the audio file as the picture's holder, not as its source.
  assert.equal(await ops.getxattr(a!.attr.ino, "user.musicfs.source", ctx), null);
  assert.deepEqual(await ops.listxattr(a!.attr.ino, ctx), ["user.musicfs.embedded-in"]);
  assert.equal(
    new TextDecoder().decode((await ops.getxattr(a!.attr.ino, "user.musicfs.embedded-in", ctx))!),
    "/music/A/01.mp3",
  );
});

Deno.test("an embedded cover that cannot be read answers EIO, not garbage", async () => {
  const tree = embeddedTree();
  const ops = new MusicOps({ tree, readPicture: () => Promise.reject(new Error("boom")) });
  const artist = await ops.lookup(INO.artists, "A");
  const album = await ops.lookup(artist!.attr.ino, "L");
  const cover = await ops.lookup(album!.attr.ino, "cover.png");
  assert.equal(cover!.attr.size, 0);
  await assert.rejects(ops.open(cover!.attr.ino, 0, ctx), /picture/);
  const none = new MusicOps({ tree: embeddedTree(), readPicture: () => Promise.resolve(null) });
  const a2 = await none.lookup(INO.artists, "A");
  const l2 = await none.lookup(a2!.attr.ino, "L");
  const c2 = await none.lookup(l2!.attr.ino, "cover.png");
  await assert.rejects(none.open(c2!.attr.ino, 0, ctx), /no embedded picture/);
});
