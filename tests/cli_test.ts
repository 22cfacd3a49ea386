/**
 * The command line as a newcomer meets it (issue 15): every rough edge is one line with the
 * right exit code; commands find their daemon through the runtime registry (`--mountpoint`,
 * `unmount DIR`, one daemon addressed, several listed); a busy mount is not detached lazily
 * behind its users' backs; `mount --wait` returns after the first scan.
 */
import assert from "node:assert/strict";
import { makeLibrary } from "./fixtures/mod.ts";
import {
  controlRequest,
  controlSocketPath,
  type DaemonStatus,
  registryDir,
  serveControl,
} from "../src/daemon/mod.ts";
import { detachIfMounted, musicfs, musicfsArgv, processAlive } from "./support/daemon.ts";
import { isMounted, needsFuse, run, tempDir, waitFor } from "./support/helpers.ts";

/** Exactly one line on stderr, nothing on stdout, exit `code`; returns the line. */
function oneLine(r: { code: number; stdout: string; stderr: string }, code: number): string {
  assert.equal(r.code, code, `exit ${r.code}: ${r.stderr}`);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^musicfs: /);
  return lines[0];
}

Deno.test("cli: bad arguments get one line and exit 2", async () => {
  const dir = await tempDir();
  try {
    const lib = dir.path;
    assert.match(oneLine(await musicfs(["mount"]), 2), /missing required argument 'library'/);
    assert.match(oneLine(await musicfs(["mount", lib, "--bogus"]), 2), /unknown option '--bogus'/);
    assert.match(oneLine(await musicfs(["statux"]), 2), /unknown command 'statux'.*status/);
    assert.match(
      oneLine(await musicfs(["mount", lib, "--log-level", "fatal"]), 2),
      /^musicfs: Invalid --log-level: fatal \(use trace, debug, info, warning, error\)$/,
    );
    assert.match(
      oneLine(await musicfs(["mount", lib, "--cache-size", "999999999T"]), 2),
      /^musicfs: Invalid size: 999999999T \(at most 1024T\)$/,
    );
    assert.match(
      oneLine(await musicfs(["mount", "--demo", `${lib}/mnt`, "extra"]), 2),
      /--demo takes one folder/,
    );
    assert.match(
      oneLine(await musicfs(["unmount", `${lib}/a`, "--mountpoint", `${lib}/b`]), 2),
      /Two mountpoints given/,
    );
  } finally {
    await dir.cleanup();
  }
});

