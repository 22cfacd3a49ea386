import assert from "node:assert/strict";
import { Errno, errnoName, errnoOf, toErrno } from "./errno.ts";
import { SyscallError } from "./libc.ts";

Deno.test("errno: names and numbers round-trip", () => {
  for (const [name, n] of Object.entries(Errno)) {
    assert.equal(errnoName(n), name);
    assert.equal(errnoOf(name), n);
  }
  assert.equal(errnoName(4242), "errno 4242");
  assert.equal(errnoOf("EWHATEVER"), undefined);
});

Deno.test("errno: toErrno maps errno fields, codes and Deno errors; EIO otherwise", async () => {
  assert.equal(toErrno(new SyscallError("open x", Errno.ENOENT)), Errno.ENOENT);
  assert.equal(toErrno(Object.assign(new Error("x"), { code: "ENOSPC" })), Errno.ENOSPC);
  const dir = await Deno.makeTempDir();
  try {
    const missing = await Deno.stat(`${dir}/missing`).catch((e) => e);
    assert.equal(toErrno(missing), Errno.ENOENT);
    const missingDir = await Deno.readDir(`${dir}/f`)[Symbol.asyncIterator]().next().catch((e) =>
      e
    );
    assert.equal(toErrno(missingDir), Errno.ENOENT);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(toErrno(new Deno.errors.PermissionDenied("no")), Errno.EACCES);
  assert.equal(toErrno(new Error("boom")), Errno.EIO);
  assert.equal(toErrno("a string"), Errno.EIO);
  assert.equal(toErrno({ errno: 100000 }), Errno.EIO, "out-of-range errno is not trusted");
  assert.equal(toErrno(null), Errno.EIO);
});
