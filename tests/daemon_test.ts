/**
 * The daemon's lifecycle end to end (issue 6): the real daemon as a child process, stopped by
 * SIGTERM with reads in flight, killed with SIGKILL and restarted, contended for, watched by a
 * stand-in for systemd, and started in the background. Only async file APIs touch the mount.
 */
import assert from "node:assert/strict";
import { makeLibrary } from "./fixtures/mod.ts";
import { controlRequest, controlSocketPath } from "../src/daemon/mod.ts";
import { sockaddrUn } from "../src/daemon/sd_notify.ts";
import { SearchIndex } from "../src/search/mod.ts";
import { isMounted, needsFuse, waitFor } from "./support/helpers.ts";
import {
  daemonDirs,
  daemonOptions,
  detachIfMounted,
  exists,
  musicfs,
  processAlive,
  startDaemon,
  withDaemon,
  withDirs,
} from "./support/daemon.ts";

/** Every file below `root`, relative to it (async readdir only). */
async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    const subdirs: string[] = [];
    for await (const e of Deno.readDir(rel ? `${root}/${rel}` : root)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) subdirs.push(p);
      else out.push(p);
    }
    await Promise.all(subdirs.map(visit));
  };
  await visit("");
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

Deno.test(
  "daemon: SIGTERM with reads in flight: reads finish or fail cleanly, the mount goes, exit 0, no WAL left, the search snapshot holds every track",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      // Bigger files (20 s of WAV, ~170 KB each) so that reads are always under way.
      const lib = await makeLibrary(dirs.lib, {
        tracks: 40,
        seed: 21,
        formats: ["wav", "flac"],
        durationMs: 20_000,
      });
      const d = await startDaemon(daemonOptions(dirs));
      try {
        const st = await d.waitScanDone();
        assert.equal(st.tracks, lib.good.length);
        await waitFor(async () => (await d.getStatus()).search.state === "ready", 20_000, "search");
        const files = await listFiles(`${dirs.mnt}/Artists`);
        assert.equal(files.length, lib.good.length);
        // The source of each mounted file, by reading both once.
        const sources = new Map<string, Uint8Array>();
        for (const t of lib.good) {
          sources.set(t.relPath, await Deno.readFile(`${dirs.lib}/${t.relPath}`));
        }
        const expected = new Map<string, Uint8Array>();
        for (const f of files) {
          const bytes = await Deno.readFile(`${dirs.mnt}/Artists/${f}`);
          const src = [...sources.values()].find((s) => sameBytes(s, bytes));
          assert.ok(src, `${f} matches no source file`);
          expected.set(f, src);
        }

        let completed = 0;
        let wrong = 0;
        const failures: unknown[] = [];
        let stop = false;
        const reader = async (k: number) => {
          for (let i = k; !stop; i++) {
            const f = files[i % files.length];
            try {
              const got = await Deno.readFile(`${dirs.mnt}/Artists/${f}`);
              if (sameBytes(got, expected.get(f)!)) completed++;
              else wrong++;
            } catch (e) {
              failures.push(e);
              return;
            }
          }
        };
        const readers = Array.from({ length: 8 }, (_, k) => reader(k * 5));
        const settled = Promise.all(readers);
        await waitFor(() => completed >= 40, 20_000, "reads under way");
        d.kill("SIGTERM");
        const status = await d.waitExit(30_000);
        // Reads still going after the unmount see the empty mountpoint and stop.
        let allSettled = false;
        settled.then(() => (allSettled = true));
        await waitFor(() => allSettled, 15_000, "every read to finish or fail");
        stop = true;

        assert.equal(status.code, 0, `exit code ${status.code}; log:\n${d.stderr}`);
        assert.equal(wrong, 0, "a read returned bytes that are not the file's");
        for (const e of failures) assert.ok(e instanceof Error, `unclean failure: ${e}`);
        assert.equal(await isMounted(dirs.mnt), false, "the mount is still there");
        const wal = `${dirs.state}/library.db-wal`;
        if (await exists(wal)) assert.equal((await Deno.stat(wal)).size, 0, "WAL content left");
        assert.equal(await exists(controlSocketPath(dirs.state)), false, "control socket left");
        const index = await SearchIndex.open(`${dirs.state}/search.db`, { readOnly: true });
        assert.equal(index.size, lib.good.length, "documents in the search snapshot");
        // The snapshot answers queries, not just counts: a tagged title finds its track.
        const titled = lib.good.find((g) =>
          g.tags.title && /^[\p{L}\p{N} ]{4,}$/u.test(g.tags.title)
        );
        assert.ok(titled, "the fixture has a plainly titled track");
        assert.ok(
          index.search(titled.tags.title!, 1000).length > 0,
          `"${titled.tags.title}" not found`,
        );
        index.close();
        assert.match(d.stderr, /Shutdown complete/);
      } finally {
        await d.stop();
      }
    });
  },
);

