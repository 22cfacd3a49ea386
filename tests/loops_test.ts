/**
 * The mount inside a library (or a library inside the mount) is a loop: refused at start with one
 * line, also when a symlink hides it, and nothing is created. Links from a library into a running
 * mount are covered by the torture (tests/torture/sources.ts).
 */
import assert from "node:assert/strict";
import { daemonDirs, exists, musicfs } from "./support/daemon.ts";

Deno.test("mount: a mountpoint inside a library, or a library inside the mountpoint, is refused", async () => {
  const dirs = await daemonDirs();
  try {
    await Deno.mkdir(`${dirs.lib}/sub`);
    // A folder outside the library that is a link into it.
    await Deno.symlink(dirs.lib, `${dirs.root}/into-lib`);
    const base = ["--state-dir", dirs.state, "--cache-dir", dirs.cache, "--foreground"];
    const cases: [string, string[], RegExp][] = [
      [
        "mountpoint in the library",
        ["mount", dirs.lib, "--mountpoint", `${dirs.lib}/sub`],
        /inside/,
      ],
      [
        "library in the mountpoint",
        ["mount", `${dirs.root}/lib/sub`, "--mountpoint", dirs.lib],
        /inside the mountpoint/,
      ],
      [
        "mountpoint in the library through a link",
        ["mount", dirs.lib, "--mountpoint", `${dirs.root}/into-lib/sub`],
        /a loop/,
      ],
    ];
    for (const [what, args, re] of cases) {
      const r = await musicfs([...args, ...base], { timeoutMs: 30_000 });
      assert.notEqual(r.code, 0, `${what}: exit 0`);
      const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("musicfs: "));
      assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
      assert.match(lines[0], re, what);
    }
    assert.equal(await exists(dirs.cache), false, "the cache dir was created");
  } finally {
    await dirs.cleanup();
  }
});
