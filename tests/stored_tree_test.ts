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
/** The tree in memory is dropped after 1 s unused. */
const DROPPING = { ...DEBUG, env: { MUSICFS_TREE_IDLE_SECONDS: "1" } };

/** Whether library.db's tree rows are stamped with its current generation. */
function rowsCurrent(state: string): boolean {
  const db = new DatabaseSync(`${state}/library.db`, { readOnly: true });
  try {
    const one = (sql: string) => (db.prepare(sql).get() as { value: number } | undefined)?.value;
    const rows = one("SELECT value FROM tree_meta WHERE key = 'generation'");
    return rows !== undefined && rows === one("SELECT value FROM meta WHERE key = 'generation'");
  } finally {
    db.close();
  }
}

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
        await waitFor(() => rowsCurrent(dirs.state), 30_000, "the rows");
        first = await snapshot(dirs.mnt);
        assert.ok(first.size > lib.good.length, "every track, in every view");
      } finally {
        await stopped(d);
      }

      // The second start serves the rows; the tree is built when something needs it (here
      // /Playlists), the same tree, and dropped again once idle.
      d = await startDaemon(daemonOptions(dirs, DROPPING));
      try {
        assert.match(d.stderr, /checked in \d+ ms; serving the stored tree/, d.stderr);
        assert.deepEqual(await snapshot(dirs.mnt), first);
        await d.waitScanDone();
        assert.doesNotMatch(d.stderr, /Tree built in memory/, "a scan that changed nothing");
        for await (const _ of Deno.readDir(`${dirs.mnt}/Playlists`)) { /* listed */ }
        assert.match(
          d.stderr,
          /Tree built in memory; 0 stored entries it was served from differed/,
        );
        assert.deepEqual(await snapshot(dirs.mnt), first);
        await waitFor(() => /Tree dropped from memory/.test(d.stderr), 30_000, "the drop");
        assert.deepEqual(await snapshot(dirs.mnt), first);
      } finally {
        await stopped(d);
      }

      // A file removed while stopped: served from the rows at first, gone after the scan (its
      // change builds the tree; the rows, stale then, are stored whole again).
      const gone = lib.good[0];
      await Deno.remove(`${dirs.lib}/${gone.relPath}`);
      d = await startDaemon(daemonOptions(dirs, DEBUG));
      try {
        assert.match(d.stderr, /checked in \d+ ms; serving the stored tree/);
        await d.waitScanDone();
        await waitFor(
          async () => (await snapshot(dirs.mnt)).size < first.size,
          30_000,
          "the removed track to leave the mount",
        );
        const now = await snapshot(dirs.mnt);
        for (const k of now.keys()) assert.ok(first.has(k), `${k} appeared`);
        await waitFor(() => rowsCurrent(dirs.state), 30_000, "the rows stored again");
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
        assert.doesNotMatch(d.stderr, /checked in \d+ ms; serving the stored tree/);
        assert.match(d.stderr, /library\.db checked in \d+ ms \(\d+ tracks\)/);
        await d.waitScanDone();
        await waitFor(() => /Stored the tree in library\.db/.test(d.stderr), 30_000, "re-dump");
      } finally {
        await stopped(d);
      }
    });
  },
);
