import assert from "node:assert/strict";
import { CasWriteError, formatBytes, StoreFullError } from "./errors.ts";

Deno.test("formatBytes keeps small sizes exact and rounds large ones", () => {
  assert.equal(formatBytes(100), "100 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(2 * 1024 ** 3), "2.0 GiB");
});

Deno.test("StoreFullError states both sizes", () => {
  const e = new StoreFullError(2 * 1024 ** 3, 2 * 1024 ** 3, 1 << 20);
  assert.equal(e.message, "Cannot store chunk: cache is full (2.0 GiB of 2.0 GiB)");
  assert.equal(e.name, "StoreFullError");
  const big = new StoreFullError(0, 100, 1000);
  assert.equal(
    big.message,
    "Cannot store chunk: chunk of 1000 B is larger than the whole cache (100 B)",
  );
});

Deno.test("CasWriteError names ENOSPC and keeps the cause", () => {
  const cause = Object.assign(new Error("No space left on device (os error 28)"), {
    code: "ENOSPC",
  });
  const e = new CasWriteError(cause);
  assert.equal(e.message, "Cannot store chunk: no space left on device");
  assert.equal(e.code, "ENOSPC");
  assert.equal(e.cause, cause);
  assert.equal(new CasWriteError(new Error("EIO")).message, "Cannot store chunk: EIO");
});
