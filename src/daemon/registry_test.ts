import assert from "node:assert/strict";
import { liveEntries, register, registryDir } from "./registry.ts";

const entry = {
  mountpoint: "/mnt/music",
  stateDir: "/state",
  socket: "/state/control.sock",
  version: "test",
  startedAt: 1,
};

Deno.test("registry: an entry while the runtime dir exists; none recreated once it is gone", async () => {
  const runtime = await Deno.makeTempDir();
  const env = new Map([["XDG_RUNTIME_DIR", runtime]]);
  const dir = registryDir(env, 1000);
  try {
    const unregister = await register(entry, dir, env);
    assert.deepEqual((await liveEntries(dir)).map((e) => e.mountpoint), ["/mnt/music"]);
    await unregister();
    assert.deepEqual(await liveEntries(dir), []);

    // The session (or a test's private environment) ended: a late daemon leaves no dir behind.
    await Deno.remove(runtime, { recursive: true });
    await assert.rejects(() => register(entry, dir, env), /XDG_RUNTIME_DIR .* does not exist/);
    assert.equal(await Deno.stat(runtime).then(() => true, () => false), false);
  } finally {
    await Deno.remove(runtime, { recursive: true }).catch(() => {});
  }
});
