/**
 * The directory walk over the messy library (issue 10, rules 1 and 8): what is hidden, what is
 * listed as a problem and why, which cover wins.
 */
import assert from "node:assert/strict";
import { DROP_DAC_ARGV, makeMessyLibrary } from "../../tests/fixtures/mod.ts";
import { coverRank, isHiddenName, isHiddenPath, type WalkBatch, walkTree } from "./walk.ts";

async function withMessy(
  fn: (root: string, lib: Awaited<ReturnType<typeof makeMessyLibrary>>) => Promise<void> | void,
) {
  const dir = await Deno.makeTempDir({ prefix: "musicfs-walk-" });
  try {
    const lib = await makeMessyLibrary(`${dir}/lib`);
    await fn(lib.root, lib);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function merge(batches: WalkBatch[]): WalkBatch {
  return {
    files: batches.flatMap((b) => b.files),
    dirs: batches.flatMap((b) => b.dirs),
    problems: batches.flatMap((b) => b.problems),
    failedDirs: batches.flatMap((b) => b.failedDirs),
  };
}

Deno.test("hidden means one dot and then something else", () => {
  for (const n of [".git", "._x.mp3", ".Trash-1000", ".DS_Store"]) assert.ok(isHiddenName(n), n);
  for (const n of ["...And You Will Know Us by the Trail of Dead", "..Dots", "a.mp3", "."]) {
    assert.ok(!isHiddenName(n), n);
  }
  assert.ok(isHiddenPath("a/.git/b.mp3") && !isHiddenPath("...And You/x.mp3"));
});

Deno.test("cover ranking: cover, folder, front, then AlbumArt large before small", () => {
  const names = [
    "AlbumArtSmall.jpg",
    "AlbumArt_{5D1F1C2A-7A51-4D3E-9F0B-63A44E0C2B17}_Large.jpg",
    "front.png",
    "Folder.jpg",
    "cover.jpg",
    "albumart.png",
  ];
  const ranked = [...names].sort((a, b) => coverRank(a) - coverRank(b));
  assert.deepEqual(ranked, [
    "cover.jpg",
    "Folder.jpg",
    "front.png",
    "AlbumArt_{5D1F1C2A-7A51-4D3E-9F0B-63A44E0C2B17}_Large.jpg",
    "albumart.png",
    "AlbumArtSmall.jpg",
  ]);
  assert.equal(coverRank("back.jpg"), -1);
  assert.equal(coverRank("Desktop.ini"), -1);
});

Deno.test("walk of the messy library: every track, nothing hidden, every skip named", async () => {
  await withMessy((root, lib) => {
    const batches: WalkBatch[] = [];
    walkTree(root, "", (b) => batches.push(b));
    const w = merge(batches);
    const files = new Set(w.files.map((f) => f.relPath));
    for (const t of lib.tracks) assert.ok(files.has(t.relPath), `missing ${t.relPath}`);
    for (const f of files) assert.ok(!isHiddenPath(f), `hidden ${f} walked`);
    const problem = (rel: string) => w.problems.find((p) => p.relPath === rel);
    assert.match(problem("")!.reason, /^2 hidden folders skipped .*\.Trash-1000, \.git/);
    for (const p of lib.problems) {
      if (p.needsDroppedCaps || p.case === "cut" || p.case === "playlist") continue;
      const got = p.prefix
        ? w.problems.find((q) => q.relPath.startsWith(p.relPath))
        : problem(p.relPath);
      assert.ok(got, `no problem for ${p.relPath}: ${JSON.stringify(w.problems)}`);
      assert.match(got.reason, p.reason, p.relPath);
    }
    // The folder past PATH_MAX keeps whatever is known below it.
    assert.ok(w.failedDirs.some((d) => d.startsWith("Deep/")));
    const covers = new Map(w.dirs.map((d) => [d.relPath, d.cover?.relPath]));
    for (const c of lib.covers) {
      if (!c.file) continue;
      const dir = c.file.slice(0, c.file.lastIndexOf("/"));
      assert.equal(covers.get(dir), c.file, dir);
    }
  });
});

Deno.test("walk without CAP_DAC_OVERRIDE names the folder it cannot enter", async () => {
  await withMessy(async (root, lib) => {
    const script = new URL("./testdata/walk_print.ts", import.meta.url).pathname;
    const [exe, ...pre] = [...DROP_DAC_ARGV, Deno.execPath(), "run", "-A", "--quiet", script];
    const out = await new Deno.Command(exe, {
      args: [...pre, root],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const w = merge(
      new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l)),
    );
    const locked = w.problems.find((p) => p.relPath === "Locked Folder");
    assert.ok(locked, JSON.stringify(w.problems));
    assert.match(locked.reason, /cannot list directory: permission denied/);
    assert.ok(w.failedDirs.includes("Locked Folder"));
    // The unreadable file is still found; reading it is what fails (the scan lists it).
    assert.ok(w.files.some((f) => f.relPath === lib.lockedFile.relPath));
  });
});
