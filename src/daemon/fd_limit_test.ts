import assert from "node:assert/strict";
import { FsError, type FuseOperations, type OpenResult, SyscallError } from "../fuse/mod.ts";
import { FdBudget, fdLimit, fdsInUse, guardOpens, raiseFdLimit } from "./fd_limit.ts";

Deno.test("raiseFdLimit lifts the soft limit to the hard one", async () => {
  // In a child started with a low soft limit, so this process's limits stay as they are.
  const code = `
    import { raiseFdLimit } from ${JSON.stringify(new URL("./fd_limit.ts", import.meta.url).href)};
    console.log(JSON.stringify(raiseFdLimit()));
  `;
  const config = new URL("../../deno.json", import.meta.url).pathname;
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -S -n 200 && exec "$0" eval --config="$1" "$2"`,
      Deno.execPath(),
      config,
      code,
    ],
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  const { hard } = fdLimit();
  // (Deno itself may have raised it already at its start; either way it ends at the hard one.)
  assert.equal(r.soft, Math.min(hard, 1 << 20));
  assert.equal(r.hard, hard);
  // Here: already raised or not, it never lowers anything.
  assert.ok(raiseFdLimit().soft >= 200);
});

Deno.test("fdsInUse counts this process's descriptors", () => {
  const before = fdsInUse();
  const f = Deno.openSync("/dev/null");
  try {
    assert.equal(fdsInUse(), before + 1);
  } finally {
    f.close();
  }
});

Deno.test("FdBudget keeps the reserve free and re-reads the count after a refusal", () => {
  let used = 40;
  const b = new FdBudget({ limit: 64, reserve: 16, count: () => used });
  let granted = 0;
  for (let i = 0; i < 20; i++) {
    if (b.acquire()) {
      granted++;
      used++;
    }
  }
  assert.equal(granted, 8, "64 - 16 reserved - 40 in use");
  assert.equal(b.stats().refused, 12);
  // Fds freed elsewhere (and two sources closed): opens succeed again.
  used -= 10;
  b.release();
  b.release();
  assert.ok(b.acquire());
  assert.equal(b.stats().sourcesOpen, 7);
  b.close();
});

Deno.test("guardOpens answers EMFILE at the reserve, counts real EMFILE, and frees slots", async () => {
  let nextFd = 100;
  let live = 0;
  const state: { fail?: Error } = {};
  const released: number[] = [];
  const ops = {
    open: (ino: number): Promise<OpenResult> => {
      if (state.fail) return Promise.reject(state.fail);
      // Inode 1 is a generated file: no fd.
      if (ino === 1) return Promise.resolve({ fh: 1 });
      live++;
      return Promise.resolve({ fh: nextFd, backingFd: nextFd++ });
    },
    release: (_ino: number, fh: number) => {
      released.push(fh);
      live--;
      return Promise.resolve();
    },
  } as unknown as FuseOperations;
  const b = new FdBudget({ limit: 30, reserve: 10, count: () => 18 + live });
  guardOpens(ops, b, (ino) => ino !== 1);
  const ctx = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal };
  const a = await ops.open(2, 0, ctx);
  await ops.open(2, 0, ctx);
  await ops.open(1, 0, ctx); // a generated file is never refused
  await assert.rejects(ops.open(2, 0, ctx), (e: unknown) => (e as FsError).errno === 24);
  assert.ok(await ops.open(1, 0, ctx));
  assert.deepEqual({ open: b.stats().sourcesOpen, refused: b.stats().refused }, {
    open: 2,
    refused: 1,
  });
  await ops.release!(2, a.fh!);
  assert.deepEqual(released, [a.fh]);
  assert.equal(b.stats().sourcesOpen, 1);
  state.fail = new SyscallError("open /x", 24);
  await assert.rejects(ops.open(2, 0, ctx), (e: unknown) => (e as FsError).errno === 24);
  assert.equal(b.stats().refused, 2, "an EMFILE met anyway is counted");
  assert.equal(b.stats().sourcesOpen, 1);
  b.close();
});
