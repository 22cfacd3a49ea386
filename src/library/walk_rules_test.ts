import assert from "node:assert/strict";
import { type WalkBatch, walkTree } from "./walk.ts";
import { writeTrack } from "../../tests/fixtures/mod.ts";

function walk(root: string, scope: string, rules: Parameters<typeof walkTree>[4]) {
  const batches: WalkBatch[] = [];
  const summary = walkTree(root, scope, (b) => batches.push(b), 2000, rules);
  return {
    summary,
    files: batches.flatMap((b) => b.files.map((f) => f.relPath)).sort(),
    problems: new Map(batches.flatMap((b) => b.problems.map((p) => [p.relPath, p.reason]))),
  };
}

Deno.test("the walk follows symlinks into a root only, lists FIFOs and never enters the mount", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "musicfs-walk-rules-" }));
  try {
    const lib = `${base}/lib`;
    const other = `${base}/other`;
    const mnt = `${base}/mnt`;
    await Deno.mkdir(`${lib}/Album`, { recursive: true });
    await Deno.mkdir(other);
    await Deno.mkdir(mnt);
    await writeTrack(`${lib}/Album/01.mp3`, "mp3-id3v24", { title: "One" });
    await writeTrack(`${other}/secret.mp3`, "mp3-id3v24", { title: "Secret" });
    await writeTrack(`${mnt}/view.mp3`, "mp3-id3v24", { title: "A view of the mount" });
    await Deno.symlink(`${lib}/Album/01.mp3`, `${lib}/inside.mp3`);
    await Deno.symlink(`${other}/secret.mp3`, `${lib}/outside.mp3`);
    await Deno.symlink(other, `${lib}/OtherDir`);
    await Deno.symlink(mnt, `${lib}/MountLink`);
    const mk = await new Deno.Command("mkfifo", { args: [`${lib}/Album/02.mp3`] }).output();
    assert.ok(mk.success);
    const rules = { roots: [lib], mountpoint: mnt };

    const r = walk(lib, "", rules);
    assert.deepEqual(r.files, ["Album/01.mp3", "inside.mp3"]);
    assert.match(r.problems.get("outside.mp3")!, /outside the library/);
    assert.match(r.problems.get("OtherDir")!, /outside the library/);
    assert.match(r.problems.get("MountLink")!, /musicfs mount .* \(a loop\)/);
    assert.match(r.problems.get("Album/02.mp3")!, /a FIFO, not a regular file/);

    // The same rules for a re-check of one path (the watcher's).
    const one = walk(lib, "outside.mp3", rules);
    assert.equal(one.summary.scope, "missing");
    assert.match(one.problems.get("outside.mp3")!, /outside the library/);
    const fifo = walk(lib, "Album/02.mp3", rules);
    assert.match(fifo.problems.get("Album/02.mp3")!, /FIFO/);

    // --follow-symlinks: links out are walked; the mount never is.
    const f = walk(lib, "", { ...rules, followSymlinks: true });
    assert.deepEqual(f.files, ["Album/01.mp3", "OtherDir/secret.mp3", "inside.mp3", "outside.mp3"]);
    assert.match(f.problems.get("MountLink")!, /a loop/);

    // A folder on the mount's device (a bind mount of it) is refused by st_dev.
    const dev = Deno.statSync(`${lib}/Album`).dev;
    const d = walk(lib, "", { roots: [lib], mountDev: dev });
    assert.match(d.problems.get("Album")!, /is the musicfs mount/);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
