/**
 * install.sh run from a clone installs for that clone only: a `musicfs` or `deno` in the bin
 * dir that belongs to another clone stays unless `--system` is given. Runs a copy of the
 * script in a scratch clone (its node_modules a link to ours, already installed) against a
 * scratch bin dir (`MUSICFS_BINDIR`), so nothing outside the temp dir changes.
 */
import assert from "node:assert/strict";
import { run, tempDir } from "./support/helpers.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

async function same(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([Deno.readFile(a), Deno.readFile(b)]);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  } catch {
    return false;
  }
}

async function has(cmd: string): Promise<boolean> {
  return (await run(["sh", "-c", `command -v ${cmd}`])).code === 0;
}

// The script reinstalls npm packages when the lock changed (that would write through the link
// into our node_modules) and installs Debian packages when tools are missing: run it only where
// it has nothing of the kind to do.
const ready = await same(`${REPO}/package-lock.json`, `${REPO}/node_modules/.musicfs-lock`) &&
  await has("npm") && await has("fusermount3") && await has("ffmpeg");
if (!ready) {
  console.error("*** install.sh test SKIPPED: run ./install.sh first (npm packages, fuse3) ***");
}

Deno.test(
  "install.sh keeps another clone's musicfs and deno unless --system, and says so",
  { ignore: !ready },
  async () => {
    const dir = await tempDir();
    try {
      const clone = `${dir.path}/clone`;
      const bin = `${dir.path}/bin`;
      await Deno.mkdir(clone);
      await Deno.mkdir(bin);
      for (const f of ["install.sh", "package-lock.json", "deno.json", "main.ts"]) {
        await Deno.copyFile(`${REPO}/${f}`, `${clone}/${f}`);
      }
      await Deno.chmod(`${clone}/install.sh`, 0o755);
      await Deno.symlink(await Deno.realPath(`${REPO}/node_modules`), `${clone}/node_modules`);
      await Deno.symlink(`${REPO}/src`, `${clone}/src`);
      // Another clone's tools, as a machine-wide install would have them.
      await Deno.symlink("/elsewhere/node_modules/@deno/linux-x64-glibc/deno", `${bin}/deno`);
      const otherLauncher = `#!/bin/sh\n# musicfs launcher written by install.sh\n` +
        `exec "/elsewhere/deno" run -A --quiet "/elsewhere/main.ts" "$@"\n`;
      await Deno.writeTextFile(`${bin}/musicfs`, otherLauncher, { mode: 0o755 });

      const install = (...args: string[]) =>
        run([`${clone}/install.sh`, ...args], {
          // The scratch clone has no tools/: no single-file build, a launcher of its main.ts.
          env: { MUSICFS_BINDIR: bin, PATH: Deno.env.get("PATH")! },
        });

      const first = await install();
      const said = first.stdout + first.stderr;
      assert.equal(first.code, 0, said);
      assert.equal(
        await Deno.readLink(`${bin}/deno`),
        "/elsewhere/node_modules/@deno/linux-x64-glibc/deno",
      );
      assert.equal(await Deno.readTextFile(`${bin}/musicfs`), otherLauncher);
      assert.match(said, new RegExp(`kept ${bin}/deno .*this clone's is ${clone}/.bin/deno`));
      assert.match(said, new RegExp(`kept ${bin}/musicfs .*/elsewhere.*--system`));
      assert.match(
        await Deno.readLink(`${clone}/.bin/deno`),
        new RegExp(`^${clone}/node_modules/`),
      );
      assert.match(
        await Deno.readTextFile(`${clone}/.bin/musicfs`),
        new RegExp(`"${clone}/main.ts"`),
      );
      const version = await run([`${clone}/.bin/musicfs`, "--version"]);
      assert.equal(version.code, 0, version.stderr);

      const system = await install("--system");
      assert.equal(system.code, 0, system.stdout + system.stderr);
      assert.match(await Deno.readLink(`${bin}/deno`), new RegExp(`^${clone}/node_modules/`));
      assert.match(await Deno.readTextFile(`${bin}/musicfs`), new RegExp(`"${clone}/main.ts"`));

      // Now they are this clone's: a plain run updates them in place.
      const again = await install();
      assert.equal(again.code, 0);
      assert.doesNotMatch(again.stdout + again.stderr, /kept/);

      const bad = await install("--bogus");
      assert.equal(bad.code, 2);
      assert.match(bad.stdout, /unknown option --bogus/);
    } finally {
      await dir.cleanup();
    }
  },
);