Deno.test({
  name: "cli: a control socket that refuses permission is one clear line, not a client error",
  ignore: Deno.uid() !== 0,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await tempDir();
    const server = await serveControl({
      socketPath: controlSocketPath(dir.path),
      handlers: {
        status: () => ({}),
        search: () => Promise.resolve({ results: [] }),
        rescan: () => Promise.resolve({}),
        shutdown: () => Promise.resolve(),
      },
    });
    try {
      // Another user's daemon: its socket is 0600 and owned by them.
      await Deno.chown(controlSocketPath(dir.path), 65534, 65534);
      // Root without the capability to override file permissions, as any other user would be.
      const r = await run([
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-all",
        ...musicfsArgv(),
        "status",
        "--state-dir",
        dir.path,
      ]);
      const line = oneLine(r, 1);
      assert.match(
        line,
        /permission denied on the daemon's control socket .* \(it belongs to uid 65534\)/,
      );
      assert.doesNotMatch(line, /client error/);
    } finally {
      await server.shutdown();
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "cli: commands find their daemon by mountpoint; several are listed; busy unmount refused",
  ...needsFuse,
  async fn() {
    const dir = await tempDir();
    const a = { lib: `${dir.path}/libA`, mnt: `${dir.path}/mntA`, state: `${dir.path}/stateA` };
    const b = { lib: `${dir.path}/libB`, mnt: `${dir.path}/mntB`, state: `${dir.path}/stateB` };
    let holder: Deno.ChildProcess | undefined;
    try {
      const libA = await makeLibrary(a.lib, { tracks: 8, seed: 41, broken: 1 });
      const libB = await makeLibrary(b.lib, { tracks: 12, seed: 42 });
      const mount = (d: typeof a, ...more: string[]) =>
        musicfs([
          "mount",
          d.lib,
          "--mountpoint",
          d.mnt,
          "--state-dir",
          d.state,
          "--cache-dir",
          `${d.state}-cache`,
          ...more,
        ]);
      // --wait: back only once the first scan is done, saying what it found.
      const ma = await mount(a, "--wait");
      assert.equal(ma.code, 0, ma.stderr);
      assert.match(ma.stdout, new RegExp(`^musicfs: mounted ${a.mnt} \\(pid \\d+\\)$`, "m"));
      assert.match(
        ma.stdout,
        /^musicfs: 8 tracks, 1 unreadable file \(see .*\/\.musicfs\/problems\.txt\); the libraries are watched for changes$/m,
      );
      // One daemon: found without any flag, though its state dir is not the default.
      const one = await musicfs(["status"]);
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stdout, new RegExp(`^mountpoint +${a.mnt}$`, "m"));
      assert.match(one.stdout, /^tracks +8 \(1 unreadable file: see .*problems\.txt\)$/m);
      assert.match(one.stdout, /^scan +done: 9 files, 9 new or changed files read$/m);
      assert.equal(libA.good.length, 8);

      const mb = await mount(b);
      assert.equal(mb.code, 0, mb.stderr);
      // Two daemons: status shows a line each and how to pick; the others ask for a pick.
      const all = await musicfs(["status"]);
      assert.equal(all.code, 0, all.stderr);
      const lines = all.stdout.trimEnd().split("\n");
      assert.equal(lines.length, 3, all.stdout);
      assert.match(lines[0], new RegExp(`^${a.mnt} +pid \\d+, 8 tracks, 1 unreadable, scan `));
      assert.match(lines[1], new RegExp(`^${b.mnt} +pid \\d+, `));
      assert.match(lines[2], /2 daemons running; .*musicfs status --mountpoint DIR/);
      const rescan = oneLine(await musicfs(["rescan"]), 2);
      assert.match(
        rescan,
        /2 musicfs daemons are running \(.*mntA, .*mntB\) \(pick one: musicfs rescan --mountpoint DIR\)/,
      );
      const sb = await musicfs(["status", "--mountpoint", b.mnt]);
      assert.match(sb.stdout, new RegExp(`^state dir +${b.state}$`, "m"));
      const rb = await musicfs(["rescan", "--mountpoint", b.mnt]);
      assert.equal(rb.code, 0, rb.stderr);
      const none = oneLine(await musicfs(["status", "--mountpoint", `${dir.path}/elsewhere`]), 1);
      assert.match(none, /no running musicfs serves .*elsewhere \(running: /);
      const nowhere = await musicfs(["search", "a", "--mountpoint", `${dir.path}/elsewhere`]);
      assert.match(oneLine(nowhere, 1), /no running musicfs serves .*elsewhere/);
      const titled = libB.good.find((t) => t.tags.title);
      assert.ok(titled, "fixture B has a titled track");
      const found = await musicfs(["search", String(titled.tags.title), "--mountpoint", b.mnt]);
      assert.equal(found.code, 0, found.stderr);
      const paths = found.stdout.trimEnd().split("\n");
      assert.ok(paths[0] !== "", `no match for ${titled.tags.title}: ${found.stderr}`);
      for (const p of paths) assert.ok(p.startsWith(`${b.mnt}/Artists/`), p);

      // A stale entry (a daemon killed without cleanup) is ignored, and removed.
      const dead = new Deno.Command("true").spawn();
      await dead.status;
      const stale = `${registryDir()}/0000000000000000.json`;
      await Deno.writeTextFile(
        stale,
        JSON.stringify({
          mountpoint: `${dir.path}/gone`,
          stateDir: `${dir.path}/gone-state`,
          socket: `${dir.path}/gone.sock`,
          pid: dead.pid,
          startTime: "1",
          version: "0",
          startedAt: 0,
        }),
      );
      const after = await musicfs(["status"]);
      assert.doesNotMatch(after.stdout, /gone/);
      assert.equal(after.stdout.trimEnd().split("\n").length, 3, after.stdout);
      await assert.rejects(Deno.stat(stale), Deno.errors.NotFound);

      // A busy mount is refused, naming who holds it; --lazy detaches it anyway.
      holder = new Deno.Command("sleep", { args: ["60"], cwd: `${b.mnt}/Artists` }).spawn();
      const busy = oneLine(await musicfs(["unmount", b.mnt]), 1);
      assert.match(
        busy,
        new RegExp(
          `in use by pid ${holder.pid} \\(sleep\\) \\(close them, or detach it anyway with: musicfs unmount --lazy `,
        ),
      );
      assert.ok(await isMounted(b.mnt), "a refused unmount leaves the mount");
      const lazy = await musicfs(["unmount", "--lazy", b.mnt]);
      assert.equal(lazy.code, 0, lazy.stderr);
      assert.match(
        lazy.stdout,
        new RegExp(`^Unmounted ${b.mnt} \\(daemon pid \\d+ stopped\\)$`, "m"),
      );

      // `unmount DIR` stops the daemon of DIR, though its state dir is not the default.
      const pidA = Number(/pid (\d+)/.exec(ma.stdout)![1]);
      const ua = await musicfs(["unmount", a.mnt]);
      assert.equal(ua.code, 0, ua.stderr);
      await waitFor(async () => !(await processAlive(pidA)), 10_000, "daemon A to exit");
      assert.equal(await isMounted(a.mnt), false);
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(registryDir()))).filter((e) =>
          e.name.endsWith(".json")
        ),
        [],
        "both daemons removed their registry entries",
      );
    } finally {
      try {
        holder?.kill("SIGKILL");
        await holder?.status;
      } catch { /* gone */ }
      for (const d of [a, b]) {
        await musicfs(["unmount", "--lazy", "--state-dir", d.state, d.mnt]).catch(() => {});
        await detachIfMounted(d.mnt);
      }
      await dir.cleanup();
    }
  },
});

