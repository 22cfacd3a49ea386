import assert from "node:assert/strict";
import { Database, openLibraryDatabase } from "./db.ts";
import { markCleanClose, takeCleanClose } from "./clean_close.ts";

Deno.test("clean close: an unchanged file is trusted once; a changed, copied or crashed one is not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/library.db`;
    let db = Database.open(path);
    db.ensureOrigin("/music");
    db.checkpoint();
    db.close();
    markCleanClose(path);
    assert.equal(takeCleanClose(path), true);
    assert.equal(takeCleanClose(path), false, "the mark speaks for one open only");

    // A write after the mark (here: bytes flipped at the end) is not trusted.
    markCleanClose(path);
    const f = await Deno.open(path, { write: true });
    await f.seek(-16, Deno.SeekMode.End);
    await f.write(new Uint8Array(16).fill(0xa5));
    f.close();
    assert.equal(takeCleanClose(path), false);

    // A file replaced by a copy (another inode) is not trusted.
    db = Database.open(path);
    db.close();
    markCleanClose(path);
    await Deno.copyFile(path, `${path}.copy`);
    await Deno.rename(`${path}.copy`, path);
    assert.equal(takeCleanClose(path), false);

    // The daemon's open: the check is skipped only for a clean close.
    db = Database.open(path);
    db.close();
    markCleanClose(path);
    const checked = openLibraryDatabase(path);
    assert.equal(checked.checked, true, "only the daemon trusts the mark");
    checked.db.close();
    markCleanClose(path);
    const trusted = openLibraryDatabase(path, { trustCleanClose: true });
    assert.equal(trusted.checked, false);
    trusted.db.close();
    const crashed = openLibraryDatabase(path, { trustCleanClose: true });
    assert.equal(crashed.checked, true, "no mark: the full check");
    crashed.db.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
