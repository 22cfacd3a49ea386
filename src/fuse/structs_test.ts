import assert from "node:assert/strict";
import { notifyDelete, notifyInvalEntry, notifyInvalInode } from "./structs.ts";
import { hex } from "./testdata/wire.ts";

Deno.test("structs: notifications, golden bytes (unique 0, the code in the error field)", () => {
  assert.deepEqual(
    notifyInvalEntry(7, "ab"),
    hex("23000000 03000000 0000000000000000 | 0700000000000000 02000000 00000000 | 616200"),
  );
  assert.deepEqual(
    notifyInvalInode(9, -1, 0),
    hex("28000000 02000000 0000000000000000 | 0900000000000000 ffffffffffffffff 0000000000000000"),
  );
  assert.deepEqual(
    notifyDelete(1, 2 ** 33, "é"),
    hex(
      "2b000000 06000000 0000000000000000 | 0100000000000000 0000000002000000 02000000 00000000 | c3a900",
    ),
  );
});
