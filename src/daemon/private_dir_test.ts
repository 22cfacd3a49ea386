import assert from "node:assert/strict";
import { makePrivate } from "./private_dir.ts";

const modeOf = async (p: string) => (await Deno.lstat(p)).mode! & 0o7777;

Deno.test("makePrivate: a wide state dir becomes 0700 with 0600 files; links are not followed", async () => {
  const root = await Deno.makeTempDir({ prefix: "musicfs-private-" });
  try {
    const dir = `${root}/state`;
    await Deno.mkdir(`${dir}/chunks/ab`, { recursive: true });
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(`${dir}/chunks`, 0o755);
    await Deno.chmod(`${dir}/chunks/ab`, 0o775);
    await Deno.writeTextFile(`${dir}/library.db`, "x", { mode: 0o644 });
    await Deno.chmod(`${dir}/library.db`, 0o644);
    await Deno.writeTextFile(`${dir}/chunks/ab/abcd`, "y");
    await Deno.chmod(`${dir}/chunks/ab/abcd`, 0o666);
    await Deno.writeTextFile(`${dir}/ok`, "z");
    await Deno.chmod(`${dir}/ok`, 0o600);
    // Someone else's file linked in: never touched.
    await Deno.writeTextFile(`${root}/outside`, "o");
    await Deno.chmod(`${root}/outside`, 0o644);
    await Deno.symlink(`${root}/outside`, `${dir}/link`);

    const r = await makePrivate(dir, "state dir");
    assert.equal(r.fixed, 5);
    assert.deepEqual(r.failed, []);
    assert.equal(await modeOf(dir), 0o700);
    assert.equal(await modeOf(`${dir}/chunks`), 0o700);
    assert.equal(await modeOf(`${dir}/chunks/ab`), 0o700);
    assert.equal(await modeOf(`${dir}/library.db`), 0o600);
    assert.equal(await modeOf(`${dir}/chunks/ab/abcd`), 0o600);
    assert.equal(await modeOf(`${dir}/ok`), 0o600);
    assert.equal(await modeOf(`${root}/outside`), 0o644);
    // A second start finds nothing to fix.
    assert.equal((await makePrivate(dir, "state dir")).fixed, 0);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("makePrivate: a missing dir is created 0700", async () => {
  const root = await Deno.makeTempDir({ prefix: "musicfs-private-" });
  try {
    const r = await makePrivate(`${root}/a/b`, "cache dir");
    assert.equal(r.fixed, 0);
    assert.equal(await modeOf(`${root}/a/b`), 0o700);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
