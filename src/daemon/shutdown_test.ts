import assert from "node:assert/strict";
import { installSignalHandlers, runShutdown } from "./shutdown.ts";

const CHILD = new URL("./testdata/signal_child.ts", import.meta.url).pathname;

/** A child running testdata/signal_child.ts, with its stdout as an iterator of lines. */
function spawnChild(mode: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", CHILD, mode],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const decoder = new TextDecoder();
  async function* lines() {
    let buf = "";
    for await (const chunk of child.stdout) {
      buf += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, i);
        buf = buf.slice(i + 1);
      }
    }
  }
  const it = lines();
  return {
    child,
    next: async () => (await it.next()).value as string | undefined,
    rest: async () => {
      const all = [];
      for await (const l of it) all.push(l);
      return all;
    },
  };
}

async function killQuietly(child: Deno.ChildProcess) {
  try {
    child.kill("SIGKILL");
  } catch { /* exited */ }
  await child.status;
}

Deno.test("SIGTERM runs the ordered shutdown once and exits 0; SIGHUP rescans", async () => {
  const c = spawnChild("ordered");
  try {
    assert.equal(await c.next(), "ready");
    c.child.kill("SIGHUP");
    assert.equal(await c.next(), "rescan");
    c.child.kill("SIGTERM");
    assert.deepEqual(await c.rest(), [
      "watcher saw abort",
      "stragglers ",
      "watcher stopped",
      "report stop tasks=ok,commit search=failed,close sqlite=ok",
    ]);
    assert.equal((await c.child.status).code, 0);
  } finally {
    await killQuietly(c.child);
  }
});

Deno.test("a second SIGINT during shutdown exits at once with 130", async () => {
  const c = spawnChild("stuck");
  try {
    assert.equal(await c.next(), "ready");
    c.child.kill("SIGINT");
    assert.equal(await c.next(), "stopping");
    c.child.kill("SIGINT");
    const status = await c.child.status;
    assert.equal(status.code, 130);
    assert.deepEqual(await c.rest(), []);
  } finally {
    await killQuietly(c.child);
  }
});

Deno.test("crash guards log stray failures and keep the process alive", async () => {
  const c = spawnChild("crash");
  try {
    assert.deepEqual(await c.rest(), [
      "error: stray exception",
      "unhandledrejection: stray rejection",
      "alive",
    ]);
    assert.equal((await c.child.status).code, 0);
  } finally {
    await killQuietly(c.child);
  }
});

Deno.test("runShutdown bounds each step and goes on past failures", async () => {
  const order: string[] = [];
  let release!: () => void;
  const hung = new Promise<void>((r) => release = r);
  let hungSignal: AbortSignal | undefined;
  try {
    const report = await runShutdown([
      { name: "first", run: () => void order.push("first") },
      {
        name: "sync throw",
        run: () => {
          throw new Error("sync failure");
        },
      },
      {
        name: "hangs",
        timeoutMs: 20,
        run: (signal) => {
          hungSignal = signal;
          return hung;
        },
      },
      { name: "last", run: () => Promise.resolve().then(() => void order.push("last")) },
    ]);
    assert.deepEqual(order, ["first", "last"]);
    assert.equal(report.ok, false);
    assert.deepEqual(report.steps.map((s) => [s.name, s.outcome]), [
      ["first", "ok"],
      ["sync throw", "failed"],
      ["hangs", "timed out"],
      ["last", "ok"],
    ]);
    assert.equal(report.steps[1].error?.message, "sync failure");
    assert.equal(hungSignal?.aborted, true);
  } finally {
    release();
  }
  const clean = await runShutdown([{ name: "only", run: () => {} }]);
  assert.equal(clean.ok, true);
  assert.deepEqual(clean.steps.map((s) => s.outcome), ["ok"]);
});

Deno.test("requestShutdown runs onShutdown once and exits with its outcome", async () => {
  const codes: number[] = [];
  let runs = 0;
  const handlers = installSignalHandlers({
    onShutdown: () => {
      runs++;
      return Promise.reject(new Error("unmount failed"));
    },
    onRescan: () => {},
    exit: (code) => void codes.push(code),
  });
  try {
    assert.equal(handlers.shuttingDown, false);
    const a = handlers.requestShutdown("control API");
    const b = handlers.requestShutdown("again");
    assert.equal(a, b);
    await a;
    assert.equal(handlers.shuttingDown, true);
    assert.equal(runs, 1);
    assert.deepEqual(codes, [1]);
  } finally {
    handlers.uninstall();
  }
});