Deno.test({
  name: "cli: during a first scan, status never shows more tracks than files read",
  ...needsFuse,
  async fn() {
    const dir = await tempDir();
    const mnt = `${dir.path}/mnt`;
    const state = `${dir.path}/state`;
    try {
      await makeLibrary(`${dir.path}/lib`, { tracks: 1500, seed: 43, broken: 2, formats: ["wav"] });
      const m = await musicfs([
        "mount",
        `${dir.path}/lib`,
        "--mountpoint",
        mnt,
        "--state-dir",
        state,
        "--cache-dir",
        `${dir.path}/cache`,
      ]);
      assert.equal(m.code, 0, m.stderr);
      const sock = controlSocketPath(state);
      let samples = 0;
      let during = 0;
      for (;;) {
        // Generous: the machine may be loaded, and a slow answer is not what is tested here.
        const st = await controlRequest(sock, "GET", "/status", {
          timeoutMs: 30_000,
        }) as DaemonStatus;
        samples++;
        if (st.scan?.active) {
          during++;
          assert.ok(
            st.tracks <= st.scan.parsed,
            `tracks ${st.tracks} > ${st.scan.parsed} files read (${JSON.stringify(st.scan)})`,
          );
        }
        if (st.firstScanDone) {
          assert.equal(st.tracks, 1500);
          assert.equal(st.problems, 2);
          assert.equal(st.scan?.parsed, 1502);
          break;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(samples > 0);
      if (during === 0) console.error("*** the scan ended before status could sample it");
    } finally {
      await musicfs(["unmount", "--lazy", mnt]).catch(() => {});
      await detachIfMounted(mnt);
      await dir.cleanup();
    }
  },
});
