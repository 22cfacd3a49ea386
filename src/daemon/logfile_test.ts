import assert from "node:assert/strict";
import { rotateLogFile } from "./logfile.ts";

Deno.test("log file rotates past its size and keeps a bounded history", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = `${dir}/musicfs.log`;
    assert.equal(await rotateLogFile(log, { maxBytes: 4 }), false);
    for (const text of ["one!", "two!", "three", "four!"]) {
      await Deno.writeTextFile(log, text);
      assert.equal(await rotateLogFile(log, { maxBytes: 4, keep: 2 }), true);
    }
    await Deno.writeTextFile(log, "tiny");
    assert.equal(await rotateLogFile(log, { maxBytes: 100, keep: 2 }), false);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["musicfs.log", "musicfs.log.1", "musicfs.log.2"]);
    assert.equal(await Deno.readTextFile(`${log}.1`), "four!");
    assert.equal(await Deno.readTextFile(`${log}.2`), "three");
    assert.equal(await Deno.readTextFile(log), "tiny");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
