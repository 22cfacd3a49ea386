import assert from "node:assert/strict";
import {
  ControlError,
  type ControlHandlers,
  controlRequest,
  ControlRequestError,
  ControlSocketError,
  controlSocketPath,
  DaemonNotRunningError,
  DaemonTimeoutError,
  serveControl,
} from "./control.ts";

/** Handlers that record their calls. */
function recordingHandlers() {
  const calls: unknown[][] = [];
  let shutdownCalled!: () => void;
  const shutdownDone = new Promise<void>((r) => shutdownCalled = r);
  const handlers: ControlHandlers = {
    status: () => ({ pid: Deno.pid, tracks: 42 }),
    search: (q, limit) => {
      calls.push(["search", q, limit]);
      if (q === "explode") throw new Error("index is on fire");
      if (q === "later") throw new ControlError(503, "Search index is still loading");
      return Promise.resolve([{ title: `hit for ${q}` }]);
    },
    rescan: () => {
      calls.push(["rescan"]);
      return Promise.reject(new Error("library root unreachable"));
    },
    shutdown: () => {
      calls.push(["shutdown"]);
      shutdownCalled();
      return Promise.resolve();
    },
  };
  return { handlers, calls, shutdownDone };
}

/** A process that binds `path` and is killed, leaving a socket file nobody listens on. */
async function staleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const l = Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} });` +
      ` console.log("up"); for await (const _ of l);`,
    ],
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  assert.ok((await Deno.lstat(path)).isSocket);
}

async function expectError(p: Promise<unknown>, status: number, message: RegExp) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof ControlRequestError, String(e));
    assert.equal(e.status, status);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("control API round trip over a real unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const controller = new AbortController();
  try {
    const socketPath = `${dir}/run/control.sock`;
    const { handlers, calls, shutdownDone } = recordingHandlers();
    const server = await serveControl({ socketPath, handlers, signal: controller.signal });
    assert.equal((await Deno.stat(socketPath)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/run`)).mode! & 0o777, 0o700);

    assert.deepEqual(await controlRequest(socketPath, "GET", "/status"), {
      pid: Deno.pid,
      tracks: 42,
    });
    assert.deepEqual(await controlRequest(socketPath, "GET", "/search?q=blue%20train&limit=3"), [
      { title: "hit for blue train" },
    ]);
    assert.deepEqual(await controlRequest(socketPath, "GET", "/search?q=x"), [
      { title: "hit for x" },
    ]);
    assert.deepEqual(calls, [["search", "blue train", 3], ["search", "x", 20]]);

    await expectError(controlRequest(socketPath, "GET", "/nowhere"), 404, /No such endpoint/);
    await expectError(controlRequest(socketPath, "POST", "/status"), 405, /use GET/);
    await expectError(controlRequest(socketPath, "GET", "/search"), 400, /Missing query/);
    await expectError(
      controlRequest(socketPath, "GET", "/search?q=a&limit=zero"),
      400,
      /Invalid limit: zero/,
    );
    await expectError(
      controlRequest(socketPath, "GET", "/search?q=explode"),
      500,
      /GET \/search failed: index is on fire/,
    );
    await expectError(
      controlRequest(socketPath, "GET", "/search?q=later"),
      503,
      /still loading/,
    );
    await expectError(
      controlRequest(socketPath, "POST", "/rescan"),
      500,
      /library root unreachable/,
    );

    assert.deepEqual(await controlRequest(socketPath, "POST", "/shutdown"), { stopping: true });
    await shutdownDone;
    assert.deepEqual(calls.at(-1), ["shutdown"]);

    controller.abort();
    await server.finished;
    await assert.rejects(Deno.lstat(socketPath), Deno.errors.NotFound);
  } finally {
    controller.abort();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("controlRequest throws DaemonNotRunningError when nothing listens", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      controlRequest(`${dir}/absent.sock`, "GET", "/status"),
      (e) => e instanceof DaemonNotRunningError && e.socketPath === `${dir}/absent.sock`,
    );
    await staleSocket(`${dir}/stale.sock`);
    await assert.rejects(
      controlRequest(`${dir}/stale.sock`, "GET", "/status"),
      (e) => e instanceof DaemonNotRunningError && /musicfs is not running/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("controlRequest gives up on a daemon that does not answer", async () => {
  const dir = await Deno.makeTempDir();
  const listener = Deno.listen({ transport: "unix", path: `${dir}/mute.sock` });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) conns.push(c);
  })();
  try {
    await assert.rejects(
      controlRequest(`${dir}/mute.sock`, "GET", "/status", { timeoutMs: 50 }),
      (e) => e instanceof DaemonTimeoutError && /within 50 ms/.test(e.message),
    );
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const c of conns) c.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serveControl replaces a stale socket and refuses a live one", async () => {
  const dir = await Deno.makeTempDir();
  const controller = new AbortController();
  try {
    const socketPath = `${dir}/control.sock`;
    await staleSocket(socketPath);
    const { handlers } = recordingHandlers();
    const server = await serveControl({ socketPath, handlers, signal: controller.signal });
    assert.equal((await Deno.stat(socketPath)).mode! & 0o777, 0o600);
    await assert.rejects(
      serveControl({ socketPath, handlers }),
      (e) => e instanceof ControlSocketError && /another process is listening/.test(e.message),
    );
    // The refused second server left the first one's socket alone.
    assert.equal(
      (await controlRequest(socketPath, "GET", "/status") as { tracks: number }).tracks,
      42,
    );
    await server.shutdown();
    await Deno.writeTextFile(socketPath, "not a socket");
    await assert.rejects(
      serveControl({ socketPath, handlers }),
      (e) => e instanceof ControlSocketError && /not a socket/.test(e.message),
    );
  } finally {
    controller.abort();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("controlSocketPath prefers XDG_RUNTIME_DIR and tells state dirs apart", () => {
  const a = controlSocketPath("/home/u/.local/state/musicfs", "/run/user/1000");
  const b = controlSocketPath("/srv/other-state", "/run/user/1000");
  assert.match(a, /^\/run\/user\/1000\/musicfs\/control-[0-9a-f]{16}\.sock$/);
  assert.notEqual(a, b);
  assert.equal(a, controlSocketPath("/home/u/.local/state/musicfs/", "/run/user/1000"));
  // No runtime dir (an explicit undefined would take the default, i.e. the environment's).
  assert.equal(controlSocketPath("/var/lib/musicfs", ""), "/var/lib/musicfs/control.sock");
});
