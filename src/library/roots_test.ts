import assert from "node:assert/strict";
import { mergeRoots } from "./roots.ts";

Deno.test("roots: nested and repeated roots merge into the outer one, each with one line", () => {
  const { roots, merged } = mergeRoots(["/m/sub", "/m", "/m", "/other", "/m/sub/deeper", "/mx"]);
  assert.deepEqual(roots, ["/m", "/other", "/mx"]);
  assert.deepEqual(merged.map((m) => [m.root, m.into]), [
    ["/m/sub", "/m"],
    ["/m", "/m"],
    ["/m/sub/deeper", "/m"],
  ]);
  assert.match(
    merged[0].message,
    /^Library \/m\/sub is inside library \/m; its files are shown once/,
  );
  assert.match(merged[1].message, /given twice/);
  assert.deepEqual(mergeRoots(["/a", "/b"]), { roots: ["/a", "/b"], merged: [] });
});
