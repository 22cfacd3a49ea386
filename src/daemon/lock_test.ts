import assert from "node:assert/strict";
import { acquireLock, AlreadyRunningError, lockPath, processStartTime, readLock } from "./lock.ts";

const CONTENDER = new URL("./testdata/lock_contender.ts", import.meta.url).pathname;

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

/** Reads a child's stdout line by line. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/** Runs `n` child processes that try the lock of `dir` at the same moment. */
async function race(dir: string, n: number): Promise<{ pid: number; result: string }[]> {
  const children = [];
  try {
    for (let i = 0; i < n; i++) children.push(spawnContender(dir));
    const outs = children.map((c) => lines(c.stdout)[Symbol.asyncIterator]());
    for (const o of outs) assert.equal((await o.next()).value, "ready");
    const writers = children.map((c) => c.stdin.getWriter());
    await Promise.all(writers.map((w) => w.write(new TextEncoder().encode("go\n"))));
    const results = await Promise.all(outs.map(async (o) => (await o.next()).value as string));
    await Promise.all(writers.map((w) => w.close()));
    for (const c of children) assert.equal((await c.status).code, 0);
    return children.map((c, i) => ({ pid: c.pid, result: results[i] }));
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* already exited */ }
    }
  }
}

/** A child process running testdata/lock_contender.ts on `dir`. */
function spawnContender(dir: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", CONTENDER, dir],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

function assertOneWinner(results: { pid: number; result: string }[]) {
  const winners = results.filter((r) => r.result === "won");
  assert.equal(winners.length, 1, JSON.stringify(results));
  for (const r of results) {
    if (r !== winners[0]) assert.equal(r.result, `lost ${winners[0].pid}`);
  }
}

Deno.test("lock records pid and start time and refuses a second holder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lock = await acquireLock(`${dir}/state`, { label: "state dir" });
    const text = await Deno.readTextFile(lockPath(`${dir}/state`));
    assert.equal(text, `${Deno.pid}\n${processStartTime(Deno.pid)}\n`);
    assert.deepEqual(await readLock(`${dir}/state`), {
      pid: Deno.pid,
      startTime: processStartTime(Deno.pid),
    });
    await assert.rejects(
      () => acquireLock(`${dir}/state`, { label: "state dir" }),
      (e) =>
        e instanceof AlreadyRunningError && e.pid === Deno.pid &&
        e.message === `Cannot lock state dir: musicfs is already running (pid ${Deno.pid})`,
    );
    await lock.release();
    await lock.release();
    assert.equal(await readLock(`${dir}/state`), null);
    const again = await acquireLock(`${dir}/state`);
    again.releaseSync();
    assert.equal(await readLock(`${dir}/state`), null);
    // Only the pid file and its flock companion remain: no temp files.
    const names = [...Deno.readDirSync(`${dir}/state`)].map((e) => e.name).sort();
    assert.deepEqual(names, ["musicfs.pid.lock"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stale lock of a dead pid is taken over", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dead = await deadPid();
    assert.equal(processStartTime(dead), null);
    await Deno.writeTextFile(lockPath(dir), `${dead}\n12345\n`);
    const lock = await acquireLock(dir);
    assert.equal((await readLock(dir))?.pid, Deno.pid);
    await lock.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock of a reused pid with another start time is taken over", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Our own pid, recorded with a start time that is not ours: a previous process that died.
    const mine = Number(processStartTime(Deno.pid));
    await Deno.writeTextFile(lockPath(dir), `${Deno.pid}\n${mine + 1}\n`);
    const lock = await acquireLock(dir);
    assert.equal((await readLock(dir))?.startTime, String(mine));
    await lock.release();
    // A pid file that cannot be parsed protects nothing either.
    await Deno.writeTextFile(lockPath(dir), "garbage");
    await (await acquireLock(dir)).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a live lock in another process is refused, and taken over once it is killed", async () => {
  const dir = await Deno.makeTempDir();
  const holder = spawnContender(dir);
  try {
    const out = lines(holder.stdout)[Symbol.asyncIterator]();
    assert.equal((await out.next()).value, "ready");
    const w = holder.stdin.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    assert.equal((await out.next()).value, "won");
    await assert.rejects(
      () => acquireLock(dir),
      (e) => e instanceof AlreadyRunningError && e.pid === holder.pid,
    );
    holder.kill("SIGKILL");
    await holder.status;
    await w.close().catch(() => {});
    // The killed holder left its pid file behind.
    assert.equal((await readLock(dir))?.pid, holder.pid);
    await (await acquireLock(dir)).release();
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch { /* already exited */ }
    await holder.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two processes racing for the lock: exactly one wins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertOneWinner(await race(dir, 2));
    // Racing to take over the same stale lock must not let two win either.
    await Deno.writeTextFile(lockPath(dir), `${await deadPid()}\n1\n`);
    assertOneWinner(await race(dir, 3));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
