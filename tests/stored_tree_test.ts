/**
 * A restart serves the tree from library.db's rows (issue 14): the mount answers before the
 * tree is rebuilt in memory, with the same names, inodes and sizes; what changed while the
 * daemon was stopped arrives with the scan; stale rows are never served.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { makeLibrary } from "./fixtures/mod.ts";
import { needsFuse, waitFor } from "./support/helpers.ts";
import { daemonOptions, type DaemonProcess, startDaemon, withDirs } from "./support/daemon.ts";

/** Every entry below the four views: path -> "ino size" (async APIs only). */
async function snapshot(mnt: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    const dirs: string[] = [];
    for await (const e of Deno.readDir(`${mnt}/${rel}`)) {
      const p = `${rel}/${e.name}`;
      const st = await Deno.lstat(`${mnt}/${p}`);
      out.set(p, `${st.ino} ${st.isDirectory ? "dir" : st.size}`);
      if (e.isDirectory) dirs.push(p);
    }
    await Promise.all(dirs.map(visit));
  };
  await Promise.all(["Artists", "Albums", "Genres", "Years"].map(visit));
  return out;
}

const DEBUG = { args: ["--log-level", "debug"] };

async function stopped(d: DaemonProcess): Promise<void> {
  const status = await d.stop();
  assert.equal(status?.code, 0, d.stderr);
}

Deno.test(
  "stored tree: a restart serves library.db's rows at once, the same tree; changes made while stopped arrive with the scan; stale rows are not served",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      const lib = await makeLibrary(dirs.lib, { tracks: 30, seed: 14 });
      let d = await startDaemon(daemonOptions(dirs, DEBUG));
      let first: Map<string, string>;
      try {
        await d.waitScanDone();
        await waitFor(() => /Stored the tree in library\.db/.test(d.stderr), 30_000, "the dump");
        first = await snapshot(dirs.mnt);
        assert.ok(first.size > lib.good.length, "every track, in every view");
      } finally {
        await stopped(d);
      }

      // The second start serves the rows, then builds the same tree.
      d = await startDaemon(daemonOptions(dirs, DEBUG));
      try {
        assert.match(d.stderr, /serving the stored tree/);
        assert.deepEqual(await snapshot(dirs.mnt), first);
        await waitFor(() => /Tree built in \d+ ms after serving/.test(d.stderr), 30_000, "build");
        assert.match(d.stderr, /after serving from library\.db; 0 stored entries differed/);
        await d.waitScanDone();
        assert.deepEqual(await snapshot(dirs.mnt), first);
      } finally {
        await stopped(d);
      }

      // A file removed while stopped: served from the rows at first, gone after the scan.
      const gone = lib.good[0];
      await Deno.remove(`${dirs.lib}/${gone.relPath}`);
      d = await startDaemon(daemonOptions(dirs, DEBUG));
      try {
        assert.match(d.stderr, /serving the stored tree/);
        await d.waitScanDone();
        await waitFor(
          async () => (await snapshot(dirs.mnt)).size < first.size,
          30_000,
          "the removed track to leave the mount",
        );
        const now = await snapshot(dirs.mnt);
        for (const k of now.keys()) assert.ok(first.has(k), `${k} appeared`);
      } finally {
        await stopped(d);
      }

      // Rows stamped with another generation (a crash between a batch and its rows) are not
      // served: the tree is built from the tracks first.
      const raw = new DatabaseSync(`${dirs.state}/library.db`);
      raw.exec("UPDATE tree_meta SET value = value - 1 WHERE key = 'generation'");
      raw.close();
      d = await startDaemon(daemonOptions(dirs, DEBUG));
      try {
        assert.doesNotMatch(d.stderr, /serving the stored tree/);
        assert.match(d.stderr, /library\.db checked in \d+ ms \(\d+ tracks\)/);
        await d.waitScanDone();
        await waitFor(() => /Stored the tree in library\.db/.test(d.stderr), 30_000, "re-dump");
      } finally {
        await stopped(d);
      }
    });
  },
);
