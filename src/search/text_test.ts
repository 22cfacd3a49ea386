import assert from "node:assert/strict";
import { MAX_TERM_LENGTH, terms } from "./text.ts";

Deno.test("terms: ASCII takes a fast path that splits and folds exactly like the general one", () => {
  // Appending a non-ASCII word sends the same text down the general path.
  const general = (s: string) => terms(`${s} é`).slice(0, -1);
  const samples = [
    "AC/DC",
    "Guns N' Roses",
    "The  Beatles -- Help!",
    "track\t01\x00\x1fnull\x7fdel",
    "Mr. Blue_Sky (2012 Remaster) [Live]",
    "a".repeat(100) + " b",
    "$100 + 5% = ~more~ | <less> ^caret` @home #1",
  ];
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 300; i++) {
    samples.push(
      Array.from(
        { length: 1 + Math.floor(rand() * 40) },
        () => String.fromCharCode(Math.floor(rand() * 128)),
      ).join(""),
    );
  }
  for (const s of samples) assert.deepEqual(terms(s), general(s), JSON.stringify(s));
  assert.deepEqual(terms("AC/DC"), ["ac", "dc"]);
  assert.equal(terms("a".repeat(100))[0].length, MAX_TERM_LENGTH);
  assert.deepEqual(terms("Beyoncé Café"), ["beyonce", "cafe"]);
});