Deno.test(
  "daemon: after SIGKILL the next mount detaches the dead mount and serves every committed track",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      const lib = await makeLibrary(dirs.lib, { tracks: 80, seed: 23, broken: 3 });
      const first = await startDaemon(daemonOptions(dirs));
      try {
        const st = await first.waitScanDone();
        assert.equal(st.tracks, lib.good.length);
        first.kill("SIGKILL");
        const s = await first.waitExit();
        assert.equal(s.signal, "SIGKILL");
      } finally {
        // Only stop the process: the dead mount is left in place on purpose.
        if (!first.exitStatus) await first.stop();
      }
      assert.ok(await isMounted(dirs.mnt), "the killed daemon's mount should be left behind");
      await assert.rejects(
        (async () => {
          for await (const _ of Deno.readDir(dirs.mnt)) break;
        })(),
        (e: Error & { code?: string }) => e.code === "ENOTCONN",
      );

      await withDaemon(daemonOptions(dirs), async (d) => {
        assert.equal(d.tracksAtReady, lib.good.length, "tracks served at once after the restart");
        assert.match(d.stderr, /dead FUSE mount/);
        const files = await listFiles(`${dirs.mnt}/Artists`);
        assert.equal(files.length, lib.good.length);
        const problems = await Deno.readTextFile(`${dirs.mnt}/.musicfs/problems.txt`);
        for (const b of lib.broken) assert.ok(problems.includes(`${dirs.lib}/${b.relPath}`));
        const st = await d.waitScanDone();
        assert.equal(st.tracks, lib.good.length);
        // Exactly one musicfs mount at the mountpoint: the dead one was detached, not stacked.
        const mounts = (await Deno.readTextFile("/proc/self/mounts")).split("\n")
          .filter((l) => l.split(" ")[1] === dirs.mnt);
        assert.equal(mounts.length, 1, mounts.join("\n"));
      });
      assert.equal(await isMounted(dirs.mnt), false);
    });
  },
);

Deno.test(
  "daemon: a second daemon on the same state dir or cache dir is refused, naming the first's pid",
  needsFuse,
  async () => {
    const dirs = await daemonDirs();
    try {
      await makeLibrary(dirs.lib, { tracks: 20, seed: 25 });
      // Reading through the chunk cache, so that the cache dir is in use (and locked) too.
      const always = ["--cache-reads", "always"];
      await withDaemon({ ...daemonOptions(dirs), args: always }, async (d) => {
        const cases = [
          { what: "same state dir", state: dirs.state, cache: `${dirs.root}/cache2` },
          { what: "same cache dir", state: `${dirs.root}/state2`, cache: dirs.cache },
        ];
        for (const [i, c] of cases.entries()) {
          const mnt = `${dirs.root}/mnt-second-${i}`;
          await Deno.mkdir(mnt);
          const r = await musicfs([
            "mount",
            dirs.lib,
            "--mountpoint",
            mnt,
            "--state-dir",
            c.state,
            "--cache-dir",
            c.cache,
            "--foreground",
            ...always,
          ], { timeoutMs: 20_000 });
          assert.equal(r.code, 1, `${c.what}: exit ${r.code}: ${r.stderr}`);
          const lines = r.stderr.trim().split("\n");
          assert.equal(lines.length, 1, `${c.what}: ${r.stderr}`);
          assert.match(lines[0], /^musicfs: /);
          assert.match(lines[0], new RegExp(`\\b${d.pid}\\b`), `${c.what}: pid not named`);
          assert.equal(await isMounted(mnt), false, `${c.what}: mounted anyway`);
        }
        // The first daemon is untouched and still serving.
        const names: string[] = [];
        for await (const e of Deno.readDir(dirs.mnt)) names.push(e.name);
        assert.ok(names.includes("Artists"));
        assert.equal((await d.getStatus()).pid, d.pid);
      });
    } finally {
      await dirs.cleanup();
    }
  },
);

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
});

/** A unix datagram socket standing in for systemd's $NOTIFY_SOCKET. */
class NotifyReceiver {
  readonly fd: number;
  readonly messages: string[] = [];
  constructor(readonly path: string) {
    this.fd = libc.symbols.socket(1, 2 | 0o2000000, 0); // AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC
    assert.ok(this.fd >= 0);
    const { addr, len } = sockaddrUn(path);
    assert.equal(libc.symbols.bind(this.fd, addr as Uint8Array<ArrayBuffer>, len), 0);
  }
  /** Move every queued datagram to {@link messages} (MSG_DONTWAIT: never blocks). */
  drain(): void {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = Number(libc.symbols.recv(this.fd, buf, BigInt(buf.length), 0x40));
      if (n < 0) return;
      this.messages.push(new TextDecoder().decode(buf.subarray(0, n)));
    }
  }
  close(): void {
    libc.symbols.close(this.fd);
  }
}

