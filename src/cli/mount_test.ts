import assert from "node:assert/strict";
import { resolveMountOptions, UsageError } from "./mount.ts";

Deno.test("mount options: --allow-other-search needs --allow-other; both reach the daemon", async () => {
  const lib = await Deno.makeTempDir({ prefix: "musicfs-lib-" });
  try {
    assert.throws(
      () => resolveMountOptions([lib], { allowOtherSearch: true }, "0"),
      (e: Error) =>
        e instanceof UsageError && /--allow-other-search needs --allow-other/.test(e.message),
    );
    const o = resolveMountOptions([lib], { allowOther: true, allowOtherSearch: true }, "0");
    assert.equal(o.allowOther, true);
    assert.equal(o.allowOtherSearch, true);
    const plain = resolveMountOptions([lib], {}, "0");
    assert.equal(plain.allowOther, false);
    assert.equal(plain.allowOtherSearch, false);
  } finally {
    await Deno.remove(lib);
  }
});
