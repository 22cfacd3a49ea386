/**
 * The suite keeps to itself: HOME and the XDG dirs point into a private temp dir, and the
 * commands the suite runs never reach a daemon in the real default state dir. A stand-in for
 * the user's daemon listens where the real one would (control socket and registry entry); the
 * suite's usual commands, run as the suite runs them, must not send it a single request.
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import {
  controlRequest,
  controlSocketPath,
  DaemonNotRunningError,
  readLock,
  register,
  registryDir,
  serveControl,
} from "../src/daemon/mod.ts";
import { ISOLATED_ROOT, REAL_ENV, realDefaultStateDir } from "./support/isolation.ts";
import { musicfs, processAlive } from "./support/daemon.ts";

Deno.test("isolation: HOME and XDG dirs of the suite and its children are private", async () => {
  for (const v of ["HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"]) {
    const now = Deno.env.get(v);
    assert.ok(now?.startsWith(ISOLATED_ROOT + "/"), `${v}=${now}`);
    assert.notEqual(now, REAL_ENV[v as keyof typeof REAL_ENV]);
  }
  // A child sees the same: its default state dir is inside the private root.
  const r = await musicfs(["check"]);
  assert.match(r.stdout + r.stderr, /library\.db/);
  assert.ok(!(r.stdout + r.stderr).includes(realDefaultStateDir()), r.stdout + r.stderr);
});

/** Creates `dir` and its missing parents; returns the topmost one created (to remove later). */
async function mkdirs(dir: string): Promise<string | null> {
  let top: string | null = null;
  for (let d = dir; d !== "/"; d = dirname(d)) {
    try {
      await Deno.lstat(d);
      break;
    } catch {
      top = d;
    }
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  return top;
}

Deno.test({
  name: "isolation: the suite's commands leave a daemon in the real default state dir untouched",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const realState = realDefaultStateDir();
    const realSocket = controlSocketPath(realState, REAL_ENV.XDG_RUNTIME_DIR);
    const realRegistry = registryDir(
      { get: (k) => REAL_ENV[k as keyof typeof REAL_ENV] },
      Deno.uid(),
    );
    const commands = [["status"], ["rescan"], ["search", "anything"], ["unmount"]];

    // A real user's daemon is running: it must still run, with the same pid, afterwards.
    let userDaemon: number | null = null;
    try {
      await controlRequest(realSocket, "GET", "/status", { timeoutMs: 2000 });
      userDaemon = (await readLock(realState, { name: "musicfs" }))?.pid ?? null;
    } catch (e) {
      if (!(e instanceof DaemonNotRunningError)) {
        console.error(`*** isolation: the real socket ${realSocket} is unusable (${e}); skipped`);
        return;
      }
    }
    if (userDaemon !== null) {
      for (const c of commands) await musicfs(c);
      assert.ok(await processAlive(userDaemon), "the user's daemon was stopped by the suite");
      return;
    }

    // No daemon there: a stand-in listens in its place for the length of this test.
    const made = [await mkdirs(dirname(realSocket)), await mkdirs(realRegistry)];
    const requests: string[] = [];
    const server = await serveControl({
      socketPath: realSocket,
      handlers: {
        status: () => {
          requests.push("status");
          return { pid: Deno.pid, mountpoint: `${realState}/stand-in`, tracks: 0 };
        },
        search: () => (requests.push("search"), Promise.resolve({ results: [] })),
        rescan: () => (requests.push("rescan"), Promise.resolve({ started: true })),
        shutdown: () => (requests.push("shutdown"), Promise.resolve()),
      },
    });
    let unregister: (() => Promise<void>) | undefined;
    try {
      unregister = await register({
        mountpoint: `${realState}/stand-in`,
        stateDir: realState,
        socket: realSocket,
        version: "stand-in",
        startedAt: Date.now(),
      }, realRegistry);
      for (const c of commands) await musicfs(c);
      assert.deepEqual(requests, [], "the suite's commands reached the real default daemon");
    } finally {
      await unregister?.();
      await server.shutdown();
      await Deno.remove(realSocket).catch(() => {});
      for (const top of made) if (top) await Deno.remove(top, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("isolation: private dirs of killed runs are removed by the next run, live ones kept", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "musicfs-isolation-gc-" });
  try {
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    const self = await Deno.readTextFile(`/proc/${Deno.pid}/stat`);
    const selfStart = self.slice(self.lastIndexOf(")") + 2).split(" ")[19];
    const mk = async (name: string, owner: string | null) => {
      await Deno.mkdir(`${tmp}/${name}/home`, { recursive: true });
      if (owner !== null) await Deno.writeTextFile(`${tmp}/${name}/.owner`, owner);
    };
    await mk("musicfs-test-env-killed", `${dead.pid} 12345\n`);
    await mk("musicfs-test-env-live", `${Deno.pid} ${selfStart}\n`);
    await mk("musicfs-test-env-unmarked", null);
    await mk("not-ours", `${dead.pid} 1\n`);
    const env: Record<string, string> = { TMPDIR: tmp, PATH: Deno.env.get("PATH") ?? "/usr/bin" };
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import ${JSON.stringify(new URL("./support/isolation.ts", import.meta.url).href)};`,
      ],
      env,
      clearEnv: true,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const left = (await Array.fromAsync(Deno.readDir(tmp))).map((e) => e.name).sort();
    // The child's own dir is removed at its exit; the killed run's too; the rest stay.
    assert.deepEqual(left, ["musicfs-test-env-live", "musicfs-test-env-unmarked", "not-ours"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