Deno.test(
  "daemon: sd_notify READY=1, STATUS=, STOPPING=1 arrive in order on $NOTIFY_SOCKET",
  needsFuse,
  async () => {
    const dirs = await daemonDirs();
    const receiver = new NotifyReceiver(`${dirs.root}/notify.sock`);
    // The socket queue is short (net.unix.max_dgram_qlen): keep it empty as systemd would.
    const timer = setInterval(() => receiver.drain(), 5);
    try {
      const lib = await makeLibrary(dirs.lib, { tracks: 30, seed: 27 });
      const d = await startDaemon(daemonOptions(dirs, { env: { NOTIFY_SOCKET: receiver.path } }));
      try {
        await d.waitScanDone();
        await waitFor(
          () => receiver.messages.includes(`STATUS=serving ${lib.good.length} tracks`),
          10_000,
          "the serving status",
        );
        assert.ok(!receiver.messages.includes("STOPPING=1"));
        d.kill("SIGTERM");
        assert.equal((await d.waitExit()).code, 0);
      } finally {
        await d.stop();
      }
      receiver.drain();
      const m = receiver.messages;
      assert.equal(m.filter((x) => x === "READY=1").length, 1, m.join("\n"));
      assert.equal(m.filter((x) => x === "STOPPING=1").length, 1, m.join("\n"));
      const ready = m.indexOf("READY=1");
      const serving = m.indexOf(`STATUS=serving ${lib.good.length} tracks`);
      const stopping = m.indexOf("STOPPING=1");
      assert.ok(ready < serving && serving < stopping, m.join("\n"));
      assert.equal(stopping, m.length - 1, `messages after STOPPING=1:\n${m.join("\n")}`);
      for (const x of m) assert.match(x, /^[A-Z_]+=/, x);
    } finally {
      clearInterval(timer);
      receiver.close();
      await detachIfMounted(dirs.mnt);
      await dirs.cleanup();
    }
  },
);

Deno.test(
  "daemon: background mount returns once the mount answers, and POST /shutdown ends it",
  needsFuse,
  async () => {
    const dirs = await daemonDirs();
    let pid = 0;
    try {
      const lib = await makeLibrary(dirs.lib, { tracks: 30, seed: 29 });
      const args = ["mount", dirs.lib, "--mountpoint", dirs.mnt, "--state-dir", dirs.state];
      const r = await musicfs([...args, "--cache-dir", dirs.cache]);
      const m = /musicfs: mounted (.+) \(pid (\d+)\)/.exec(r.stdout);
      if (m) pid = Number(m[2]);
      assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
      assert.ok(m, `stdout: ${r.stdout}`);
      assert.equal(m[1], dirs.mnt);
      // It says what happens next: the scan in the background, or what the scan found.
      assert.match(
        r.stdout,
        /musicfs: (scanning .+ in the background.*; musicfs status shows progress|30 tracks;)/,
      );
      // Right after it returned, the mount answers.
      const names: string[] = [];
      for await (const e of Deno.readDir(dirs.mnt)) names.push(e.name);
      assert.ok(names.includes("Artists"), `listing: ${names}`);
      assert.ok(await processAlive(pid));
      const sock = controlSocketPath(dirs.state);
      const st = await controlRequest(sock, "GET", "/status") as { pid: number };
      assert.equal(st.pid, pid);
      await waitFor(
        async () => {
          const s = await controlRequest(sock, "GET", "/status") as { tracks: number };
          return s.tracks === lib.good.length;
        },
        30_000,
        "the scan",
      );
      assert.ok(await exists(`${dirs.state}/musicfs.log`), "no log file in the state dir");

      await controlRequest(sock, "POST", "/shutdown");
      await waitFor(async () => !(await isMounted(dirs.mnt)), 20_000, "the mount to go");
      await waitFor(async () => !(await processAlive(pid)), 20_000, "the daemon to exit");
      const log = await Deno.readTextFile(`${dirs.state}/musicfs.log`);
      assert.match(log, /Shutdown complete/);
    } finally {
      if (pid && await processAlive(pid)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
        await waitFor(async () => !(await processAlive(pid)), 10_000).catch(() => {});
      }
      await detachIfMounted(dirs.mnt);
      await dirs.cleanup();
    }
  },
);

Deno.test(
  "daemon: a background mount that cannot start exits 1 with the daemon's one-line reason",
  needsFuse,
  async () => {
    await withDirs(async (dirs) => {
      await makeLibrary(dirs.lib, { tracks: 3, seed: 31 });
      await Deno.writeTextFile(`${dirs.mnt}/occupied.txt`, "x");
      const r = await musicfs([
        "mount",
        dirs.lib,
        "--mountpoint",
        dirs.mnt,
        "--state-dir",
        dirs.state,
        "--cache-dir",
        dirs.cache,
      ]);
      assert.equal(r.code, 1, `exit ${r.code}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^musicfs: .*not empty/);
      assert.equal(await isMounted(dirs.mnt), false);
    });
  },
);
