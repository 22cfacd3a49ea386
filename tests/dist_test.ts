/**
 * The single-file build (`deno task dist`): built once into this test's temp dir, then run as a
 * new user would, with `PATH=/usr/bin:/bin` (no deno, node or npm) and a fresh HOME: two first
 * runs at once, a truncated and a damaged file, and a real mount of a fixture library.
 */
import assert from "node:assert/strict";
import { buildDist, HEADER_BYTES } from "../tools/dist.ts";
import { makeLibrary } from "./fixtures/mod.ts";
import { detachIfMounted } from "./support/daemon.ts";
import { getXattr, isMounted, needsFuse, run, tempDir, waitFor } from "./support/helpers.ts";

/** The environment of a machine with nothing but the base system (a login's runtime dir too). */
function bareEnv(home: string): Record<string, string> {
  return { PATH: "/usr/bin:/bin", HOME: home, XDG_RUNTIME_DIR: `${home}/.run`, LANG: "C.UTF-8" };
}

async function runBare(
  file: string,
  args: string[],
  home: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  await Deno.mkdir(`${home}/.run`, { recursive: true, mode: 0o700 });
  const out = await new Deno.Command(file, {
    args,
    env: bareEnv(home),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function* files(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* files(p);
    else if (e.isFile) yield p;
  }
}

Deno.test({
  name: "dist: one file runs with no deno on PATH: race, truncation, a real mount",
  ...needsFuse,
  async fn(t) {
    const tmp = await tempDir("musicfs-dist-");
    try {
      // Level 1: the test checks the format, not the ratio; it packs ~100 MB in ~2 s.
      const built = await buildDist({ outDir: `${tmp.path}/dist`, level: 1 });
      assert.match(built.path, /\/musicfs-\d+\.\d+\.\d+-linux-x64$/);
      const sums = await run(["sha256sum", "-c", `${built.path}.sha256`], {
        cwd: `${tmp.path}/dist`,
      });
      assert.deepEqual(sums.code, 0, sums.stdout + sums.stderr);
      const file = built.path;

      await t.step("two first runs at once both work, and one copy is kept", async () => {
        const home = `${tmp.path}/home-race`;
        await Deno.mkdir(home);
        const [a, b] = await Promise.all([
          runBare(file, ["--version"], home),
          runBare(file, ["--version"], home),
        ]);
        assert.deepEqual([a.code, a.stdout.trim(), a.stderr], [0, built.version, ""]);
        assert.deepEqual([b.code, b.stdout.trim(), b.stderr], [0, built.version, ""]);
        const base = `${home}/.cache/musicfs-dist`;
        const entries = (await Array.fromAsync(Deno.readDir(base))).map((e) => e.name).sort();
        const links = entries.filter((n) => !n.startsWith("."));
        assert.ok(
          entries.every((n) => n.startsWith(".unpack-") || links.includes(n)),
          `${entries}`,
        );
        assert.deepEqual(links.length, 1, `entries: ${entries}`);
        const target = await Deno.readLink(`${base}/${links[0]}`);
        // The loser's copy is gone: only the published one remains.
        assert.deepEqual(entries.filter((n) => n.startsWith(".unpack-")), [target]);
        const again = await runBare(file, ["--version"], home);
        assert.deepEqual(again.code, 0);
        // A cleaned cache (the unpacked copy deleted, its link left dangling) unpacks again.
        await Deno.remove(`${base}/${target}`, { recursive: true });
        const fresh = await runBare(file, ["--version"], home);
        assert.deepEqual([fresh.code, fresh.stderr], [0, ""]);
        assert.ok((await Deno.stat(`${base}/${links[0]}/deno`)).isFile);
      });

      await t.step("a truncated file fails with one clear line", async () => {
        const cut = `${tmp.path}/truncated`;
        const whole = await Deno.readFile(file);
        await Deno.writeFile(cut, whole.subarray(0, Math.floor(whole.length / 2)), { mode: 0o755 });
        const home = `${tmp.path}/home-cut`;
        await Deno.mkdir(home);
        const r = await runBare(cut, ["--version"], home);
        assert.deepEqual(r.code, 1);
        assert.deepEqual(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.match(
          r.stderr,
          /^musicfs: .*truncated is damaged or incomplete .*download it again/,
        );
        // Cut inside the header too: still one line, never a shell error from the payload.
        await Deno.writeFile(cut, whole.subarray(0, HEADER_BYTES + 10), { mode: 0o755 });
        const r2 = await runBare(cut, ["--version"], home);
        assert.deepEqual(r2.code, 1);
        assert.deepEqual(r2.stderr.trim().split("\n").length, 1, r2.stderr);
      });

      await t.step("a damaged payload of the right size is refused by its hash", async () => {
        const bad = `${tmp.path}/damaged`;
        const bytes = await Deno.readFile(file);
        bytes[HEADER_BYTES + Math.floor((bytes.length - HEADER_BYTES) / 2)] ^= 0xff;
        await Deno.writeFile(bad, bytes, { mode: 0o755 });
        const home = `${tmp.path}/home-bad`;
        await Deno.mkdir(home);
        const r = await runBare(bad, ["--version"], home);
        assert.deepEqual(r.code, 1);
        assert.deepEqual(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.match(r.stderr, /damaged \(its SHA-256 does not match/);
        // Nothing half-unpacked is left to be used by a later run.
        const left = await Array.fromAsync(Deno.readDir(`${home}/.cache/musicfs-dist`));
        assert.deepEqual(left.map((e) => e.name), []);
      });

      await t.step("mount a library, read a track byte-identical, unmount", async () => {
        const home = `${tmp.path}/home-mount`;
        const lib = `${tmp.path}/lib`;
        const mnt = `${home}/MusicFS`;
        await Deno.mkdir(home);
        const fixture = await makeLibrary(lib, { tracks: 6, seed: 15 });
        try {
          // Reads go through the chunk cache, so `check` below validates a real LMDB index in
          // its child process (the unpacked deno running the validator module).
          const m = await runBare(file, ["mount", lib, "--wait", "--cache-reads", "always"], home);
          assert.deepEqual(m.code, 0, m.stderr);
          assert.ok(await isMounted(mnt), "the mount is there");
          const tracks: string[] = [];
          for await (const p of files(`${mnt}/Artists`)) tracks.push(p);
          assert.deepEqual(tracks.length, fixture.good.length);
          for (const p of tracks) {
            const source = await getXattr(p, "user.musicfs.source");
            assert.ok(source, `no source for ${p}`);
            assert.deepEqual(await Deno.readFile(p), await Deno.readFile(source), p);
          }
          const st = await runBare(file, ["status"], home);
          assert.deepEqual(st.code, 0, st.stderr);
          assert.match(st.stdout, new RegExp(`tracks +${fixture.good.length}\\b`));
          const u = await runBare(file, ["unmount", mnt], home);
          assert.deepEqual(u.code, 0, u.stderr);
          await waitFor(async () => !(await isMounted(mnt)), 10_000, "the unmount");
          const c = await runBare(file, ["check"], home);
          assert.deepEqual(c.code, 0, c.stdout + c.stderr);
          assert.match(c.stdout, /^library\.db +ok \(6 tracks/m);
          assert.match(c.stdout, /^chunk cache +ok \([1-9]\d* chunk files, .*index matches\)$/m);
        } finally {
          await detachIfMounted(mnt);
        }
      });
    } finally {
      await tmp.cleanup();
    }
  },
});
